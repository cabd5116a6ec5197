"""Every command in README.md and docs/*.md works as written, or is named here with the reason it is not run.

The commands are the lines of the ``sh`` code blocks (a trailing ``  # comment`` is not part of the command).
The offline ones run in a scratch copy of the checkout, in the order the file gives them, with ``.venv/bin/``
meaning this interpreter's virtualenv. The lab ones (``sudo .venv/bin/wgmesh lab|demo ...``) run the same way as
root, on a lab of their own that is taken down afterwards. Anything else must be in :data:`NOT_RUN`, with why; a
new command in the docs that is neither fails :func:`test_every_documented_command_is_run_or_excused`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_lab

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}
VENV_BIN = Path(sys.executable).parent

ENGINE = (
    "`pulumi` from the command line runs the program through Pulumi's Python language host, which the module proxy does not "
    "serve here; the same program runs through the engine with the Automation API in tests/test_engine.py and test_e2e.py"
)
CLOUD = ENGINE + ", and an AWS account"
NOT_RUN: dict[str, str] = {
    "./dev demo": "./dev's setup is what a fresh machine runs first; the demo itself is tests/test_demo.py",
    "./dev test": "this test suite is what it runs",
    ".ci/run": "CI's job: ./dev test, i.e. this suite",
    "./dev bench": "the benchmarks: minutes of CPU, figures rather than assertions",
    ".venv/bin/python bench/render.py": "a benchmark (minutes; needs wg-meshconf from the bench extra)",
    ".venv/bin/python bench/program.py": "a benchmark (minutes)",
    "sudo .venv/bin/python bench/lab.py": "a benchmark on the lab (minutes, builds labs of up to 31 hosts)",
    "sudo .venv/bin/python bench/throughput.py": "a benchmark on the lab (minutes, two labs of five hosts)",
    "wg-quick down wg0": "run by hand on a host of your fleet; tests/test_harsh.py proves the uninstall that does it",
    "systemctl disable --now wg-quick@wg0": "run by hand on a systemd host of your fleet (the lab's hosts have no systemd)",
    "rm -f /etc/wireguard/wg0.conf": "run by hand on a host of your fleet",
    "iptables -t filter -D INPUT -m comment --comment wgmesh -j wgmesh-wg0-in": "run by hand on a host; PostDown does it",
    "iptables -t filter -F wgmesh-wg0-in && iptables -t filter -X wgmesh-wg0-in": "run by hand on a host; PostDown does it",
    "pulumi stack init zhy": CLOUD,
    "pulumi package add https://github.com/OWNER/wgmesh@v0.1.0/provider": "a published tag of this repository and a"
    " language host that the Go module proxy does not serve (tests/test_yaml_example.py runs the package from YAML)",
    "pulumi config set --secret wgmesh:sshPrivateKey < ~/.ssh/id_ed25519": ENGINE + ", and a key that logs in to the peers",
    "pulumi config set --path 'wgmesh:mesh.admin_cidrs[0]' \"$(curl -s https://checkip.amazonaws.com)/32\"": ENGINE
    + ", and the internet (tests may reach only loopback and their own namespaces)",
    "AWS_PROFILE=china pulumi preview --stack zhy && pulumi up --stack zhy": CLOUD,
    "pulumi stack output peers": CLOUD,
    "pulumi stack output configs --show-secrets": CLOUD,
    "pulumi config set wgmesh:exportConfigs true && pulumi up --stack zhy": CLOUD,
    "pulumi preview --stack zhy --policy-pack policy": CLOUD,
    "pulumi up --stack zhy --policy-pack policy": CLOUD,
    "pulumi preview --stack zhy --policy-pack policy --policy-pack-config policy-config.json": CLOUD,
    "pulumi up --replace 'urn:pulumi:<stack>::wgmesh::wgmesh:index:Mesh$wgmesh:index:WireGuardPeer$command:local:Command::wgmesh-<peer>-host-key'": CLOUD,  # noqa: E501 (a URN as documented)
    "pulumi up --replace 'urn:pulumi:<stack>::wgmesh::wgmesh:index:Mesh$wgmesh:index:WireGuardPeer$aws:ec2/instance:Instance::wgmesh-<peer>-instance'": CLOUD,  # noqa: E501
    "pulumi preview --stack <stack> --diff": CLOUD,
    "pulumi up --stack <stack>": CLOUD,
    "pulumi config set --path 'wgmesh:mesh.peers[0].availability_zone' cn-northwest-1b": ENGINE,
}


def documented_commands(path: Path) -> list[tuple[int, str]]:
    """(line, command) for every command line of ``path``'s shell code blocks."""
    commands: list[tuple[int, str]] = []
    language: str | None = None
    pending = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            language = fence.group(1) if language is None else None
            continue
        if language not in SHELL_BLOCKS:
            continue
        text = re.sub(r"\s+#\s.*$", "", line).strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        commands.append((number, pending + text))
        pending = ""
    return commands


def is_offline(command: str) -> bool:
    return bool(re.match(r"^\.venv/bin/(wgmesh (check|render|graph)|python -m wgmesh.mesh (check|render|graph))\b", command))


def is_lab(command: str) -> bool:
    return bool(re.match(r"^sudo \.venv/bin/wgmesh (lab|demo)\b", command))


def as_run_here(command: str) -> str:
    """The command with ``.venv/bin/`` as this interpreter's virtualenv; ``sudo`` dropped when already root."""
    if command.startswith("sudo ") and os.geteuid() == 0:
        command = command.removeprefix("sudo ")
    return command.replace(".venv/bin/", f"{VENV_BIN}/")


def scratch_checkout(tmp_path: Path) -> Path:
    """The files the documented commands read or write, copied: they must not touch the real checkout."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("examples", "docs"):
        # Not the TypeScript example's installed packages (over 100 MB; ./dev setup puts them there).
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("node_modules"))
    for name in ("Pulumi.yaml", "Pulumi.zhy.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "examples" / "mesh.keys.yaml").unlink(missing_ok=True)
    return root


def run(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", as_run_here(command)], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_docs_have_commands() -> None:
    """The extraction sees the README's Quickstart and the CLI reference's examples."""
    readme = [command for _, command in documented_commands(REPO / "README.md")]
    assert readme[:2] == ["./dev demo", "./dev test"]
    assert ".venv/bin/wgmesh check examples/mesh.yaml" in readme
    assert any(is_offline(command) for _, command in documented_commands(REPO / "docs" / "cli.md"))


def test_every_documented_command_is_run_or_excused() -> None:
    unclassified = [
        f"{path.relative_to(REPO)}:{line}: {command}"
        for path in DOCS
        for line, command in documented_commands(path)
        if not (is_offline(command) or is_lab(command) or command in NOT_RUN)
    ]
    assert unclassified == [], "run these in tests/test_docs.py, or name them in NOT_RUN with the reason"
    documented = {command for path in DOCS for _, command in documented_commands(path)}
    assert sorted(set(NOT_RUN) - documented) == [], "NOT_RUN names commands the docs no longer have"


@pytest.mark.parametrize("doc", [path for path in DOCS if any(is_offline(c) for _, c in documented_commands(path))], ids=lambda p: p.name)
def test_offline_commands_work_as_written(doc: Path, tmp_path: Path) -> None:
    checkout = scratch_checkout(tmp_path)
    failures = []
    for line, command in documented_commands(doc):
        if not is_offline(command):
            continue
        if re.search(r"\.(svg|png)\b", command) and shutil.which("dot") is None:
            continue  # Graphviz's dot draws these; without it the command says how to install it (test_graph_formats)
        result = run(command, checkout, timeout=120)
        if result.returncode != 0 or "Traceback" in result.stderr:
            failures.append(f"{doc.name}:{line}: {command}: exit {result.returncode}: {result.stderr.strip()[-400:]}")
    assert failures == []


@pytest.mark.lab
@pytest.mark.parametrize("doc", [path for path in DOCS if any(is_lab(c) for _, c in documented_commands(path))], ids=lambda p: p.name)
def test_lab_commands_work_as_written(doc: Path, tmp_path: Path) -> None:
    """As root, on a lab of their own (state in the scratch checkout's ./lab-state), taken down whatever happens."""
    require_lab()
    checkout = scratch_checkout(tmp_path)
    failures = []
    try:
        for line, command in documented_commands(doc):
            if is_lab(command):
                result = run(command, checkout, timeout=600)
                if result.returncode != 0 or "Traceback" in result.stderr:
                    failures.append(f"{doc.name}:{line}: {command}: exit {result.returncode}: {(result.stdout + result.stderr)[-600:]}")
    finally:
        run("sudo .venv/bin/wgmesh lab down", checkout, timeout=120)
    assert failures == []
    assert not (checkout / "lab-state").exists(), "the documented sequence leaves no lab behind"


COMMAND_WORDS = re.compile(r"^ {4}(sudo|pulumi|\.venv/|\./dev|wgmesh|python3?|flock|git|pip|apt-get|aws)\b")


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_no_command_hides_in_an_indented_block(path: Path) -> None:
    """Commands live in fenced ``sh`` blocks, where the test above finds them; an indented code block would hide
    one from it."""
    fenced, previous, hidden = False, "", []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and not previous.strip() and COMMAND_WORDS.match(line):
            hidden.append(f"{path.name}:{number}: {line.strip()}")
        previous = line
    assert not hidden, "put these in a fenced ```sh block:\n" + "\n".join(hidden)
