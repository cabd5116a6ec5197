"""``graph -o PATH``: the file holds what its name says (a real PNG for ``.png``), or the command refuses."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from wgmesh.mesh.cli import main
from wgmesh.mesh.commands import graph as graph_command
from wgmesh.mesh.graph import PNG_SIGNATURE


def test_png_output_is_a_png_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz's dot (Debian: apt-get install graphviz)")
    out = tmp_path / "mesh.png"
    assert main(["graph", str(EXAMPLE), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 50, "three peer boxes side by side"
    assert b"graph wgmesh" not in data
    assert "(png, 3 peers, 3 links)" in capsys.readouterr().err


def test_png_without_graphviz_is_refused_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("wgmesh.mesh.graph.shutil.which", lambda _name: None)
    out = tmp_path / "mesh.png"
    assert main(["graph", str(EXAMPLE), "-o", str(out)]) == 1
    assert "no PNG can be drawn" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("name", ["mesh.jpg", "mesh.pdf", "mesh.txt", "mesh"])
def test_a_suffix_naming_no_format_is_refused(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / name
    assert main(["graph", str(EXAMPLE), "-o", str(out)]) == 1
    assert "cannot tell the format from its name" in capsys.readouterr().err and not out.exists()
    assert main(["graph", str(EXAMPLE), "-o", str(out), "--format", "dot"]) == 0, "an explicit --format decides"
    assert out.read_text().startswith("graph wgmesh {")


def test_every_format_has_a_suffix() -> None:
    assert set(graph_command.SUFFIXES.values()) == set(graph_command.FORMATS)
