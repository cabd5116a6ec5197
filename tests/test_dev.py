"""``./dev``, the Quickstart's entry point: what it runs is what the README says it runs."""

from __future__ import annotations

import re

from tests.conftest import REPO

DEV = (REPO / "dev").read_text()


def branch(name: str) -> str:
    """The body of ``name)`` in the script's ``case "$cmd"`` (up to its ``;;``)."""
    match = re.search(rf"^    {name}\)\n(.*?);;", DEV, re.M | re.S)
    assert match, f"./dev has no {name} command"
    return match.group(1)


def test_dev_test_reports_why_tests_were_skipped() -> None:
    """A run full of skips must say so: pytest's -rs lists each skip with its reason."""
    (pytest_line,) = [line for line in branch("test").splitlines() if "-m pytest" in line]
    assert re.search(r"-m pytest\b.*\s-rs\b", pytest_line), pytest_line


def test_dev_demo_runs_the_console_script() -> None:
    assert 'exec "$VENV/bin/wgmesh" demo "$@"' in branch("demo")
