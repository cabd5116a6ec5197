"""``python -m wgmesh.mesh check`` and ``render``: messages, exit codes, file modes, and byte-stable re-renders."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, REPO
from wgmesh.mesh.cli import main
from wgmesh.mesh.keys import public_key
from wgmesh.mesh.statefile import format_keyfile, read_keyfile, write_secret_file
from wgmesh.mesh.wgconf import parse_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_example(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(example)]) == 0
    out = capsys.readouterr().out
    assert "valid mesh of 3 peers, tunnel network 10.255.0.0/24" in out
    assert "pub   10.255.0.3/24  198.51.100.30:51820" in out
    assert not (example.parent / "mesh.keys.yaml").exists(), "check never writes"


def test_the_example_reproduces_the_seed_mesh() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    peers = {peer["name"]: peer for peer in raw["peers"]}
    assert raw["network"] == "10.255.0.0/24" and list(peers) == ["zhy", "bjs", "pub"]
    assert [peers[name]["address"] for name in peers] == ["10.255.0.1", "10.255.0.2", "10.255.0.3"]
    assert peers["pub"]["subnets"] == ["192.168.30.0/24", "10.7.1.0/24"] and peers["zhy"]["subnets"] == ["192.168.10.0/24"]
    assert [peers[name]["egress_interface"] for name in peers] == ["ens5", "ens5", "eth0"]
    assert all(peer["endpoint"].startswith(("203.0.113.", "198.51.100.")) for peer in peers.values())


def test_check_prints_every_problem_with_file_line_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "network: 10.255.0.0/24\n"
        "peers:\n"
        "  - name: zhy\n"
        "    endpoint: 203.0.113.10:51820\n"
        "    subnets: [192.168.10.0/24]\n"
        "  - name: bjs\n"
        "    subnets: [192.168.10.0/25]\n"
        "  - name: zhy\n"
        "    endpoint: 203.0.113.30\n"
    )
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err and captured.out == ""
    assert "the mesh description has 3 problem(s)" in err
    assert f"{path}:7: mesh.peers[1].subnets[0]: 192.168.10.0/25 overlaps 192.168.10.0/24" in err
    assert f"{path}:8: mesh.peers[2].name: duplicate peer name 'zhy'" in err
    assert f"{path}:9: mesh.peers[2].endpoint:" in err


def test_duplicate_yaml_keys_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(EXAMPLE.read_text().replace("interface: wg0\n", "interface: wg0\ninterface: wg1\n"))
    assert main(["check", str(path)]) == 1
    assert "mesh.interface: given twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("peers: [\n  - a\n", "bad.yaml:2:3: not valid YAML"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_files_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object, message: str) -> None:
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_description_may_live_under_a_mesh_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrapped = write(tmp_path / "wrapped.yaml", {"mesh": yaml.safe_load(EXAMPLE.read_text())})
    assert main(["check", "-q", str(wrapped)]) == 0
    assert capsys.readouterr().out == ""


def test_render_writes_0600_files_and_a_0600_key_file(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(example), "--out", str(out)]) == 0
    keys = tmp_path / "mesh.keys.yaml"
    assert sorted(path.name for path in out.iterdir()) == ["bjs.conf", "pub.conf", "zhy.conf"]
    assert all(mode(path) == 0o600 for path in out.iterdir()) and mode(keys) == 0o600 and mode(out) == 0o700
    stored = read_keyfile(keys)
    zhy = parse_config((out / "zhy.conf").read_text())
    assert zhy.get("PrivateKey") == stored.private_keys["zhy"]
    assert zhy.peer("pub").get("PublicKey") == public_key(stored.private_keys["pub"])
    assert stored.addresses == {"zhy": ("10.255.0.1/24",), "bjs": ("10.255.0.2/24",), "pub": ("10.255.0.3/24",)}
    assert "wrote" in capsys.readouterr().out


def test_rerender_is_byte_stable_and_touches_nothing(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    main(["render", str(example), "--out", str(out)])
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in [*out.iterdir(), tmp_path / "mesh.keys.yaml"]}
    capsys.readouterr()
    assert main(["render", str(example), "--out", str(out)]) == 0
    after = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in [*out.iterdir(), tmp_path / "mesh.keys.yaml"]}
    assert after == before
    assert "wrote" not in capsys.readouterr().out


def test_allocated_addresses_are_pinned_across_add_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["alpha", "bravo", "charlie", "delta", "echo"]
    peers = [{"name": name, "endpoint": f"203.0.113.{index + 1}:51820"} for index, name in enumerate(names)]
    description = write(tmp_path / "m.yaml", {"network": "10.9.0.0/29", "peers": peers})  # 6 hosts: collisions likely
    out = tmp_path / "out"
    assert main(["render", str(description), "--out", str(out)]) == 0
    first = read_keyfile(tmp_path / "m.keys.yaml").addresses
    write(description, {"network": "10.9.0.0/29", "peers": [peers[0], peers[2], peers[3], peers[4]]})  # remove bravo
    assert main(["render", str(description), "--out", str(out)]) == 0
    write(description, {"network": "10.9.0.0/29", "peers": [*peers[:1], *peers[2:], {"name": "foxtrot", "endpoint": "203.0.113.9:1"}]})
    assert main(["render", str(description), "--out", str(out)]) == 0
    last = read_keyfile(tmp_path / "m.keys.yaml")
    assert all(last.addresses[name] == first[name] for name in ["alpha", "charlie", "delta", "echo"])
    assert "bravo" not in last.private_keys and "foxtrot" in last.private_keys
    assert "dropped the keys of bravo" in capsys.readouterr().out


def test_keys_given_in_the_description_are_used_and_not_copied(example: Path, tmp_path: Path) -> None:
    from tests.conftest import seeded_private_key

    raw = yaml.safe_load(example.read_text())
    raw["peers"][0]["private_key"] = seeded_private_key("zhy")
    raw["peers"][2]["public_key"] = public_key(seeded_private_key("pub"))  # keyed by its owner
    write(example, raw)
    out = tmp_path / "out"
    assert main(["render", str(example), "--out", str(out), "--keys", str(tmp_path / "k.keys.yaml")]) == 0
    assert parse_config((out / "zhy.conf").read_text()).get("PrivateKey") == seeded_private_key("zhy")
    assert not (out / "pub.conf").exists(), "pub's owner writes its own config"
    assert parse_config((out / "bjs.conf").read_text()).peer("pub").get("PublicKey") == public_key(seeded_private_key("pub"))
    stored = read_keyfile(tmp_path / "k.keys.yaml")
    assert set(stored.private_keys) == {"bjs"}


def test_render_refuses_an_invalid_mesh_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.yaml", {"network": "10.255.0.0/24", "peers": [{"name": "a"}, {"name": "b"}]})
    assert main(["render", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad.keys.yaml").exists()
    assert "mesh.peers[1].endpoint" in capsys.readouterr().err


def test_render_single_peer_and_unknown_peer(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(example), "--out", str(out), "--peer", "bjs"]) == 0
    assert [path.name for path in out.iterdir()] == ["bjs.conf"]
    assert main(["render", str(example), "--out", str(out), "--peer", "nope"]) == 1
    assert "--peer nope: no such peer" in capsys.readouterr().err


def test_corrupt_key_file_is_a_user_error(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "mesh.keys.yaml"
    keys.write_text("version: 1\npeers:\n  zhy:\n    private_key: nope\n")
    assert main(["render", str(example), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "peers.zhy.private_key" in err and "Traceback" not in err


def test_secret_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "secret"
        assert write_secret_file(path, "a\n") is True and mode(path) == 0o600
        path.chmod(0o644)
        assert write_secret_file(path, "a\n") is False and mode(path) == 0o600, "an unchanged file is still narrowed"
        assert write_secret_file(path, "b\n") is True and path.read_text() == "b\n" and mode(path) == 0o600
        assert [entry.name for entry in tmp_path.iterdir()] == ["secret"], "no temporary file left behind"
    finally:
        os.umask(old)


def test_secret_file_is_never_visible_with_a_wider_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the writer creates is 0600 at creation: os.open must be called with mode 0600 and O_EXCL."""
    calls: list[tuple[int, int]] = []
    real_open = os.open

    def spy(path: object, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            calls.append((flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    write_secret_file(tmp_path / "secret", "x")
    assert calls and all(mode == 0o600 and flags & os.O_EXCL for flags, mode in calls)


def test_keyfile_format_is_stable_and_sorted() -> None:
    from wgmesh.mesh.statefile import KeyFile

    keyfile = KeyFile(b"\x01" * 32, {"b": "B" * 43 + "=", "a": "A" * 43 + "="}, {"a": ("10.0.0.1/24",)})
    text = format_keyfile(keyfile, "m.yaml")
    assert text == format_keyfile(keyfile, "m.yaml") and text.index("  a:") < text.index("  b:")


@pytest.mark.parametrize("command", [[], ["check"], ["render"]])
def test_help_everywhere(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "wgmesh.mesh", *command, "--help"], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 0 and "usage: python -m wgmesh.mesh" in result.stdout and "Exit codes" in result.stdout


def test_exit_codes_from_a_real_process(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wgmesh.mesh", *args], capture_output=True, text=True, cwd=REPO, timeout=30)

    assert run("check", str(EXAMPLE)).returncode == 0
    missing = run("check", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "no such file" in missing.stderr
    assert run("render", str(EXAMPLE)).returncode == 2, "--out is required"
    assert run("frobnicate").returncode == 2
