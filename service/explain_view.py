"""Terminal view of a clinical picture and its cards (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mappings.picture import ClinicalPicture


def show(picture: ClinicalPicture, cards: list[dict[str, Any]]) -> None:
    console = Console()
    pic = picture.to_json()
    console.rule(f"{pic['patient'] or 'patient'}: {pic['subtype']}{', metastatic' if pic['metastatic'] else ''}")
    status = Table("marker", "status", "detail", "date", "specimen", "evidence", title="Receptor status (most recent sample)")
    for marker in ("er", "pr", "her2"):
        m = pic[marker]
        detail = f"{m.get('percent')}%" if m.get("percent") is not None else (f"{m.get('category')} IHC {m.get('ihc')} ISH {m.get('ish')}" if marker == "her2" else "")
        status.add_row(marker.upper(), m["status"], detail, m["date"] or "", m["specimen"], ", ".join(m["evidence"]))
    console.print(status)
    history = Table("marker", "status", "kind", "date", "specimen", "evidence", title="Receptor history")
    for r in pic["receptorHistory"]:
        history.add_row(r["marker"], r["status"], r["kind"], r["date"] or "", r["specimen"], r["evidence"])
    console.print(history)
    sites = Table("site", "since", "basis", "evidence", title=f"Metastases (visceral: {pic['visceral']})")
    for m in pic["metastases"]:
        sites.add_row(m["site"] + (" (regional)" if m["regional"] else ""), m["date"] or "", m["basis"], m["evidence"])
    console.print(sites)
    meds = Table("drug", "class", "start", "active", title="Treatments")
    for t in pic["treatments"]:
        meds.add_row(t["drug"], t["class"], t["start"] or "", "yes" if t["active"] else "no")
    console.print(meds)
    out = Table("indicator", "rule", "summary", title="Cards")
    for c in cards:
        out.add_row(c["indicator"], c["source"]["topic"]["code"], c["summary"])
    console.print(out)
    if pic["unmapped"]:
        console.print(f"[dim]{len(pic['unmapped'])} distinct codes read but not classified (see --json: picture.unmapped)[/dim]")
