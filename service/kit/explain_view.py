"""Terminal view of a clinical picture and its cards (rich tables).

Written for a clinician or integrator checking why a card fired: every fact is shown with the
FHIR reference and date it came from, and every card with the reasons in its detail.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mappings.picture import ClinicalPicture

INDICATOR_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _result(r: dict[str, Any]) -> str:
    """A receptor result in words: '60%', 'IHC 2+', 'ISH not-amplified', 'ratio 1.3'."""
    parts = []
    if r.get("percent") is not None:
        parts.append(f"{_num(r['percent'])}%")
    if r.get("ihc"):
        parts.append(f"IHC {r['ihc']}")
    if r.get("ish"):
        parts.append(f"ISH {r['ish']}")
    if r.get("ratio") is not None:
        parts.append(f"ratio {_num(r['ratio'])}")
    if r.get("copies") is not None:
        parts.append(f"{_num(r['copies'])} copies")
    if r.get("category") not in (None, "unknown"):
        parts.append(f"HER2-{r['category']}" if r["category"] in ("low", "ultralow") else f"category {r['category']}")
    return ", ".join(parts)


def _specimen(r: dict[str, Any]) -> str:
    return r["specimen"] + (f" ({r['specimenSite']})" if r.get("specimenSite") else "")


def _status(status: str) -> str:
    style = {"positive": "green", "low-positive": "green", "negative": "red", "equivocal": "yellow"}.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def overview(pic: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    since = f" since {pic['metastasisDate']}" if pic.get("metastasisDate") else ""
    grid.add_row("Breast cancer", "yes" if pic["breastCancer"] else "no")
    grid.add_row("Metastatic", f"yes{since}" if pic["metastatic"] else "no")
    grid.add_row("Subtype", pic["subtype"])
    if pic["sites"]:
        grid.add_row("Sites", ", ".join(pic["sites"]) + (" (visceral)" if pic["visceral"] else ""))
    if pic.get("menopause"):
        grid.add_row("Menopause", str(pic["menopause"].get("status")))
    if pic.get("ecog"):
        grid.add_row("ECOG", f"{pic['ecog']['value']} ({pic['ecog']['date']})")
    if pic.get("grade"):
        grid.add_row("Grade", f"{pic['grade']['value']} ({pic['grade']['date']})")
    if pic.get("lvef"):
        last = pic["lvef"][-1]
        grid.add_row("LVEF (latest)", f"{_num(last['value'])}{last.get('unit') or ''} on {last['date']} ({last['evidence']})")
    if pic["priorTherapyClasses"]:
        grid.add_row("Therapy classes", ", ".join(pic["priorTherapyClasses"]))
    for b in pic.get("biomarkers") or []:
        score = f", {b['scoreType'] or 'score'} {b.get('comparator') or ''}{_num(b['value'])}" if b.get("value") is not None else ""
        extra = [f"{b['gene']}" if b.get("gene") else "", f"assay {b['assay']}" if b.get("assay") else "",
                 f"origin from {b['originBasis']}" if b.get("originBasis") else ""]
        extra_text = f" [{', '.join(e for e in extra if e)}]" if any(extra) else ""
        grid.add_row(b["marker"], f"{b['result']}{score} on {b['date']}{extra_text}" + (f": {b['detail']}" if b.get("detail") else "") + f" ({b['evidence']})")
    for c in pic.get("complications") or []:
        grid.add_row(c["kind"], f"{c['date']} by {c['basis']}: {c['display']} ({c['evidence']})")
    for test in ("calcium-corrected", "calcium-total", "albumin"):
        latest = [lab for lab in pic.get("labs") or [] if lab["test"] == test][-1:]
        for lab in latest:
            high = f", upper limit {_num(lab['high'])}" if lab.get("high") is not None else ""
            grid.add_row(f"{test} (latest)", f"{_num(lab['value'])} {lab.get('unit') or ''} on {lab['date']}{high} ({lab['evidence']})")
    return grid


def receptors(pic: dict[str, Any]) -> Table:
    table = Table("marker", "status", "result", "sampled", "specimen", "evidence", title="Receptor status (most recent sample decides)")
    for marker in ("er", "pr", "her2"):
        m = pic[marker]
        table.add_row(marker.upper(), _status(m["status"]), _result(m), m["date"] or "", m["specimen"], "\n".join(m["evidence"]))
    return table


def history(pic: dict[str, Any]) -> Table:
    table = Table("sampled / reported", "marker", "result", "status", "specimen", "evidence", title="Receptor history")
    for r in pic["receptorHistory"]:
        when = f"{r.get('specimenDate') or '?'} / {r['date'] or '?'}"
        table.add_row(when, r["marker"], _result(r) or r["kind"], _status(r["status"]), _specimen(r), r["evidence"])
    for d in pic.get("discordance") or []:
        table.caption = (table.caption + "\n" if table.caption else "") + (
            f"[yellow]Discordance[/yellow] {d['marker']}: {d['from']} ({d.get('fromDate') or '?'}, {d.get('fromSpecimen', '?')}) "
            f"-> {d['to']} ({d.get('toDate') or '?'}, {d.get('toSpecimen', '?')})")
    return table


def sites(pic: dict[str, Any]) -> Table:
    table = Table("site", "since", "read from", "evidence", title=f"Metastatic sites (visceral: {'yes' if pic['visceral'] else 'no'})")
    for m in pic["metastases"]:
        table.add_row(m["site"] + (" (regional, not distant)" if m["regional"] else ""), m["date"] or "", m["basis"], m["evidence"])
    return table


def treatments(pic: dict[str, Any]) -> Table:
    table = Table("drug", "class", "start", "end", "active", "evidence", title="Treatments")
    for t in pic["treatments"]:
        table.add_row(t["drug"], t["class"], t["start"] or "", t.get("end") or "", "yes" if t["active"] else "no", "\n".join(t.get("evidence") or []))
    return table


def cards_table(cards: list[dict[str, Any]], title: str = "Cards") -> Table:
    table = Table("#", "indicator", title=f"{title} ({len(cards)})", expand=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("summary", ratio=2)
    table.add_column("source", ratio=1, min_width=10)
    for n, c in enumerate(cards, 1):
        source = c.get("source") or {}
        style = INDICATOR_STYLE.get(c.get("indicator", ""), "")
        table.add_row(str(n), f"[{style}]{c.get('indicator')}[/{style}]" if style else str(c.get("indicator")),
                      ((source.get("topic") or {}).get("code")) or "", c.get("summary", ""), source.get("label", ""))
    return table


def card_details(cards: list[dict[str, Any]]) -> list[Panel]:
    """Each card's detail (its patient facts, guidance and source), as the EHR would show it."""
    panels = []
    for n, c in enumerate(cards, 1):
        code = ((c.get("source") or {}).get("topic") or {}).get("code", "")
        style = INDICATOR_STYLE.get(c.get("indicator", ""), "white")
        body = Group(Text(c.get("summary", ""), style="bold"), Markdown(c.get("detail") or "_no detail_"))
        panels.append(Panel(body, title=f"#{n} {code}", title_align="left", border_style=style))
    return panels


def finding_panels(found: list[dict[str, Any]]) -> list[Panel]:
    """Every rule that fired, in full: each fact with the FHIR references it rests on, the guidance, the source."""
    panels = []
    for f in found:
        style = INDICATOR_STYLE.get(f["indicator"], "white")
        lines = [f"- {x['text']}" + (f" ({', '.join(f'`{r}`' for r in x['evidence'])})" if x["evidence"] else "") for x in f["facts"]]
        lines += [""] + [f"> {g}" for g in f["guidance"]] if f["guidance"] else []
        lines += ["", f"Suggestions: {'; '.join(f['suggestions'])}"] if f["suggestions"] else []
        lines += ["", f"Source: {f['source']['label']} <{f['source']['url']}>"]
        body = Group(Text(f["summary"], style="bold"), Markdown("\n".join(lines)))
        panels.append(Panel(body, title=f"{f['rule']} ({f['indicator']})", title_align="left", border_style=style))
    return panels


def show(picture: ClinicalPicture, cards: list[dict[str, Any]], found: list[dict[str, Any]] | None = None,
         console: Console | None = None) -> None:
    console = console or Console()
    pic = picture.to_json()
    console.rule(f"{pic['patient'] or 'patient'}: {pic['subtype']}{', metastatic' if pic['metastatic'] else ''}")
    console.print(overview(pic))
    if not pic["breastCancer"]:
        console.print("No breast cancer in the record: the service gives no cards for this patient.")
    else:
        console.print(receptors(pic))
        if pic["receptorHistory"]:
            console.print(history(pic))
        if pic["metastases"]:
            console.print(sites(pic))
        if pic["treatments"]:
            console.print(treatments(pic))
    console.print(cards_table(cards, "Cards as the EHR shows them"))
    for panel in card_details(cards):
        console.print(panel)
    if found:
        console.rule(f"Every rule that fired, in full: {len(found)} findings")
        for panel in finding_panels(found):
            console.print(panel)
    for warning in pic.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if pic["unmapped"]:
        console.print(f"[dim]{len(pic['unmapped'])} distinct codes read but not classified (see --json: picture.unmapped)[/dim]")
