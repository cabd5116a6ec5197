"""The layers of the house, as imports: ``mesh/`` (the pure core) imports neither Pulumi nor the lab, and no layer
imports one above it.

    cli/         the ``wgmesh`` command: may import everything below
    lab/         test equipment (network namespaces, the engine through the Automation API): not cli/
    testproviders/  test equipment: the command and random providers the engine runs where the official
                 plugins are absent: pulumi's gRPC bindings and the pure core only
    components/  the Pulumi layer: mesh/ and hostside/ only, never the lab or the CLI
    hostside/    the scripts that run on the hosts: the standard library (and mesh/) only
    mesh/        the pure core: the standard library, PyYAML and cryptography only

Checked twice: statically over every ``import`` in the source (lazy ones inside functions included), and by what
importing every core module really loads in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LOCAL = {"mesh", "hostside", "components", "lab", "cli", "policy", "bench", "tests", "testproviders"}
# Installed, these are wgmesh.<name> (pyproject.toml's package-dir): the top-level names are a consumer's, never ours.
INSTALLED = {"mesh", "hostside", "components", "lab", "cli"}
# Which layers each package may import besides the standard library and itself: a third-party top-level name, or
# for ours the layer (`mesh` stands for wgmesh.mesh).
ALLOWED = {
    "mesh": {"yaml", "cryptography"},
    "hostside": {"mesh"},
    "components": {"pulumi", "pulumi_aws", "pulumi_command", "pulumi_random", "mesh", "hostside"},
    "lab": {"pulumi", "yaml", "mesh", "hostside", "components", "testproviders"},
    "testproviders": {"pulumi", "grpc", "google", "mesh", "bcrypt"},
    "cli": {"mesh", "lab"},
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (relative imports stay inside its own package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def forbidden_imports(package: str) -> list[str]:
    """``file: module`` for each import of ``package``'s files outside the standard library, itself and ALLOWED."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            top = module.split(".")[0]
            if top in INSTALLED:
                found.append(f"{path.relative_to(REPO)}: {module} (installed it is wgmesh.{module})")
                continue
            if top == "wgmesh" and "." in module:
                top = module.split(".")[1]
            if top == package or top == "__future__" or top in ALLOWED[package]:
                continue
            if top in LOCAL or top not in sys.stdlib_module_names:
                found.append(f"{path.relative_to(REPO)}: {module}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_layer_imports_one_above_it(package: str) -> None:
    assert forbidden_imports(package) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The walk finds imports inside functions too (the lab commands used to import the lab lazily from mesh/)."""
    source = tmp_path / "x.py"
    source.write_text("import os\n\ndef f():\n    from wgmesh.lab.deploy import LabStack\n    import pulumi\n")
    assert imported_modules(source) == {"os", "wgmesh.lab.deploy", "pulumi"}


def test_the_check_refuses_the_old_top_level_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import of an old top-level name finds a consumer's own package, or nothing: the layer check says so."""
    (tmp_path / "components").mkdir()
    source = "from mesh.model import Mesh\nfrom wgmesh.mesh.errors import MeshConfigError\n"  # rename: keep
    (tmp_path / "components" / "x.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert forbidden_imports("components") == ["components/x.py: mesh.model (installed it is wgmesh.mesh.model)"]  # rename: keep


def test_importing_the_whole_core_loads_no_pulumi_and_no_lab() -> None:
    modules = sorted(f"wgmesh.mesh.{path.stem}" for path in (REPO / "mesh").glob("*.py") if path.stem != "__main__")
    modules += sorted(f"wgmesh.mesh.commands.{path.stem}" for path in (REPO / "mesh" / "commands").glob("*.py"))
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=True).stdout.split()
    assert "wgmesh.mesh.cli" in loaded
    above = sorted(
        name for name in loaded if name.removeprefix("wgmesh.").split(".")[0] in {"pulumi", "lab", "components", "cli", "hostside"}
    )
    assert above == []


def test_python_m_mesh_has_the_offline_commands_and_wgmesh_has_all() -> None:
    from wgmesh.cli.main import build_parser as wgmesh_parser
    from wgmesh.mesh.cli import build_parser as core_parser

    def commands(parser) -> set[str]:
        return set(next(action.choices for action in parser._actions if hasattr(action, "choices") and action.choices))

    assert commands(core_parser()) == {"check", "render", "graph"}
    assert commands(wgmesh_parser()) == {"check", "render", "graph", "lab", "demo"}


@pytest.mark.parametrize("command", ["", "lab", "demo", "check"])
def test_the_wgmesh_console_script_answers_help(command: str) -> None:
    """The installed script (pyproject's [project.scripts]) beside this interpreter, as users run it."""
    script = Path(sys.executable).parent / "wgmesh"
    if not script.exists():
        pytest.skip(f"{script} is not installed: run ./dev setup (pip install -e .)")
    result = subprocess.run([str(script), *([command] if command else []), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: wgmesh") and "Exit codes" in result.stdout
