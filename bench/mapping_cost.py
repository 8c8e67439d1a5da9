"""CPU cost of the service's own steps, without HTTP: where a hook call's time could go.

Mapping (build_picture) must stay linear and small next to parsing the body; rule evaluation is
per call; and the parse-cost decision (plain dicts, not fhir.resources models, on the hot path)
rests on orjson.loads vs model_validate of every prefetched resource, measured here on the same
synthetic patients as bench/run.py. timeit turns the garbage collector off while it times, so
these are pure CPU figures; the collector's share shows up in run.py's p99.

    .venv/bin/python bench/mapping_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import patients  # noqa: E402
from cds_hooks.evaluate import evaluate  # noqa: E402
from fhir.resources.R4B import get_fhir_model_class  # noqa: E402
from mappings.build import build_picture  # noqa: E402
from service.fhir_client import bundle_resources  # noqa: E402

TARGET_US_PER_RESOURCE = 20.0


def per_call(fn: Callable[[], Any], repeat: int, min_time: float = 0.2) -> float:
    """Median seconds per call over ``repeat`` batches, each batch at least ``min_time`` long."""
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < min_time and number < 1_000_000:  # bounded: autorange by doubling
        number *= 2
    return statistics.median(t / number for t in timer.repeat(repeat, number))


def prefetched(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources the service reads out of the prefetch (service/prefetch.py does the same)."""
    out: list[dict[str, Any]] = []
    for value in request["prefetch"].values():
        out.extend(bundle_resources(value) if value.get("resourceType") == "Bundle" else [value])
    return out


def validate_all(resources: list[dict[str, Any]]) -> int:
    failures = 0
    for res in resources:
        try:
            get_fhir_model_class(res["resourceType"]).model_validate(res)
        except Exception:  # noqa: BLE001 - counted, reported
            failures += 1
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    repeat = 3 if parser.parse_args().quick else 7
    today = date.today()  # as the service does
    rows = []
    for n in patients.SIZES:
        request = patients.hook_request(patients.generate(n))
        body = orjson.dumps(request)
        resources = prefetched(orjson.loads(body))
        assert len(resources) == n
        picture = build_picture(resources, today=today)
        mapping = per_call(lambda: build_picture(resources, today=today), repeat)
        rules = per_call(lambda: evaluate("patient-view", picture, hook_instance="bench", today=today), repeat)
        loads = per_call(lambda: orjson.loads(body), repeat)
        failures = validate_all(resources)
        validate = per_call(lambda: validate_all(resources), max(3, repeat // 2), min_time=0.0)
        rows.append((n, len(body), mapping, rules, loads, validate, failures))

    us = lambda seconds, n: seconds * 1e6 / n  # noqa: E731
    print(f"Python {sys.version.split()[0]}; median of {repeat} timeit batches, gc off while timing\n")
    print("| N | KB | build_picture ms | µs/resource | evaluate ms | orjson.loads ms (µs/res) "
          "| fhir.resources R4B validate ms (µs/res) | validate / loads |")
    print("|---|---|---|---|---|---|---|---|")
    for n, size, mapping, rules, loads, validate, failures in rows:
        bad = f", {failures} invalid" if failures else ""
        print(f"| {n} | {size / 1024:.0f} | {mapping * 1e3:.2f} | {us(mapping, n):.1f} | {rules * 1e3:.3f} "
              f"| {loads * 1e3:.2f} ({us(loads, n):.1f}) | {validate * 1e3:.0f} ({us(validate, n):.0f}{bad}) "
              f"| {validate / loads:.0f}x |")
    by_n = {r[0]: us(r[2], r[0]) for r in rows}
    big, mid = max(by_n), sorted(by_n)[1]
    growth = by_n[big] / by_n[mid]
    met = "met" if by_n[big] < TARGET_US_PER_RESOURCE else "MISSED"
    print(f"\nTarget (issue): mapping under {TARGET_US_PER_RESOURCE:.0f} µs per resource at N={big}: "
          f"{by_n[big]:.1f} µs ({met}); µs/resource N={big} vs N={mid}: {growth:.2f}x "
          f"({'linear' if growth < 1.25 else 'SUPERLINEAR'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
