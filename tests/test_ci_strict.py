"""CI turns every skip into a failure (``WGMESH_NO_SKIPS=1``, set by ``.ci/run``), so a run cannot pass on skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SKIPPING = """
import pytest

@pytest.fixture
def lab():
    pytest.skip("lab unavailable: needs root")

def test_in_the_lab(lab):
    pass

def test_plain():
    pytest.skip("needs wireguard-go")
"""


def _run(tmp_path: Path, strict: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "tests" / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "WGMESH_NO_SKIPS"}
    if strict:
        env["WGMESH_NO_SKIPS"] = "1"
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_skips_fail_the_run_in_ci_and_say_why(tmp_path: Path) -> None:
    result = _run(tmp_path, strict=True)
    assert result.returncode == 1, result.stdout
    assert result.stdout.count("skipped in CI (WGMESH_NO_SKIPS=1)") >= 2, result.stdout
    assert "lab unavailable: needs root" in result.stdout


def test_skips_stay_skips_elsewhere(tmp_path: Path) -> None:
    result = _run(tmp_path, strict=False)
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout


def test_ci_script_runs_the_readme_test_command_strictly() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "export WGMESH_NO_SKIPS=1" in script
    assert "./dev test" in script
