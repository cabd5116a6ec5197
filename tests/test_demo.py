"""``wgmesh demo`` (the README's Quickstart, ``./dev demo``).

* anywhere: the example mesh is validated and rendered (one 0600 config per peer, the key file beside them, never
  in the repository); without root the lab part is skipped with the reason, and the command still exits 0;
* as root with the lab's tools: the whole demo runs (lab of three hosts, the last behind NAT; the real program's
  installs over SSH; every peer verified; a LAN-to-LAN ping through the mesh), the lab is gone afterwards, and
  ``--keep`` leaves it up for ``wgmesh lab exec``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, require_lab
from wgmesh.cli import demo
from wgmesh.cli.main import main
from wgmesh.lab import Lab
from wgmesh.mesh.cli import UserError


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


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary-files directory of this test's own, so that what the demo leaves there can be seen."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_skip_lab_renders_into_a_temporary_directory_and_removes_it(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    real_render = demo.render.run

    def render_and_look(args):  # the files exist while the demo runs...
        code = real_render(args)
        seen.extend(sorted(path.name for path in Path(args.out).iterdir()))
        return code

    monkeypatch.setattr(demo.render, "run", render_and_look)
    assert main(["demo", "--skip-lab"]) == 0
    out = capsys.readouterr().out
    assert seen == ["bjs.conf", "mesh.keys.yaml", "pub.conf", "zhy.conf"]
    assert "local lab: skipped (--skip-lab)" in out
    assert list(private_tmp.iterdir()) == [], "...and are gone afterwards"
    assert re.search(r"removed \S+wgmesh-demo-\S+ \(private keys and the mesh secret\)", out), out


@pytest.mark.parametrize("failure", [UserError("the lab broke"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_lab_part_leaves_no_keys_behind(
    failure: BaseException, private_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def lab_demo_fails(args):
        (rendered,) = private_tmp.glob("wgmesh-demo-*")
        assert (rendered / "mesh.keys.yaml").is_file(), "the keys were there when the lab part started"
        raise failure

    monkeypatch.setattr(demo, "_lab_unavailable", lambda: None)
    monkeypatch.setattr(demo, "_lab_demo", lab_demo_fails)
    assert main(["demo"]) == (130 if isinstance(failure, KeyboardInterrupt) else 1)
    assert list(private_tmp.iterdir()) == []


def test_an_invalid_description_is_exit_1_and_leaves_no_temporary_directory(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: 10.255.0.0/24\npeers: [{name: a}]\n")
    assert main(["demo", str(bad), "--out", str(tmp_path / "out"), "--skip-lab"]) == 1
    assert "error:" in capsys.readouterr().err
    assert main(["demo", str(bad), "--skip-lab"]) == 1
    assert list(private_tmp.iterdir()) == []


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
        assert re.search(r"pulumi up --stack lab \(Pulumi.lab.yaml\): Pulumi v3\.\d+\.\d+ .*providers command: ", out), out
        # Pulumi's own summary: per host its key seed, host key scan, install and verify, and its component; the
        # mesh's component, preshared-key secret and three barriers; the stack.
        assert re.search(r"^  Resources:\n  \s+\+ 21 created", out, re.MULTILINE), out
        for name in ("h1", "h2", "h3"):
            assert re.search(rf"^  {name}: ok in [\d.]+s: ", out, re.MULTILINE), out
        assert "3 packets transmitted, 3 received, 0% packet loss" in out
        assert "lab down: removed" in out
        assert lab.state() is None and not (state / "engine").exists()
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
