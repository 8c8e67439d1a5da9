"""Lines of therapy for metastatic disease, early treatment kept apart, progression, endocrine resistance.

Pure: built once per picture from ``MedicationUse`` records (never per resource), the first
evidence of metastasis, the metastatic sites and the mCODE disease-status Observations. The rules
(design decisions, also in README "Lines of therapy"):

- records of one drug form a course while the gaps between them stay within RESTART_GAP_DAYS;
  courses that begin within REGIMEN_WINDOW_DAYS of the first one form a regimen;
- a course with mCODE curative intent, or begun before the first evidence of metastasis, is early
  treatment (neoadjuvant before breast surgery, adjuvant after it), never a line; palliative intent
  makes a course metastatic whatever its date;
- the first metastatic regimen is line 1. A later regimen opens a new line when
  (a) progression was recorded after the current line began and on or before the regimen's start, or
  (b) the current line had stopped (a gap) and the regimen is neither the same drug classes again
      (a substitution such as anastrozole for letrozole, or a resumption) nor endocrine maintenance
      after chemotherapy within RESTART_GAP_DAYS;
  a regimen begun while the current line still runs is an addition to it (letrozole added beside
  trastuzumab + pertuzumab stays first line);
- ovarian suppression joins the line it runs with and never opens one; bone-modifying agents are
  supportive and never part of a line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from .picture import MedicationUse, Metastasis, Progression, TherapyLine
from .treatments import REGIMEN_WINDOW_DAYS, RESTART_GAP_DAYS

ENDOCRINE = {"aromatase-inhibitor", "tamoxifen", "serd", "other-endocrine"}
CHEMOTHERAPY = {"anthracycline", "taxane", "platinum", "antimetabolite", "other-chemotherapy"}
COMPANION = {"ovarian-suppression"}  # joins a line, never opens one
SUPPORTIVE = {"bone-modifying-agent"}  # never part of a line
# Endocrine maintenance after chemotherapy: what the next regimen may hold to stay in the same line.
MAINTENANCE = ENDOCRINE | COMPANION | {"cdk4/6-inhibitor"}
# A single dated record (one cycle's order or administration) shows the drug given for this long.
POINT_COVER_DAYS = REGIMEN_WINDOW_DAYS
# A site first recorded this long after the first evidence of metastasis is a new site (progression),
# not part of the initial staging (the staging rule looks back over the same 30 days).
NEW_SITE_AFTER_DAYS = 30
# A progression recorded up to this long after an endocrine line stopped is still "on" it: the scan that
# shows progression and the stop are often days apart.
PROGRESSION_ON_LAG_DAYS = 30
# ABC definitions of endocrine resistance (contract row resistance-risk; K until re-read in ABC 6/7).
PRIMARY_ADJUVANT_MONTHS = 24
PRIMARY_METASTATIC_MONTHS = 6
SECONDARY_AFTER_ADJUVANT_MONTHS = 12


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (the last day of the month when it has fewer days)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return day.replace(year=year, month=month, day=min(day.day, last))
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover - every month has 28 days


@dataclass
class Course:
    """Consecutive records of one drug."""

    ingredient: str
    drug_class: str
    start: date
    end: date
    active: bool
    uses: list[MedicationUse] = field(default_factory=list)
    gaps: list[tuple[int, date, date]] = field(default_factory=list)  # (index of the record after a gap, covered until, its start)

    def running_on(self, day: date) -> bool:
        """Given on ``day``, judged only from the records begun by then (a later record never changes the past)."""
        return any(use.start is not None and use.start <= day <= covered_until(use) for use in self.uses)

    @property
    def intent(self) -> str | None:
        # The first records carry the intent; reading every cycle's record would cost per resource.
        return next((u.intent for u in self.uses[:3] if u.intent), None)

    @property
    def stop_reason(self) -> str | None:
        return None if self.active else self.uses[-1].stop_reason

    @property
    def evidence(self) -> list[str]:
        first, last = self.uses[0].reference, self.uses[-1].reference
        return [first] if first == last else [first, last]


@dataclass
class Lines:
    lines: list[TherapyLine]
    early: list[TherapyLine]
    progressions: list[Progression]
    undated: list[str]  # medication records with no date: in ``treatments``, placed in no line


def covered_until(use: MedicationUse) -> date:
    """The last day a record shows the drug given: its end, today while active, or for a single dated
    event (one cycle's order or administration) POINT_COVER_DAYS after it, so weekly to 4-weekly
    cycles read as continuous."""
    start = use.start or date.min
    if use.active:
        return date.max
    if use.end is not None and use.end > start:
        return use.end
    return start + timedelta(days=POINT_COVER_DAYS)


def _split_at_other_starts(courses: list[Course]) -> list[Course]:
    """A course resumed after a real gap in which another regimen began is two courses: the resumed
    drug belongs with what runs then, not with its earlier line. Only the gaps found while the course
    was read are looked at, so cycles given without a gap cost nothing here."""
    while True:
        starts = sorted({c.start for c in courses if c.drug_class not in COMPANION})
        out: list[Course] = []
        changed = False
        for course in courses:
            cut = next((index for index, until, begin in course.gaps
                        if any(until < other <= begin and other != course.start for other in starts)), None)
            if cut is None:
                out.append(course)
                continue
            out += [_course(course.ingredient, course.drug_class, course.uses[:cut]),
                    _course(course.ingredient, course.drug_class, course.uses[cut:])]
            changed = True
        courses = out
        if not changed:
            return courses


def _course(ingredient: str, drug_class: str, uses: list[MedicationUse]) -> Course:
    """A course of ``uses`` (in start order), with its gaps: (index, covered until, next start).

    Comparisons inline rather than max()/covered_until() per record: this loop sees every cycle of
    every drug, and the mapping's budget is counted in Python calls per resource (bench/mapping_cost.py).
    """
    first = uses[0].start or date.min
    course = Course(ingredient, drug_class, first, first, False, uses)
    point = timedelta(days=POINT_COVER_DAYS)
    until = date.min
    for index, use in enumerate(uses):
        start = use.start or date.min
        end = use.end
        if index and start > until:
            course.gaps.append((index, until, start))
        if end is not None and end > course.end:
            course.end = end
        elif start > course.end:
            course.end = start
        if use.active:
            course.active = True
            until = date.max
        else:
            covered = end if end is not None and end > start else start + point
            if covered > until:
                until = covered
    return course


def courses_of(uses: list[MedicationUse]) -> tuple[list[Course], list[str]]:
    """Courses of every dated record (supportive drugs left out), and the references of undated ones.

    ``uses`` come sorted by start (ClinicalPicture.medication_uses), so each drug's records are in order.
    """
    by_drug: dict[str, list[MedicationUse]] = defaultdict(list)
    undated = []
    for use in uses:
        if use.drug_class in SUPPORTIVE:
            continue
        if use.start is None:
            undated.append(use.reference)
            continue
        by_drug[use.ingredient].append(use)
    courses: list[Course] = []
    for ingredient, items in by_drug.items():
        first = 0
        end = items[0].start or date.min
        for index, use in enumerate(items):
            start = use.start or date.min
            if index and (start - end).days > RESTART_GAP_DAYS:
                courses.append(_course(ingredient, items[first].drug_class, items[first:index]))
                first = index
            last = use.end if use.end is not None and use.end > start else start
            if last > end:
                end = last
        courses.append(_course(ingredient, items[first].drug_class, items[first:]))
    courses = _split_at_other_starts(courses)
    courses.sort(key=lambda c: (c.start, c.ingredient))
    return courses, undated


def _regimens(courses: list[Course]) -> list[list[Course]]:
    out: list[list[Course]] = []
    for course in courses:
        if out and (course.start - out[-1][0].start).days <= REGIMEN_WINDOW_DAYS:
            out[-1].append(course)
        else:
            out.append([course])
    return out


def _line(number: int, courses: list[Course], setting: str, basis: str) -> TherapyLine:
    agents: list[str] = []
    for c in courses:
        if c.ingredient not in agents:
            agents.append(c.ingredient)
    # Ovarian suppression running on its own does not keep a line going.
    core = [c for c in courses if c.drug_class not in COMPANION] or courses
    ongoing = any(c.active for c in core)
    evidence = [r for c in courses for r in c.evidence]
    endocrine = [c.start for c in courses if c.drug_class in ENDOCRINE]
    return TherapyLine(
        line=number, agents=agents, start=min(c.start for c in courses), end=None if ongoing else max(c.end for c in core),
        setting=setting, evidence=list(dict.fromkeys(evidence)), basis=basis,
        classes=sorted({c.drug_class for c in courses}), endocrine_start=min(endocrine) if endocrine else None,
    )


def _is_early(course: Course, metastasis_date: date | None, metastatic: bool) -> bool:
    intent = course.intent
    if intent == "curative":
        return True
    if intent == "palliative":
        return False
    if not metastatic:
        return True
    return metastasis_date is not None and course.start < metastasis_date


def _early_lines(courses: list[Course], surgery: list[date]) -> list[TherapyLine]:
    out = []
    for regimen in _regimens(courses):
        line = _line(0, regimen, "early", "early")
        first_surgery = min(surgery) if surgery else None
        if first_surgery and line.start:
            line.setting = "neoadjuvant" if line.start < first_surgery else "adjuvant"
        out.append(line)
    return out


def _progressions(metastases: list[Metastasis], statuses: list[tuple[date | None, str, str]],
                  stopped: list[Course], metastasis_date: date | None) -> list[Progression]:
    out = [Progression(when, "disease-status", [ref], detail) for when, ref, detail in statuses
           if metastasis_date is None or when is None or when >= metastasis_date]
    if metastasis_date is not None:
        first_seen: dict[str, Metastasis] = {}
        for m in metastases:
            if m.regional or m.date is None:
                continue
            if m.site not in first_seen or m.date < (first_seen[m.site].date or date.max):
                first_seen[m.site] = m
        for site, m in first_seen.items():
            if m.date and (m.date - metastasis_date).days > NEW_SITE_AFTER_DAYS:
                out.append(Progression(m.date, "new-site", [m.reference], f"new {site} metastasis"))
    for course in stopped:
        out.append(Progression(course.end, "treatment-stopped", [course.uses[-1].reference],
                               f"{course.ingredient} stopped for no response"))
    out.sort(key=lambda p: (p.date or date.min, p.kind))
    return out


def build_lines(uses: list[MedicationUse], *, metastatic: bool, metastasis_date: date | None,
                metastases: list[Metastasis], statuses: list[tuple[date | None, str, str]],
                surgery: list[date]) -> Lines:
    """Lines, early treatment and progressions. ``statuses`` are (date, reference, text) of "worsened" disease statuses."""
    courses, undated = courses_of(uses)
    early_courses = [c for c in courses if c.drug_class not in COMPANION and _is_early(c, metastasis_date, metastatic)]
    early_ids = {id(c) for c in early_courses}
    met_courses = [c for c in courses if id(c) not in early_ids]
    no_response = [c for c in met_courses if c.drug_class not in COMPANION and c.stop_reason == "no-response"]
    progressions = _progressions(metastases, statuses, no_response, metastasis_date)
    dated = sorted(p.date for p in progressions if p.date)

    groups: list[tuple[list[Course], str]] = []  # courses of each line and why it began
    companions = [c for c in met_courses if c.drug_class in COMPANION]
    for regimen in _regimens([c for c in met_courses if c.drug_class not in COMPANION]):
        start = regimen[0].start
        classes = {c.drug_class for c in regimen}
        if not groups:
            groups.append((list(regimen), "first"))
            continue
        current, _ = groups[-1]
        line_start = min(c.start for c in current)
        line_end = max(c.end for c in current)
        current_classes = {c.drug_class for c in current}
        if any(line_start < d <= start for d in dated):
            groups.append((list(regimen), "progression"))
        elif any(c.running_on(start) for c in current):
            current.extend(regimen)  # an addition to a running regimen
        elif classes <= current_classes:
            current.extend(regimen)  # a substitution within the same classes, or a resumption
        elif (current_classes <= CHEMOTHERAPY and classes <= MAINTENANCE
              and (start - line_end).days <= RESTART_GAP_DAYS):
            current.extend(regimen)  # endocrine maintenance after chemotherapy
        else:
            groups.append((list(regimen), "regimen-change"))
    for companion in companions:
        for members, _ in reversed(groups):
            first = min(c.start for c in members)
            if first - timedelta(days=REGIMEN_WINDOW_DAYS) <= companion.start and (
                    companion.start <= max(c.end for c in members) or any(c.active for c in members)):
                members.append(companion)
                break
    lines = [_line(i + 1, members, "metastatic", basis) for i, (members, basis) in enumerate(groups)]
    for line, following in zip(lines, lines[1:]):
        if following.basis == "progression":
            line.stop_reason = "progression"
    for line, (members, _) in zip(lines, groups):
        if line.stop_reason is None and line.end is not None:
            last = max((c for c in members if c.drug_class not in COMPANION), key=lambda c: c.end, default=None)
            line.stop_reason = last.stop_reason if last else None
    return Lines(lines, _early_lines(early_courses, surgery), progressions, undated)


def progression_on(line: TherapyLine, progressions: list[Progression], since: date | None = None) -> list[Progression]:
    """Progressions recorded while ``line`` ran (after ``since``, default its start), or within
    PROGRESSION_ON_LAG_DAYS after it stopped."""
    since = since or line.start
    if since is None:
        return []
    until = None if line.end is None else line.end + timedelta(days=PROGRESSION_ON_LAG_DAYS)
    return [p for p in progressions if p.date and since < p.date and (until is None or p.date <= until)]


def endocrine_progressions(lines: list[TherapyLine], progressions: list[Progression]) -> list[tuple[TherapyLine, Progression]]:
    """(line, progression) for every progression while an endocrine agent of a metastatic line ran."""
    return [(line, p) for line in lines if line.endocrine_start for p in progression_on(line, progressions, line.endocrine_start)]


@dataclass
class Resistance:
    status: str  # primary | secondary | none | unknown
    basis: str
    evidence: list[str] = field(default_factory=list)
    last_progression_on_endocrine: Progression | None = None  # or relapse during adjuvant endocrine therapy


def endocrine_resistance(lines: list[TherapyLine], early: list[TherapyLine], progressions: list[Progression], *,
                         hr_positive: bool, metastatic: bool, relapse: date | None, relapse_evidence: list[str]) -> Resistance:
    """Primary or secondary endocrine resistance as ABC defines it (contract row ``resistance-risk``).

    Primary: relapse during the first 2 years of adjuvant endocrine therapy, or progression within the
    first 6 months of first-line endocrine therapy for metastatic disease. Secondary: relapse on
    adjuvant endocrine therapy after its first 2 years or within 12 months of completing it, or
    progression on endocrine therapy for metastatic disease 6 months or more after starting it.
    ``none`` when HR-positive metastatic disease meets neither with the dates known; ``unknown`` when
    the disease is not HR-positive and metastatic, or a date needed is missing.
    """
    on_et = endocrine_progressions(lines, progressions)
    found: list[tuple[str, str, list[str]]] = []
    missing = []
    relapse_on_et: Progression | None = None
    adjuvant = [r for r in early if set(r.classes) & ENDOCRINE and r.start is not None]
    if adjuvant:
        # Tamoxifen then an aromatase inhibitor is one adjuvant endocrine therapy: its 2 years count from the first.
        names = " then ".join(" + ".join(r.agents) for r in adjuvant)
        et_start = min(r.start for r in adjuvant if r.start)
        et_end = None if any(r.end is None for r in adjuvant) else max(r.end for r in adjuvant if r.end)
        refs = [e for r in adjuvant for e in r.evidence[:1]] + relapse_evidence[:2]
        if relapse is None:
            missing.append(f"adjuvant {names} from {et_start.isoformat()}, but the date of relapse is not recorded")
        elif relapse >= et_start:
            running = et_end is None or et_end >= relapse
            if running:
                relapse_on_et = Progression(relapse, "relapse", relapse_evidence[:3], f"relapse on adjuvant {names}")
            if running and relapse < add_months(et_start, PRIMARY_ADJUVANT_MONTHS):
                found.append(("primary", f"relapse {relapse.isoformat()} within the first 2 years of adjuvant {names} (from {et_start.isoformat()})", refs))
            elif running:
                found.append(("secondary", f"relapse {relapse.isoformat()} on adjuvant {names} after its first 2 years (from {et_start.isoformat()})", refs))
            elif et_end is not None and relapse <= add_months(et_end, SECONDARY_AFTER_ADJUVANT_MONTHS):
                found.append(("secondary", f"relapse {relapse.isoformat()} within 12 months of completing adjuvant {names} ({et_end.isoformat()})", refs))
    events = [p for _, p in on_et] + ([relapse_on_et] if relapse_on_et else [])
    last_on_et = max(events, key=lambda p: p.date or date.min) if events else None
    if not metastatic:
        return Resistance("unknown", "no metastatic disease recorded", [], last_on_et)
    if not hr_positive:
        return Resistance("unknown", "HR status is not positive (negative or not known)", [], last_on_et)
    first_et = next((line for line in lines if line.endocrine_start), None)
    if relapse is None and first_et is not None:
        missing.append("the date of the first metastasis is not recorded, so endocrine therapy cannot be placed before or after it")
    for line, p in on_et:
        assert p.date is not None and line.endocrine_start is not None  # progression_on keeps dated ones only
        names = " + ".join(line.agents)
        refs = p.evidence + line.evidence[:2]
        six_months = add_months(line.endocrine_start, PRIMARY_METASTATIC_MONTHS)
        if line is first_et and p.date < six_months:
            found.append(("primary", f"progression {p.date.isoformat()} within 6 months of first-line endocrine therapy ({names} from {line.endocrine_start.isoformat()})", refs))
        elif p.date >= six_months:
            found.append(("secondary", f"progression {p.date.isoformat()} on {names} (endocrine therapy from {line.endocrine_start.isoformat()}), 6 months or more after starting it", refs))
    for status in ("primary", "secondary"):
        hits = [f for f in found if f[0] == status]
        if hits:
            return Resistance(status, "; ".join(h[1] for h in hits), [r for h in hits for r in h[2]], last_on_et)
    if missing:
        return Resistance("unknown", "; ".join(missing), [], last_on_et)
    return Resistance("none", "no relapse or progression on endocrine therapy that meets the ABC definitions", [], last_on_et)
