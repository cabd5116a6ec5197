"""One namespace (issue 19): installed, wgmesh adds the import name ``wgmesh`` and no other.

The repository keeps its layout (``mesh/``, ``components/``, ... at the top); pyproject.toml maps each folder to
``wgmesh.<folder>``. A consumer's own ``components/`` or ``mesh/`` package then neither shadows ours nor is shadowed:
proven by installing the built wheel into a fresh virtualenv (its dependencies from PyPI at the pinned versions)
next to a consumer project that has both, and importing both from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.checkout import build_wheel
from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

# The folders the wheel carries, each under wgmesh; testproviders/, tests/, bench/, policy/ stay in the repository.
FOLDERS = ("mesh", "hostside", "components", "lab", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install git+<repo>` builds (its build backend comes from PyPI, as pip does it)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_package_map_names_every_folder_of_the_repository() -> None:
    """pyproject.toml lists the packages explicitly (a mapping cannot be found): a new sub-package must be added."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {"wgmesh"}
    for folder in FOLDERS:
        on_disk |= {
            ".".join(("wgmesh", folder, *init.parent.relative_to(REPO / folder).parts)) for init in (REPO / folder).rglob("__init__.py")
        }
    assert set(tool["packages"]) == on_disk
    assert tool["package-dir"] == {"wgmesh": "wgmesh", **{f"wgmesh.{folder}": folder for folder in FOLDERS}}


def test_the_wheel_has_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/RECORD"))
    assert {name.split("/")[0] for name in names} == {"wgmesh", dist_info}
    assert zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split() == ["wgmesh"]
    for folder in FOLDERS:
        for source in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in source.parts:
                assert f"wgmesh/{folder}/{source.relative_to(REPO / folder)}" in names
    assert not any(part in name for name in names for part in ("testproviders", "tests/", "bench/", "policy/"))
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "wgmesh = wgmesh.cli.main:main" in entry_points


def test_a_checkout_on_sys_path_needs_no_install(tmp_path: Path) -> None:
    """The checkout on PYTHONPATH, with the dependencies but without wgmesh's install (-S: no .pth, so no editable
    finder), finds wgmesh.mesh: what provider/pulumi-resource-wgmesh and the test providers' shims rely on."""
    code = "import wgmesh.mesh.errors as e, wgmesh.hostside as h; print(e.__file__); print(h.__file__)"
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(REPO / "mesh" / "errors.py"), str(REPO / "hostside" / "__init__.py")]


CONSUMER = textwrap.dedent(
    """\
    import json
    import subprocess
    import sys
    from importlib import metadata
    from pathlib import Path

    import cli
    import components
    import lab
    import mesh
    from components import Mesh as TheirMesh
    from mesh import WHO

    import wgmesh
    import wgmesh.cli.main
    import wgmesh.lab
    from wgmesh.components import Mesh
    from wgmesh.mesh.validation import load_mesh

    here = Path.cwd()
    for module in (cli, components, lab, mesh):
        assert Path(module.__file__).parent.parent == here, module.__file__
    assert WHO == "consumer" and TheirMesh == "their mesh" and lab.WHO == cli.WHO == "consumer"
    assert Path(wgmesh.__file__).parent.parent != here
    assert Mesh.__module__ == "wgmesh.components.mesh_api"
    peers = [{"name": "a", "endpoint": "203.0.113.1:51820"}, {"name": "b", "endpoint": "203.0.113.2:51820"}]
    spec = load_mesh({"network": "10.9.0.0/24", "peers": peers})
    dist = metadata.distribution("wgmesh")
    tops = {path.parts[0] for path in dist.files if not path.parts[0].startswith("..")}
    print(json.dumps({"peers": list(spec.names), "top_level": dist.read_text("top_level.txt").split(), "tops": sorted(tops)}))
    """
)


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("WGMESH_SKIP_NETWORK_INSTALL") == "1", reason="WGMESH_SKIP_NETWORK_INSTALL=1")
def test_a_consumer_with_its_own_components_and_mesh_gets_both(wheel: Path, tmp_path: Path) -> None:
    consumer = tmp_path / "consumer"
    for package in ("components", "mesh", "lab", "cli"):
        (consumer / package).mkdir(parents=True)
    (consumer / "components" / "__init__.py").write_text('Mesh = "their mesh"\n')
    (consumer / "mesh" / "__init__.py").write_text('WHO = "consumer"\n')
    (consumer / "lab" / "__init__.py").write_text('WHO = "consumer"\n')
    (consumer / "cli" / "__init__.py").write_text('WHO = "consumer"\n')
    (consumer / "main.py").write_text(CONSUMER)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(REPO / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    run = subprocess.run([str(python), "main.py"], cwd=consumer, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    facts = __import__("json").loads(run.stdout)
    assert facts["peers"] == ["a", "b"]
    assert facts["top_level"] == ["wgmesh"]
    assert facts["tops"] == ["wgmesh", "-".join(wheel.name.split("-")[:2]) + ".dist-info"]
    # The console script and `python -m`, run from the consumer's directory (its own `cli` and `mesh` first on sys.path).
    example = REPO / "examples" / "mesh.yaml"
    for argv in ([str(venv / "bin" / "wgmesh"), "check", str(example)], [str(python), "-m", "wgmesh.mesh", "check", str(example)]):
        result = subprocess.run([*argv, "--keys", str(tmp_path / "k.yaml")], cwd=consumer, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (argv, result.stderr[-2000:])
    result = subprocess.run([str(python), "-m", "wgmesh", "--help"], cwd=consumer, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: wgmesh"), result.stderr[-2000:]
