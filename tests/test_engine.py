"""What only a real Pulumi engine shows: its state, its previews, its interruptions and its ordering.

Every test here runs the Pulumi CLI (``./dev engine``) through the Automation API, with the official provider
plugins where installed and this repository's test providers otherwise (:mod:`wgmesh.lab.engine` says which; the module
prints it). The lab's hosts are the servers:

* the state (``stack export`` and every file the backend keeps: checkpoint, backups, history) holds no private or
  preshared key, no key seed and nothing that, read as a key, gives a peer's public key; and the audit would have
  caught the old ``RandomBytes`` seeds, whose resource ID is their value;
* ``preview`` of a change lists exactly the hosts whose install will run again, and no secret;
* ``up --expect-no-changes`` passes after each step;
* rotating a peer's key is hitless: with pings every 20 ms between every pair of hosts and of LANs, no path is cut
  for a second or more, in repeated rotations;
* an ``up`` whose engine is killed in the middle of the installs is followed by an ``up`` that converges;
* ``destroy`` removes everything, in dependency order.

Traffic stays inside the lab's namespaces; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import deployed, engine_stack, running_lab
from tests.state_audit import file_findings, findings, secret_plaintexts, secrets_in_text
from wgmesh.lab import Lab
from wgmesh.lab.deploy import LabStack, all_pairs, lan_pairs, pinging_all, tunnel_pairs, wg_show
from wgmesh.lab.engine import Workspace

pytestmark = pytest.mark.lab

NAMES = ("h1", "h2", "h3")
ROTATIONS = 3
PING_INTERVAL = 0.02
MAX_GAP_SECONDS = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("engine") / "state", len(NAMES)) as shared:
        yield shared


@pytest.fixture(scope="module")
def stack(lab: Lab) -> LabStack:
    return engine_stack(lab)


def public_keys(result_exports: dict[str, Any]) -> list[str]:
    return [peer["public_key"] for peer in result_exports["peers"].values()]


def test_state_holds_no_key_material_in_clear(stack: LabStack) -> None:
    result = deployed(stack, stack.config(NAMES))
    keys = public_keys(result.exports)
    assert len(keys) == len(NAMES)
    shown = stack.workspace.export(show_secrets=True)
    assert len(secret_plaintexts(shown)) >= 2 * len(NAMES), "the audit found no secrets to look for"
    assert findings(stack.workspace.export(), shown, keys) == []
    files = stack.workspace.state_files()
    assert any(path.name.endswith(".json") for path in files), files
    assert file_findings(files, shown, keys) == []
    # Pulumi's own summary and the engine's output: no secret either.
    assert secrets_in_text(result.stdout, shown, keys) == []


def test_the_audit_catches_a_key_seeded_from_random_bytes(tmp_path: Path) -> None:
    """The old seeds: pulumi-random makes a RandomBytes' base64 its resource ID, which Pulumi never encrypts. A program
    seeding a key from one is caught by the audit above (the test providers set the official ID)."""
    import pulumi
    import pulumi_random as random

    from wgmesh.mesh.keys import private_key_from_seed, public_key

    def program() -> None:
        seed = random.RandomBytes("seed", length=32, opts=pulumi.ResourceOptions(additional_secret_outputs=["base64", "hex"]))
        pulumi.export("public_key", seed.base64.apply(lambda text: public_key(private_key_from_seed(__import__("base64").b64decode(text)))))

    workspace = Workspace(tmp_path / "ws", stack="audit", program=program)
    try:
        up = workspace.up()
        assert up.ok, up.error
        found = findings(workspace.export(), workspace.export(show_secrets=True), [up.outputs["public_key"]])
        assert any(".id:" in line and "public key" in line for line in found), found
    finally:
        workspace.destroy()


# A change, and the installs a preview must announce: (to run again, to delete).
PREVIEWED = {
    "one peer's MTU": ({"h2": {"mtu": 1380}}, NAMES, (["h2-install"], [])),
    "one peer's key": ({"h2": {"key_version": 9}}, NAMES, (["h1-install", "h2-install", "h3-install"], [])),
    "a peer removed": ({}, ("h1", "h2"), (["h1-install", "h2-install"], ["h3-install"])),
}


@pytest.mark.parametrize("change", sorted(PREVIEWED))
def test_preview_lists_the_hosts_to_reinstall_and_no_secret(stack: LabStack, change: str) -> None:
    settings, names, (again, deleted) = PREVIEWED[change]
    deployed(stack, stack.config(NAMES))
    assert stack.up(stack.config(NAMES), expect_no_changes=True).ok, "a second up with nothing changed changed something"
    shown = stack.workspace.export(show_secrets=True)
    plan = stack.preview(stack.config(names, peer_settings=settings), diff=True)
    assert plan.ok, plan.error
    installs = {op: sorted(name for name in found if name.endswith("-install")) for op, found in plan.actions.items()}
    assert installs.get("update", []) == again, plan.actions
    assert installs.get("delete", []) == deleted, plan.actions
    assert installs.get("same", []) == sorted(f"{name}-install" for name in names if f"{name}-install" not in again), plan.actions
    assert secrets_in_text(plan.stdout, shown, public_keys(stack.workspace.outputs())) == [], "a secret in the preview"
    assert "sha256=" in plan.stdout, "the preview's diff does not show which config changed"


def test_rotating_a_key_never_cuts_a_path_for_a_second(lab: Lab, stack: LabStack) -> None:
    deployed(stack, stack.config(NAMES))
    pairs = [*tunnel_pairs(lab, NAMES), *lan_pairs(lab, NAMES)]
    gaps: list[float] = []
    for version in range(2, 2 + ROTATIONS):
        old = wg_show(lab, "h2")
        with pinging_all(lab, pairs, interval=PING_INTERVAL) as running:
            rotated = deployed(stack, stack.config(NAMES, peer_settings={"h2": {"key_version": version}}))
        new = wg_show(lab, "h2")
        assert old is not None and new is not None and new.public_key != old.public_key
        worst = max(running, key=lambda pinger: pinger.stats.longest_gap if pinger.stats else 0.0)
        assert worst.stats is not None
        gaps.append(worst.stats.longest_gap)
        print(f"rotation to key_version {version}: {rotated.seconds:.1f} s, longest gap {worst.stats.longest_gap:.2f} s ({worst.argv[-1]})")
        assert stack.up(stack.config(NAMES, peer_settings={"h2": {"key_version": version}}), expect_no_changes=True).ok
    print(f"longest gap over {ROTATIONS} rotations and {len(pairs)} paths: {max(gaps):.2f} s")
    assert max(gaps) < MAX_GAP_SECONDS, gaps


def old_program() -> None:
    """The program as released before keys left the state: every seed a ``RandomBytes`` (its ID is its value)."""
    import base64
    from unittest import mock

    import pulumi
    import pulumi_random as random

    from wgmesh.components import keys
    from wgmesh.components.program import program

    def random_bytes_seed(name: str, *, key_version: int, parent: pulumi.Resource) -> pulumi.Output[str]:
        seed = random.RandomBytes(
            name,
            length=32,
            keepers={"key_version": str(key_version)},
            opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["base64", "hex"]),
        )
        return pulumi.Output.secret(seed.base64)

    def decode(seed: str) -> bytes:
        return base64.b64decode(seed, validate=True)

    with (
        mock.patch("wgmesh.components.peer.random_seed", random_bytes_seed),
        mock.patch("wgmesh.components.mesh_component.random_seed", random_bytes_seed),
        mock.patch("wgmesh.components.mesh_component.seed_bytes", decode),
        mock.patch.object(keys, "seed_bytes", decode),
    ):
        program()


def test_a_stack_deployed_with_random_bytes_moves_over_in_one_hitless_up(lab: Lab, stack: LabStack) -> None:
    """Migration: the old program's state leaks every key (the audit says so on a real engine's export); one `up`
    with this release rotates every key and preshared key at once, cuts no path for a second, and leaves a current
    state with nothing to find."""
    stack.destroy()
    old = LabStack(lab, program=old_program)
    first = deployed(old, old.config(NAMES))
    leaks = findings(old.workspace.export(), old.workspace.export(show_secrets=True), public_keys(first.exports))
    leaking_ids = {line.split(":", 1)[0] for line in leaks if ".id:" in line}
    assert len(leaking_ids) == len(NAMES) + 1, leaks  # a seed per peer and the mesh secret, each by its resource ID
    before = {name: wg_show(lab, name) for name in NAMES}
    pairs = [*tunnel_pairs(lab, NAMES), *lan_pairs(lab, NAMES)]
    with pinging_all(lab, pairs, interval=PING_INTERVAL) as running:
        moved = deployed(stack, stack.config(NAMES))
    assert {name: wg_show(lab, name).public_key for name in NAMES} != {name: before[name].public_key for name in NAMES}  # type: ignore[union-attr]
    assert sorted(name for name in moved.actions.get("delete", []) if name.endswith("-key") or name.endswith("-secret")) != []
    gap = max(pinger.stats.longest_gap for pinger in running if pinger.stats)
    print(f"moving off RandomBytes: {moved.seconds:.1f} s, every key rotated, longest gap {gap:.2f} s over {len(pairs)} paths")
    assert gap < MAX_GAP_SECONDS
    assert findings(stack.workspace.export(), stack.workspace.export(show_secrets=True), public_keys(moved.exports)) == []


def _children_of(parent: int) -> list[tuple[int, str, bytes]]:
    """(pid, command name, command line) of every process whose parent is ``parent`` (1: orphans re-parented to init)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent:
                    found.append((int(entry.name), (entry / "comm").read_text().strip(), (entry / "cmdline").read_bytes()))
    return found


def _pulumi_children() -> list[int]:
    """PIDs of the Pulumi CLI processes this test process started."""
    return [pid for pid, name, _ in _children_of(os.getpid()) if name == "pulumi"]


def _orphaned_plugins() -> list[int]:
    """PIDs of provider plugin processes whose engine is gone (re-parented to init)."""
    return [pid for pid, _, line in _children_of(1) if b"pulumi-resource-" in line or b"testproviders." in line]


def test_an_up_killed_during_the_installs_is_followed_by_one_that_converges(lab: Lab, stack: LabStack) -> None:
    deployed(stack, stack.config(NAMES))
    changed = stack.config(NAMES, peer_settings={name: {"mtu": 1400} for name in NAMES})
    killed: list[int] = []
    killing = threading.Event()

    def kill_soon() -> None:
        time.sleep(0.5)  # the installs have begun: their SSH sessions are open, their configs on the way
        for pid in _pulumi_children():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    def on_event(event: Any) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.urn.endswith("-install") and not killing.is_set():
            killing.set()
            threading.Thread(target=kill_soon, daemon=True).start()

    interrupted = stack.up(changed, on_event=on_event)
    assert killed and not interrupted.ok, "the engine was not killed in the middle of the installs"
    print(f"killed the engine (pid {killed[0]}) during the installs: {(interrupted.error or '')[-300:]}")
    # What a user does after a killed `pulumi up`: the stack is still locked by the dead process.
    assert not stack.up(changed).ok, "a killed up left no lock (or the test did not kill it in time)"
    stack.workspace.cancel()  # `pulumi cancel`
    converged = deployed(stack, changed)
    assert stack.up(changed, expect_no_changes=True).ok
    assert all(check["ok"] for check in converged.verification.values())
    tunnels = all_pairs(lab, tunnel_pairs(lab, NAMES), timeout=20)
    assert all(tunnels.values()), tunnels
    # The killed engine's provider plugins finish what they were running and go: nothing is left behind.
    deadline = time.monotonic() + 60
    while _orphaned_plugins() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _orphaned_plugins() == [], "provider plugins of the killed engine are still running"


def test_destroy_removes_everything(lab: Lab, stack: LabStack) -> None:
    deployed(stack, stack.config(NAMES))
    gone = stack.destroy()
    assert gone.ok, gone.error
    assert sorted(name for name in gone.actions.get("delete", []) if name.endswith("-install")) == [f"{name}-install" for name in NAMES]
    for name in NAMES:
        assert wg_show(lab, name) is None, f"{name} still has wg0"
        assert not (lab.host_dir(lab.host(name)) / "etc-wireguard" / "wg0.conf").exists()
    resources = stack.workspace.export().get("resources", [])
    assert [resource["type"] for resource in resources if not resource["type"].startswith("pulumi:")] == []
