"""The wgmesh Pulumi program, as a function: stack config in, a WireGuard full mesh out.

One program, two entry points: ``__main__.py`` (what ``pulumi up`` runs through Pulumi's Python language host)
calls :func:`program`, and the tests and the lab hand the same function to the Automation API as an inline
program (``wgmesh.lab.engine``), so the real engine deploys exactly what users deploy.

Reads ``wgmesh:mesh`` (the mesh and its peers, see ``Pulumi.zhy.yaml``) and the SSH key the installs use
(``wgmesh:sshPrivateKey`` as a secret, or ``wgmesh:sshPrivateKeyPath``), validates everything before a single
resource is registered, then builds one regional ``aws.Provider`` per region, the peers and the mesh.
Exports per peer its kind, endpoint, tunnel address and public key; the configs only when asked, as secrets.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pulumi

from wgmesh.components.stack import deploy_stack
from wgmesh.mesh.errors import MeshConfigError
from wgmesh.mesh.stackconfig import CONFIG_KEY, StackSpec, load_stack


def read_spec(config: pulumi.Config) -> StackSpec:
    """The validated stack config; a :class:`pulumi.RunError` (message, no traceback) listing every problem."""
    raw = config.get_object("mesh")
    if raw is None:
        raise pulumi.RunError(
            f"{CONFIG_KEY} is not set for stack {pulumi.get_stack()!r}: describe the mesh in Pulumi.{pulumi.get_stack()}.yaml "
            "(see Pulumi.zhy.yaml)"
        )
    try:
        return load_stack(raw)
    except MeshConfigError as exc:
        raise pulumi.RunError(f"stack {pulumi.get_stack()!r}: {exc}") from None


def read_key_file(path_text: str, where: str) -> pulumi.Output[str]:
    """An SSH private key from a file (relative to the project directory), as a secret."""
    path = Path(path_text).expanduser()
    try:
        return pulumi.Output.secret(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise pulumi.RunError(f"{where}: cannot read SSH private key {path} ({exc.strerror}): fix the path") from None


def ssh_keys(spec: StackSpec, config: pulumi.Config) -> tuple[pulumi.Output[str] | None, dict[str, pulumi.Output[str]]]:
    """The default SSH key and per-peer overrides; an error naming the config key when a peer would have none."""
    default = config.get_secret("sshPrivateKey")
    key_path = config.get("sshPrivateKeyPath")
    if default is None and key_path:
        default = read_key_file(key_path, "wgmesh:sshPrivateKeyPath")
    overrides = {
        peer.name: read_key_file(peer.ssh_private_key_path, f"{CONFIG_KEY}.peers[{index}].ssh_private_key_path")
        for index, peer in enumerate(spec.peers)
        if peer.ssh_private_key_path
    }
    lacking = [peer.name for peer in spec.peers if peer.name not in overrides]
    if default is None and lacking:
        raise pulumi.RunError(
            f"wgmesh:sshPrivateKey is not set and peers {', '.join(lacking)} have no ssh_private_key_path: run "
            "`pulumi config set --secret wgmesh:sshPrivateKey < ~/.ssh/id_ed25519` (the key that logs in to every peer)"
        )
    return default, overrides


# CPython's defaults, (700, 10, 10), and the ones a Pulumi program runs with here: see relax_garbage_collector.
PULUMI_PROGRAM_GC_THRESHOLDS = (200_000, 10, 100)


def relax_garbage_collector() -> None:
    """Let CPython's cyclic garbage collector run in bigger, rarer batches while the SDK registers the resources.

    Why: the Python SDK leaves a few hundred short-lived reference cycles per resource (futures, tasks, Outputs),
    so with the default thresholds the collector runs every 700 allocations, and every 100th run or so is a full
    collection that walks every live object: the imported providers' classes and every resource registered so
    far. At 100 peers (1,244 resources) that was 2.7 of 6.8 s, and the cost per peer grew with the mesh
    (docs/performance.md#the-program-under-mocks). Cycles are still freed, every 200,000 allocations (about 10 MB
    more at the peak at 100 peers); full walks become rare. Thresholds only ever rise here: a process that chose
    bigger ones keeps them.
    """
    current = gc.get_threshold()
    gc.set_threshold(*(max(mine, theirs) for mine, theirs in zip(PULUMI_PROGRAM_GC_THRESHOLDS, current, strict=True)))


def program() -> None:
    """Read and validate the stack config, build every resource, export the public facts and the secret configs."""
    relax_garbage_collector()
    config = pulumi.Config("wgmesh")
    spec = read_spec(config)
    default_key, key_overrides = ssh_keys(spec, config)
    for name, address in spec.probed_addresses:
        pulumi.log.warn(
            f"peer {name!r} was allocated tunnel address {address} after a collision: it could move if another peer is removed; "
            f"pin it with `address: {address}` in {CONFIG_KEY}"
        )
    verify = config.get_bool("verify") is not False
    deployed = deploy_stack(spec, ssh_private_key=default_key, ssh_private_keys=key_overrides, verify=verify)

    pulumi.export(
        "peers",
        {
            member.name: {
                "kind": spec.peer(member.name).kind,
                "region": spec.peer(member.name).aws.region if spec.peer(member.name).aws else None,
                "endpoint": deployed.peers[member.name].endpoint_host.apply(lambda host, port=member.listen_port: f"{host}:{port}")
                if deployed.peers[member.name].endpoint_host is not None
                else None,
                "tunnel_addresses": [str(address) for address in member.addresses],
                "subnets": [str(subnet) for subnet in member.subnets],
                "public_key": deployed.peers[member.name].public_key,
            }
            for member in spec.mesh.peers
        },
    )
    # Every peer's wg0.conf holds its private key: exported (still a secret) only when the stack asks for it, so that
    # whoever may run `pulumi stack output --show-secrets` does not get the whole mesh by default (docs/stack.md).
    if config.get_bool("exportConfigs"):
        pulumi.export("configs", deployed.mesh.configs)
    pulumi.export("config_digests", deployed.mesh.config_digests)
    pulumi.export("verification", deployed.mesh.verification)
    pulumi.export("relays", deployed.mesh.relays)  # pairs behind NAT and the peer relaying each (it sees their traffic)
