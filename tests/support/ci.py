"""A test that needs a tool this machine lacks: skip here, fail under CI (CI must run it)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str, what_ci_must_run: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run {what_ci_must_run}")
    pytest.skip(message)
