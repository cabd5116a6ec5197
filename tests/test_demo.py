"""``python -m mesh demo`` (the README's Quickstart, ``./dev demo``).

* anywhere: the example mesh is validated and rendered (one 0600 config per peer, the key file beside them, never
  in the repository); without root the lab part is skipped with the reason, and the command still exits 0;
* as root with the lab's tools: the whole demo runs (lab of three hosts, the last behind NAT; the real program's
  installs over SSH; every peer verified; a LAN-to-LAN ping through the mesh), the lab is gone afterwards, and
  ``--keep`` leaves it up for ``python -m mesh lab exec``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from lab import Lab
from mesh.cli import main
from tests.conftest import REPO, require_lab


def test_without_root_it_renders_and_says_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    before = sorted(path.name for path in (REPO / "examples").iterdir())
    assert main(["demo", "--out", str(tmp_path / "out"), "--state", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "valid mesh of 3 peers" in out
    assert re.search(r"local lab: skipped: the lab needs root", out), out
    for name in ("zhy", "bjs", "pub"):
        conf = tmp_path / "out" / f"{name}.conf"
        assert conf.stat().st_mode & 0o777 == 0o600 and "[Interface]" in conf.read_text()
    assert (tmp_path / "out" / "mesh.keys.yaml").stat().st_mode & 0o777 == 0o600
    assert sorted(path.name for path in (REPO / "examples").iterdir()) == before, "the demo wrote into examples/"
    assert not (tmp_path / "state").exists()


def test_skip_lab_and_a_default_temporary_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--skip-lab"]) == 0
    out = capsys.readouterr().out
    rendered = Path(re.search(r"into (\S+)", out).group(1))  # type: ignore[union-attr]
    try:
        assert sorted(path.name for path in rendered.glob("*.conf")) == ["bjs.conf", "pub.conf", "zhy.conf"]
        assert "local lab: skipped (--skip-lab)" in out
    finally:
        for path in rendered.iterdir():
            path.unlink()
        rendered.rmdir()


def test_an_invalid_description_is_exit_1_and_leaves_no_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: 10.255.0.0/24\npeers: [{name: a}]\n")
    assert main(["demo", str(bad), "--out", str(tmp_path / "out"), "--skip-lab"]) == 1
    assert "error:" in capsys.readouterr().err
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert main(["demo", str(bad), "--skip-lab"]) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.lab
def test_as_root_it_builds_the_mesh_on_the_lab_and_takes_it_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_lab()
    state = tmp_path / "state"
    lab = Lab(state)
    try:
        code = main(["demo", "--out", str(tmp_path / "out"), "--state", str(state), "--wait", "240"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "h3  ssh root@198.51.100.13" in out and "behind NAT" in out
        assert re.search(r"9 create in [\d.]+s", out), out  # per host: its host key learned, install, verify
        for name in ("h1", "h2", "h3"):
            assert re.search(rf"^  {name}: ok in [\d.]+s: ", out, re.MULTILINE), out
        assert "3 packets transmitted, 3 received, 0% packet loss" in out
        assert "lab down: removed" in out
        assert lab.state() is None and not (state / "executor.json").exists()
    finally:
        lab.down()


@pytest.mark.lab
def test_keep_leaves_the_lab_up_for_exploring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_lab()
    state = tmp_path / "state"
    lab = Lab(state)
    try:
        assert main(["demo", "--out", str(tmp_path / "out"), "--state", str(state), "--keep", "--no-nat", "--wait", "240"]) == 0
        out = capsys.readouterr().out
        assert "the lab stays up" in out and "lab down: removed" not in out
        assert "behind NAT" not in out
        assert main(["lab", "exec", "--state", str(state), "h1", "--", "wg", "show", "wg0", "peers"]) == 0
    finally:
        lab.down()
    assert lab.state() is None
