"""What the order rules share: the facts naming a draft order, and the suggestion to remove one."""

from __future__ import annotations

from ..cards import Fact, Suggestion
from ..drafts import DraftOrder


def order_fact(order: DraftOrder) -> Fact:
    return Fact(order.fact_text(), [order.evidence])


def delete(orders: list[DraftOrder]) -> list[Suggestion]:
    """A "remove the draft" suggestion per order; an order contained in a regimen (RequestGroup) has
    no id of its own to delete, and deleting its group would remove every drug of the regimen."""
    out = []
    for order in orders:
        if order.contained:
            continue
        label = f"Remove the draft {order.ingredient} order"
        out.append(Suggestion(label, [{"type": "delete", "description": label, "resourceId": order.reference}]))
    return out


def names(orders: list[DraftOrder]) -> str:
    return " + ".join(sorted({o.ingredient for o in orders}))


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]
