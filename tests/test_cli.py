"""The command line as a newcomer meets it: help without type tags, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.kit.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", [[], ["explain"], ["serve"], ["hook"], ["load"]])
def test_help_has_no_type_tags_or_boxes(command: list[str]) -> None:
    out = _cli(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "<bool>" not in out.stdout and "╭" not in out.stdout
    assert "--help" in out.stdout and "Show this message and exit." in out.stdout


@pytest.mark.parametrize(("content", "message"), [
    ("# not JSON\n", "is not a JSON file"),
    ('{"resourceType": "Patient", "id": "p"}', "is neither a FHIR Bundle nor a JSON array of resources"),
])
def test_explain_of_a_file_that_is_no_bundle_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "notes.md"
    path.write_text(content)
    for command in (["explain", "--bundle", str(path)], ["sample-request", "--bundle", str(path)]):
        out = _cli(*command)
        assert out.returncode == 2
        assert out.stderr.strip().count("\n") == 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert out.stdout == ""


def test_explain_of_the_readme_names_the_file() -> None:
    out = _cli("explain", "--bundle", "README.md")
    assert out.returncode == 2 and out.stderr.startswith("error: README.md is not a JSON file"), out.stderr
