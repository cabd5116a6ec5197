"""The files Pulumi and pip read to build the program's virtualenv: requirements.txt, constraints.txt, pyproject.toml.

Pulumi.yaml asks for the ``pip`` toolchain with ``virtualenv: .venv``: on a fresh checkout Pulumi creates .venv and
runs ``pip install -r requirements.txt`` in it. These tests keep that path working and the pins honest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")


def _pins() -> dict[str, str]:
    """constraints.txt as {canonical name: pinned version}."""
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} must pin an exact version (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(spec) for spec in project["dependencies"]]
    declared += [Requirement(spec) for spec in project["optional-dependencies"]["test"]]
    return declared


def test_pulumi_yaml_names_the_pip_toolchain_and_the_virtualenv_requirements_txt_fills() -> None:
    options = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert options == {"toolchain": "pip", "virtualenv": ".venv"}
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines == ["-c constraints.txt", "-e ."], "requirements.txt installs this project (its pyproject dependencies), pinned"


def test_every_pulumi_sdk_is_pinned_and_every_pin_lies_within_the_declared_range() -> None:
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name.startswith("pulumi"):
            assert name in pins, f"constraints.txt must pin {requirement.name} (an SDK newer than the engine is trouble)"
        if name in pins:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]} outside pyproject.toml's {requirement}"
            )


def test_the_tests_run_against_the_pinned_versions() -> None:
    for name, version in _pins().items():
        installed = metadata.version(name)
        assert installed == version, f"{name}: installed {installed}, constraints.txt pins {version}; run ./dev setup"


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("WGMESH_SKIP_NETWORK_INSTALL") == "1", reason="WGMESH_SKIP_NETWORK_INSTALL=1")
def test_a_fresh_checkout_gets_a_working_virtualenv_the_way_pulumi_makes_it(tmp_path: Path) -> None:
    """What Pulumi's pip toolchain does on a fresh clone: a new venv, ``pip install -r requirements.txt``; then the
    program's imports resolve (run from the project directory, as the language host runs __main__.py)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    for name in ("requirements.txt", "constraints.txt", "pyproject.toml"):  # the working tree's, committed or not
        (clone / name).write_bytes((REPO / name).read_bytes())
    assert not (clone / ".venv").exists()
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True, timeout=120)
    python = clone / ".venv" / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "import pulumi, pulumi_aws, pulumi_command, pulumi_random, wgmesh.mesh, wgmesh.components\n"
        "from importlib import metadata\n"
        "print(metadata.version('pulumi'))"
    )
    result = subprocess.run([str(python), "-c", probe], cwd=clone, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == _pins()["pulumi"]
