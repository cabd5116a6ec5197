"""User mistakes get a plain ``error:`` line and the documented exit code, never a traceback; every command has --help.

The exit codes (docs/cli.md, "Exit codes"): 0 success, 1 invalid input / unusable file / missing tool, 2 bad command line,
130 interrupted. Most cases run in-process through :func:`wgmesh.mesh.cli.main`; the ones that depend on the interpreter
(tracebacks, closed pipes, Ctrl-C) run ``python -m wgmesh.mesh`` as a real process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLE, REPO
from wgmesh.mesh.cli import COMMAND_MODULES, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE, build_parser, main

# The commands whose first argument is a mesh description file (others, such as the lab's, take none).
FILE_COMMANDS = ("check", "render", "graph")


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wgmesh.mesh", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def test_every_registered_module_is_a_command() -> None:
    """The --help test below walks COMMAND_MODULES, so it covers a new command as soon as it is registered."""
    parser = build_parser()
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(action.choices) == set(COMMAND_MODULES) and {"check", "render", "graph"} <= set(COMMAND_MODULES)


@pytest.mark.parametrize("command", ["", *COMMAND_MODULES])
def test_help_exits_zero_and_documents_exit_codes(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = run_cli(*args)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith("usage: python -m wgmesh.mesh")
    assert "Exit codes" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_missing_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    extra = ["--out", str(tmp_path / "out")] if command == "render" else []
    assert main([command, str(missing), *extra]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert captured.err == f"error: {missing}: no such file (give the path of a mesh description such as examples/mesh.yaml)\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("network: [10.0.0.0/24\n", "not valid YAML"),
        ("peers:\n  - name: a\n   bad: indent\n", "not valid YAML"),
        ("", "the file is empty"),
        ("- just\n- a list\n", "expected a mapping, got list"),
        ("network: 10.0.0.0/24\npeers: 3\n", "expected a list of at least two peers"),
        (b"\xff\xfe not utf-8", "not UTF-8 text"),
    ],
)
@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_bad_files(command: str, content: str | bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    extra = ["--out", str(tmp_path / "out")] if command == "render" else []
    assert main([command, str(path), *extra]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {path}") and expected in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out").exists(), "nothing is written for a bad input"


def test_a_directory_is_not_a_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == EXIT_INVALID
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["check"],
        ["render", str(EXAMPLE)],  # --out is required
        ["graph"],
        ["graph", str(EXAMPLE), "--format", "jpeg"],
        ["graph", str(EXAMPLE), "--stack", "zhy"],  # FILE and --stack exclude each other
        ["check", str(EXAMPLE), "--no-such-flag"],
    ],
)
def test_bad_command_lines_exit_2_with_usage(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith("usage: python -m wgmesh.mesh") and "error:" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unwritable_output_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["render", str(EXAMPLE), "--out", str(blocker), "--keys", str(tmp_path / "k.keys.yaml")]) == EXIT_INVALID
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["graph", str(EXAMPLE), "-o", str(blocker / "x.dot")]) == EXIT_INVALID
    assert "cannot write the picture" in capsys.readouterr().err


def test_os_errors_from_commands_are_printed_not_raised(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of defence: an OSError a command did not translate is still a one-line error, exit 1."""
    import wgmesh.mesh.commands.check as check

    def refuse(_args: Any) -> int:
        raise PermissionError(13, "Permission denied", "/etc/wireguard/wg0.conf")

    monkeypatch.setattr(check, "run", refuse)
    assert main(["check", str(EXAMPLE)]) == EXIT_INVALID
    assert capsys.readouterr().err == "error: /etc/wireguard/wg0.conf: Permission denied\n"


def test_real_process_invalid_mesh_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"network": "10.255.0.0/24", "peers": [{"name": "a"}, {"name": "b"}]}))
    for command in (["check", str(path)], ["render", str(path), "--out", str(tmp_path / "o")], ["graph", str(path)]):
        result = run_cli(*command)
        assert result.returncode == EXIT_INVALID and "Traceback" not in result.stderr
        assert f"{path}:" in result.stderr and "mesh.peers[1].endpoint" in result.stderr


def test_closed_pipe_is_quiet() -> None:
    """`python -m wgmesh.mesh graph ... | head -c 1`: no BrokenPipeError traceback, success."""
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    for _ in range(3):  # the reader may close before or after the write: both must be quiet
        producer = subprocess.Popen(
            [sys.executable, "-m", "wgmesh.mesh", "graph", str(EXAMPLE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        assert producer.stdout is not None and producer.stderr is not None
        producer.stdout.close()  # the reader goes away before anything is written
        _, err = producer.communicate(timeout=60)
        assert producer.returncode == EXIT_OK and b"Traceback" not in err and err == b""


def test_ctrl_c_exits_130_without_traceback(tmp_path: Path) -> None:
    """Interrupting a command prints 'interrupted' and exits 130 (checked by interrupting a command that waits)."""
    script = (
        "import sys, time\n"
        "import wgmesh.mesh.commands.check as check\n"
        "from wgmesh.mesh.cli import main\n"
        "def slow(args):\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(30)\n"
        "    return 0\n"
        "check.run = slow\n"
        f"sys.exit(main(['check', {str(EXAMPLE)!r}]))\n"
    )
    # As from a terminal: a runner started in the background (CI's, `cmd &`) may hand its children SIGINT ignored, and
    # Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == EXIT_INTERRUPTED and err == "interrupted\n"


def test_graph_without_graphviz_in_a_real_process(tmp_path: Path) -> None:
    """With no `dot` on PATH, asking for SVG says how to get it; DOT still works."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": str(bin_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "wgmesh.mesh", "graph", str(EXAMPLE), "-f", "svg"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_INVALID and "apt-get install graphviz" in result.stderr and "Traceback" not in result.stderr
    assert shutil.which("dot", path=str(bin_dir)) is None


# Random junk in the shape of a description: whatever it is, each command answers 0 or 1 and never raises.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.sampled_from(["", "10.255.0.0/24", "10.255.0.1", "203.0.113.1:51820", "x", "[::1]:5", "fd00::/64", "0x10", "wg0", "#"]),
    st.text(max_size=8),
)
FIELDS = st.sampled_from(["name", "address", "endpoint", "subnets", "listen_port", "keepalive", "mtu", "nat", "dns", "post_up", "kind"])
PEER = st.dictionaries(FIELDS, st.one_of(SCALARS, st.lists(SCALARS, max_size=3)), max_size=6)
DESCRIPTION = st.dictionaries(
    st.sampled_from(["network", "interface", "keepalive", "listen_port", "peers", "nat", "mtu", "bogus"]),
    st.one_of(SCALARS, st.lists(PEER, max_size=4), st.lists(SCALARS, max_size=3)),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(DESCRIPTION, st.lists(SCALARS, max_size=3), SCALARS))
def test_junk_descriptions_never_raise(raw: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump(raw))
    for command in (["check", str(path)], ["graph", str(path), "-f", "mermaid"]):
        assert main(command) in (EXIT_OK, EXIT_INVALID)
    capsys.readouterr()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(DESCRIPTION, SCALARS))
def test_junk_stack_configs_never_raise(raw: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wgmesh.mesh.stackconfig")
    path = tmp_path / "Pulumi.junk.yaml"
    path.write_text(yaml.safe_dump({"config": {"wgmesh:mesh": raw}}))
    assert main(["graph", str(path)]) in (EXIT_OK, EXIT_INVALID)
    capsys.readouterr()
