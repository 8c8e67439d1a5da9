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
import cProfile
import pstats
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


def batch_size(fn: Callable[[], Any], min_time: float = 0.2) -> int:
    number = 1
    while timeit.timeit(fn, number=number) < min_time and number < 1_000_000:  # bounded: doubling
        number *= 2
    return number


def interleaved(fns: dict[int, Callable[[], Any]], repeat: int, min_time: float = 0.2) -> dict[int, float]:
    """Median seconds per call of each fn, batches taken round-robin across fns.

    On a shared machine a slow spell would otherwise land on one N only and fake a non-linearity.
    """
    numbers = {k: batch_size(fn, min_time) if min_time else 1 for k, fn in fns.items()}
    samples: dict[int, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            samples[k].append(timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return {k: statistics.median(v) for k, v in samples.items()}


def calls_per_resource(resources: list[dict[str, Any]], today: date) -> float:
    """Python calls per resource in one build_picture: a noise-free check of linear growth."""
    profile = cProfile.Profile()
    profile.runcall(build_picture, resources, today=today)
    return pstats.Stats(profile).total_calls / len(resources)  # type: ignore[attr-defined]


def prefetched(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources the service reads out of the prefetch (service/edge/prefetch.py does the same)."""
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
    bodies = {n: orjson.dumps(patients.hook_request(patients.generate(n))) for n in patients.SIZES}
    resources = {n: prefetched(orjson.loads(body)) for n, body in bodies.items()}
    assert all(len(resources[n]) == n for n in bodies)
    pictures = {n: build_picture(res, today=today) for n, res in resources.items()}
    failures = {n: validate_all(res) for n, res in resources.items()}

    def bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
        return lambda: fn(*args, **kwargs)

    mapping = interleaved({n: bind(build_picture, r, today=today) for n, r in resources.items()}, repeat)
    rules = interleaved({n: bind(evaluate, "patient-view", p, hook_instance="bench", today=today)
                         for n, p in pictures.items()}, repeat)
    loads = interleaved({n: bind(orjson.loads, b) for n, b in bodies.items()}, repeat)
    validate = interleaved({n: bind(validate_all, r) for n, r in resources.items()}, max(3, repeat // 2), min_time=0)
    calls = {n: calls_per_resource(r, today) for n, r in resources.items()}

    us = lambda seconds, n: seconds * 1e6 / n  # noqa: E731
    print(f"Python {sys.version.split()[0]}; median of {repeat} timeit batches interleaved across N, gc off while timing\n")
    print("| N | KB | build_picture ms | µs/resource | calls/resource | evaluate ms | orjson.loads ms (µs/res) "
          "| fhir.resources R4B validate ms (µs/res) | validate / loads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, body in bodies.items():
        bad = f", {failures[n]} invalid" if failures[n] else ""
        print(f"| {n} | {len(body) / 1024:.0f} | {mapping[n] * 1e3:.2f} | {us(mapping[n], n):.1f} | {calls[n]:.1f} "
              f"| {rules[n] * 1e3:.3f} | {loads[n] * 1e3:.2f} ({us(loads[n], n):.1f}) "
              f"| {validate[n] * 1e3:.0f} ({us(validate[n], n):.0f}{bad}) | {validate[n] / loads[n]:.0f}x |")
    big, mid = sorted(bodies)[-1], sorted(bodies)[-2]
    per_big, per_mid = us(mapping[big], big), us(mapping[mid], mid)
    met = "met" if per_big < TARGET_US_PER_RESOURCE else "MISSED"
    print(f"\nTarget (issue): mapping under {TARGET_US_PER_RESOURCE:.0f} µs per resource at N={big}: {per_big:.1f} µs ({met}).")
    print(f"Growth N={mid} -> N={big}: µs/resource x{per_big / per_mid:.2f}, Python calls/resource "
          f"x{calls[big] / calls[mid]:.2f} (1.00 = linear in work; time above that is cache/memory, not algorithm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
