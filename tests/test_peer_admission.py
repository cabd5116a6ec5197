"""An AWS ``WireGuardPeer`` outside a mesh: it works on its own when told what to admit, and fails with a clear error,
never a silent hang, when nobody admits it.

Each program runs under Pulumi's mocks in a child process with a time limit: a regression (the program waiting
forever for the peer's security-group entries, as Pulumi does for an input that never resolves) fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

from tests.program_harness import REPO

# Far above what any of these programs needs (a few seconds), far below a CI job's limit.
CHILD_TIMEOUT = 90

PROLOGUE = """
import json, sys, time
import pulumi, pulumi_aws as aws
from wgmesh.components import AwsHostArgs, MeshArgs, MeshComponent, WireGuardPeer, WireGuardPeerArgs
from wgmesh.components import peer as peer_module
from tests.mock_program import RecordingMocks
from wgmesh.mesh.validation import load_mesh

mocks = RecordingMocks()


def aws_peer(name, provider, index, **extra):
    host = AwsHostArgs(provider=provider, vpc_cidr=f"192.168.{10 + index}.0/24", admin_cidrs=["203.0.113.7/32"], key_name="ops")
    return WireGuardPeer(name, WireGuardPeerArgs(host=host, **extra))


def finish(program):
    pulumi.runtime.set_mocks(mocks, project="wgmesh", stack="standalone", preview=False)
    try:
        pulumi.runtime.test(program)()
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    groups = {r.name: r.inputs.get("ingress", []) for r in mocks.of_type("aws:ec2/securityGroup:SecurityGroup")}
    print(json.dumps({"groups": groups}))
"""


def run_child(program: str) -> tuple[dict[str, Any], float]:
    """Run ``program`` (after :data:`PROLOGUE`) in a child Python; its JSON result and how long it took."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROLOGUE + textwrap.dedent(program)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the program did not finish within {CHILD_TIMEOUT} s: it hangs") from exc
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(lines[-1]), seconds


def test_a_peer_given_to_no_mesh_fails_naming_itself_and_the_fix_instead_of_hanging() -> None:
    outcome, seconds = run_child(
        """
        def program():
            aws_peer("lonely", aws.Provider("aws-eu", region="eu-west-1"), 0, admission_timeout=1.0)

        finish(program)
        """
    )
    error = outcome.get("error", "")
    assert "WireGuardPeer 'lonely' was not given to a MeshComponent within 1 s of its creation" in error, outcome
    assert "MeshArgs.peers" in error and "WireGuardPeerArgs.admit_wireguard_from" in error and "wgmesh.components.Mesh" in error, error
    print(f"unadmitted peer refused after {seconds:.1f} s (child process, admission_timeout 1 s)")


def test_the_admission_rule_inspects_no_sdk_internals() -> None:
    """The rule is wall time from the peer's creation: no polling, no look at coroutines or tasks (issue 19)."""
    source = (REPO / "components" / "peer.py").read_text()
    for internal in ("cr_running", "get_coro", "current_task", "asyncio.sleep"):
        assert internal not in source, internal


def test_a_peer_used_on_its_own_admits_what_it_is_told_at_once() -> None:
    outcome, _ = run_child(
        """
        def program():
            provider = aws.Provider("aws-eu", region="eu-west-1")
            aws_peer("alone", provider, 0, admit_wireguard_from=["198.51.100.7/32", "2001:db8::1/128"])

        finish(program)
        """
    )
    assert "error" not in outcome, outcome
    entries = [(e["protocol"], e["fromPort"], e["cidrBlocks"]) for e in outcome["groups"]["alone-sg"]]
    # The fixed entries, then WireGuard from the given IPv4 CIDR (the interface has no IPv6).
    assert entries == [("tcp", 22, ["203.0.113.7/32"]), ("-1", 0, ["192.168.10.0/24"]), ("udp", 51820, ["198.51.100.7/32"])]


def test_a_blocking_call_between_the_peers_and_their_mesh_is_not_mistaken_for_the_end() -> None:
    """A blocking invoke between the peers and their mesh (the event loop pumped meanwhile) is well within the rule."""
    outcome, _ = run_child(
        """
        class SlowInvokes(RecordingMocks):
            def call(self, args):
                time.sleep(1.0)  # the engine answering slowly, while the program's code waits for the answer
                return super().call(args)

        mocks = SlowInvokes()

        def program():
            provider = aws.Provider("aws-eu", region="eu-west-1")
            peers = {"a": aws_peer("a", provider, 0), "b": aws_peer("b", provider, 1)}
            aws.get_partition(opts=pulumi.InvokeOptions(provider=provider))  # blocks, pumping the loop, for 1 s
            description = load_mesh({"network": "10.99.0.0/24", "peers": [{"name": n} for n in peers]}, pending_endpoints=list(peers))
            MeshComponent("m", MeshArgs(mesh=description, peers=peers, ssh_private_key="key", verify=False))

        finish(program)
        """
    )
    assert "error" not in outcome, outcome
    assert [e["fromPort"] for e in outcome["groups"]["a-sg"]] == [22, 0, 51820]


def test_a_mesh_refuses_a_peer_that_admits_its_own_sources() -> None:
    outcome, _ = run_child(
        """
        def program():
            provider = aws.Provider("aws-eu", region="eu-west-1")
            peers = {"a": aws_peer("a", provider, 0, admit_wireguard_from=["198.51.100.7/32"]), "b": aws_peer("b", provider, 1)}
            description = load_mesh({"network": "10.99.0.0/24", "peers": [{"name": n} for n in peers]}, pending_endpoints=list(peers))
            MeshComponent("m", MeshArgs(mesh=description, peers=peers, ssh_private_key="key", verify=False))

        finish(program)
        """
    )
    # Reported through the peer the failed mesh never admitted (Pulumi reports the last failure): the cause intact.
    error = outcome.get("error", "")
    assert "WireGuardPeer 'b' gets no WireGuard entries: MeshComponent 'm' failed" in error, outcome
    assert "peer 'a': WireGuardPeerArgs.admit_wireguard_from is for a peer used on its own" in error, outcome


def test_an_external_peer_refuses_sources_to_admit() -> None:
    """It has no security group: sources given to it would be silently ignored."""
    outcome, _ = run_child(
        """
        from wgmesh.components import ExternalHostArgs

        def program():
            host = ExternalHostArgs(ssh_host="198.51.100.9")
            WireGuardPeer("ext", WireGuardPeerArgs(host=host, admit_wireguard_from=["198.51.100.7/32"]))

        finish(program)
        """
    )
    assert "peer 'ext': admit_wireguard_from fills an AWS peer's security groups" in outcome.get("error", ""), outcome
