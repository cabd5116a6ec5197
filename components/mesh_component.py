"""``MeshComponent``: every peer's wg-quick config, built from the peers' outputs and installed over SSH.

The configs are rendered by the pure ``mesh`` package inside one ``Output.apply`` (so they exist only once every
key and endpoint is known, and are secrets). Preshared keys derive from one ``RandomPassword`` mesh secret rather
than N^2 stored ones. Each config goes to its host on the SSH session's stdin (never on a command line) through
a ``pulumi-command`` ``remote.Command`` whose install script validates, swaps atomically and applies without
restart when the interface is up (an update runs the same ``create`` script again: pulumi-command's default when no
``update`` is given). A config change changes that command's stdin, so only the peers whose config
changed are touched; the command text carries the config's SHA-256 so that ``pulumi preview`` shows which, and,
for an AWS peer, the instance's id, so that a replaced instance gets its config again (and no other install runs).
Every SSH connection pins the peer's host key (:attr:`WireGuardPeer.host_key`). Afterwards one verification command
per peer waits for handshakes and pings every other tunnel address; all of them run again whenever a config changes
or a host is new (its instance or host key changed), since the others' sessions with a new host must be restarted.

Everything all peers share goes through a ``pulumi.Stash``, a state-only resource, as a barrier: the peers' public
addresses and keys, the rendered configs (a secret), and the end of every install before any verification. Each
peer's resources then depend on one barrier instead of on every other peer, so the graph has O(N) dependency edges
rather than O(N^2) (the SDK walks the graph for every new edge to refuse cycles: edges are what the program's time
grows with). Stashes are read through their ``input``, the value of this run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command

from wgmesh.components.keys import random_seed, seed_bytes
from wgmesh.components.peer import WireGuardPeer
from wgmesh.hostside.install import install_script, uninstall_script, verify_script, wait_for_boot_script
from wgmesh.mesh.model import Mesh
from wgmesh.mesh.relays import CLEARTEXT_NOTE, relayed_pairs
from wgmesh.mesh.render import MeshKeys, config_digest, render_all
from wgmesh.mesh.stackconfig import resolve_endpoints

DEFAULT_BOOT_TIMEOUT = 900
DEFAULT_VERIFY_TIMEOUT = 120


@dataclass
class MeshArgs:
    """What a mesh needs: the validated description, one :class:`WireGuardPeer` per member, and SSH keys.

    ``mesh`` comes from :func:`wgmesh.mesh.validation.load_mesh` or :func:`wgmesh.mesh.stackconfig.load_stack`; endpoints of AWS
    peers may be pending there: they are taken from the peers' Elastic IPs. ``ssh_private_keys`` overrides the
    default ``ssh_private_key`` per peer name.
    """

    mesh: Mesh
    peers: Mapping[str, WireGuardPeer]
    ssh_private_key: pulumi.Input[str] | None = None
    ssh_private_keys: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    preshared_keys: bool = True
    verify: bool = True
    verify_timeout: int = DEFAULT_VERIFY_TIMEOUT
    boot_timeout: int = DEFAULT_BOOT_TIMEOUT
    mesh_secret_version: int = 1
    # Names of former members whose host is gone for good (``gone: true``): see MeshComponent._tombstone.
    gone: tuple[str, ...] = ()


MESH_TYPE = "wgmesh:index:Mesh"


class MeshBuilder:
    """What a mesh registers under itself (everything below ``_build_mesh``), shared by :class:`MeshComponent` (peers
    built by the caller) and :class:`wgmesh.components.mesh_api.Mesh` (peers built from one description). No annotations here:
    the component provider's schema analyzer reads the annotations of a component's classes as its outputs."""

    # Per-peer commands are named f"{_peer_prefix}{peer}-install": Mesh prefixes them with its own name (two meshes in
    # one stack) and, adopting a stack built before, aliases the unprefixed names.
    _peer_prefix = ""
    _alias_unprefixed = False

    def _build_mesh(self, name: str, args: MeshArgs) -> dict[str, Any]:
        """Every child of the mesh under ``self`` (a registered component); the outputs to register."""
        assert isinstance(self, pulumi.ComponentResource)
        mesh = args.mesh
        peers = {peer.name: args.peers[peer.name] for peer in mesh.peers}

        # Barrier 1: every peer's WireGuard sources and public key, then O(1) edges per peer.
        facts = pulumi.Stash(
            f"{name}-peers",
            input=pulumi.Output.all(
                sources=pulumi.Output.all(**{peer_name: peer.wireguard_sources for peer_name, peer in peers.items()}),
                public_keys=pulumi.Output.all(**{peer_name: peer.public_key for peer_name, peer in peers.items()}),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for peer_name, peer in peers.items():
            peer.admit_wireguard_from(facts.input.apply(lambda known, me=peer_name: _sources_except(mesh, known["sources"], me)))
        self.public_keys = facts.input.apply(lambda known: dict(known["public_keys"]))
        # Barrier 2: the rendered configs (a secret), each install reading its own.
        secret = random_seed(f"{name}-psk-secret", key_version=args.mesh_secret_version, parent=self) if args.preshared_keys else None
        # A Stash keeps its first value as `output`: replaced on every change, it never keeps a rotated-out key.
        rendered = pulumi.Stash(
            f"{name}-configs",
            input=pulumi.Output.secret(_render(mesh, peers, secret)),
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["input"]),
        )
        self.configs = pulumi.Output.secret(rendered.input)
        self.config_digests = pulumi.Output.unsecret(self.configs.apply(lambda configs: {n: config_digest(t) for n, t in configs.items()}))
        mesh_digest = self.config_digests.apply(lambda digests: hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest())

        installs: dict[str, command.remote.Command] = {}
        # A peer behind NAT installs after its relays (always peers with an endpoint, so created first): a pair moved
        # to a new relay then finds it listening, instead of waiting out WireGuard's 5 s handshake retry.
        for peer_name, peer in sorted(peers.items(), key=lambda item: not mesh.peer(item[0]).reachable):
            relays = sorted(set(mesh.relayed.get(peer_name, {}).values()))
            installs[peer_name] = self._install(name, mesh, peer_name, peer, args, [installs[relay] for relay in relays])
        for gone in args.gone:
            self._tombstone(gone)
        verifications: dict[str, pulumi.Output[Any]] = {}
        if args.verify:
            # Barrier 3: every install has finished before any peer verifies the whole mesh. It also carries every
            # host's identity, so that a new host (a replaced instance, a reinstalled external host) makes every
            # peer verify again, not only itself: see _hosts_digest.
            installed = pulumi.Stash(
                f"{name}-installed",
                input=pulumi.Output.all(mesh_digest=mesh_digest, hosts_digest=_hosts_digest(peers), public_keys=self.public_keys),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(installs.values())),
            )
            for peer_name, peer in peers.items():
                check = self._verify(mesh, peer_name, peer, args, installed.input)
                verifications[peer_name] = check.stdout.apply(_parse_verification)
        self.installs = installs
        self.verification = pulumi.Output.all(**verifications) if verifications else pulumi.Output.from_input({})
        self.networks = [str(network) for network in mesh.networks]
        # Known before anything is created (the choice is pure), so `pulumi preview` already shows it.
        pairs = [pair.as_output() for pair in relayed_pairs(mesh)]
        self.relays = {"pairs": pairs, "note": CLEARTEXT_NOTE} if pairs else {"pairs": []}
        return {
            "networks": self.networks,
            "config_digests": self.config_digests,
            "configs": self.configs,
            "verification": self.verification,
            "relays": self.relays,
        }

    def _child(self, peer_name: str, suffix: str, **options: Any) -> tuple[str, pulumi.ResourceOptions]:
        """A per-peer child's name and options: under this mesh, prefixed, aliased to its unprefixed name if asked."""
        aliases = [pulumi.Alias(name=f"{peer_name}-{suffix}")] if self._alias_unprefixed and self._peer_prefix else None
        return f"{self._peer_prefix}{peer_name}-{suffix}", pulumi.ResourceOptions(parent=self, aliases=aliases, **options)  # type: ignore[arg-type]

    def _connection(self, peer_name: str, peer: WireGuardPeer, args: MeshArgs) -> command.remote.ConnectionArgs:
        key = args.ssh_private_keys.get(peer_name, args.ssh_private_key)
        return command.remote.ConnectionArgs(
            host=peer.ssh_host,
            port=peer.ssh_port,
            user=peer.ssh_user,
            private_key=pulumi.Output.secret(key) if key is not None else None,
            # Pinned: pulumi-command then accepts this key only, and refuses any other before sending anything.
            host_key=peer.host_key,
            # A fresh EC2 instance takes a minute or two before sshd answers.
            dial_error_limit=30,
            per_dial_timeout=15,
        )

    def _install(
        self, name: str, mesh: Mesh, peer_name: str, peer: WireGuardPeer, args: MeshArgs, relays: list[command.remote.Command]
    ) -> command.remote.Command:
        wait = wait_for_boot_script(timeout_seconds=args.boot_timeout) if peer.kind == "aws" else ""
        body = install_script(mesh.interface)
        config = self.configs.apply(lambda configs: configs[peer_name])
        # The instance's id in the script: a replaced instance (same address, same config) is installed again.
        instance = peer.instance.id if peer.instance is not None else None
        # Its own digest first: Output.all would lift the whole N-entry digest map into Outputs for each of N peers.
        digest = self.config_digests.apply(lambda digests: digests[peer_name])
        script = pulumi.Output.all(digest, instance).apply(
            lambda values: (
                f"# wgmesh: install {mesh.interface} on {peer_name}"
                + (f" (instance {values[1]})" if values[1] else "")
                + f", config sha256={values[0]}\n{wait}\n{body}"
            )
        )
        command_name, options = self._child(
            peer_name,
            "install",
            depends_on=[peer, *relays],
            additional_secret_outputs=["stdin", "stdout", "stderr"],
            # Never run the old command's delete (interface down) after a replacement was installed.
            delete_before_replace=True,
        )
        return command.remote.Command(
            command_name,
            connection=self._connection(peer_name, peer, args),
            create=script,
            delete=uninstall_script(mesh.interface),
            stdin=pulumi.Output.secret(config),
            logging=command.remote.Logging.STDERR,
            opts=options,
        )

    def _tombstone(self, peer_name: str) -> command.remote.Command:
        """A gone peer's install, kept with no command at all: updating it to this runs nothing (there is no
        ``create``/``update``), and deleting it afterwards (the peer dropped from the config, or ``pulumi destroy``)
        runs no ``delete`` either. So a host that is gone for good never has to answer SSH to leave the mesh. Its
        verify is simply no longer declared (it has no delete command). The connection is a placeholder: nothing
        dials it."""
        command_name, options = self._child(peer_name, "install")
        return command.remote.Command(
            command_name, connection=command.remote.ConnectionArgs(host=f"{peer_name}.gone.invalid", user="root"), opts=options
        )

    def _verify(
        self, mesh: Mesh, peer_name: str, peer: WireGuardPeer, args: MeshArgs, installed: pulumi.Output[Any]
    ) -> command.remote.Command:
        # A peer reached through a relay is checked by its ping and by the handshake with its relay, which carries it.
        relays = mesh.relayed.get(peer_name, {})
        others = [(other.name, relays.get(other.name, other.name), list(map(str, other.addresses))) for other in mesh.others(peer_name)]
        script = installed.apply(
            lambda values: (
                f"# wgmesh: verify {peer_name}, mesh sha256={values['mesh_digest']}, hosts sha256={values['hosts_digest']}\n"
                + verify_script(
                    mesh.interface,
                    [(other_name, values["public_keys"][carrier], address) for other_name, carrier, address in others],
                    timeout_seconds=args.verify_timeout,
                    relays=relays,
                )
            )
        )
        command_name, options = self._child(peer_name, "verify")
        return command.remote.Command(
            command_name,
            connection=self._connection(peer_name, peer, args),
            create=script,
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=options,
        )


class MeshComponent(MeshBuilder, pulumi.ComponentResource):
    """The full mesh (``wgmesh:index:Mesh``) over a set of peers the caller built.

    Lower level than :class:`wgmesh.components.mesh_api.Mesh`, which builds the peers from the same description. Both are the
    same resource as far as the state goes (same type, same children): a program moving from this class to ``Mesh``
    keeps its mesh's URN, and ``Mesh(..., adopt_unprefixed=True)`` aliases the peers and per-peer commands this class
    and its separate peers named without the mesh's prefix.
    """

    configs: pulumi.Output[dict[str, str]]
    config_digests: pulumi.Output[dict[str, str]]
    verification: pulumi.Output[dict[str, Any]]
    relays: dict[str, Any]

    def __init__(self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        try:
            _check_args(args)
            super().__init__(MESH_TYPE, name, None, opts)
            self.register_outputs(self._build_mesh(name, args))
        except Exception as exc:
            # Its peers wait for this mesh to admit them: they fail now, carrying this error (see WireGuardPeer.abandon).
            for peer in args.peers.values():
                peer.abandon(f"MeshComponent {name!r} failed: {exc}")
            raise


def _hosts_digest(peers: Mapping[str, WireGuardPeer]) -> pulumi.Output[str]:
    """A digest of every peer's host identity: its instance's id (AWS) and its pinned SSH host key.

    Either changes when a host is new (a replaced instance, a reinstalled external host whose new key was accepted),
    which is when its install runs again on a host with no WireGuard state. Every verify's text carries the digest,
    so every peer verifies again in that update: the peers behind NAT keep sending keepalives on their session with
    the old host, which the new one drops, and keepalives never start a handshake; the verify's pings are data,
    after which WireGuard starts one within about 15 s. Without them those peers (and the new host's own verify,
    which pings them) wait for the old session to expire, minutes later. One edge per host to the barrier, not N^2.
    """
    identities = {
        peer_name: pulumi.Output.all(peer.instance.id if peer.instance is not None else None, peer.host_key)
        for peer_name, peer in peers.items()
    }
    return pulumi.Output.all(**identities).apply(lambda known: hashlib.sha256(json.dumps(known, sort_keys=True).encode()).hexdigest())


def _sources_except(mesh: Mesh, by_peer: Mapping[str, list[str]], name: str) -> list[str]:
    """Every other peer's WireGuard source addresses in mesh order, each once: where they sit in the peer's groups
    stays put when a peer is appended (see :mod:`wgmesh.mesh.awsplan`)."""
    return list(dict.fromkeys(cidr for other in mesh.others(name) for cidr in by_peer[other.name]))


def _check_args(args: MeshArgs) -> None:
    """Refuse a mismatch between the description and the peers before any resource is registered."""
    missing = [name for name in args.mesh.names if name not in args.peers]
    extra = [name for name in args.peers if name not in args.mesh.names]
    if missing or extra:
        raise ValueError(
            f"MeshArgs.peers must hold one WireGuardPeer per mesh member: missing {missing or 'none'}, unknown {extra or 'none'}"
        )
    for name in args.mesh.names:
        if args.ssh_private_keys.get(name, args.ssh_private_key) is None:
            raise ValueError(f"no SSH private key for peer {name!r}: set MeshArgs.ssh_private_key or ssh_private_keys[{name!r}]")
    for peer in args.mesh.peers:
        component = args.peers[peer.name]
        if component.listen_port != peer.listen_port:
            raise ValueError(f"peer {peer.name!r}: WireGuardPeer listens on {component.listen_port}, the mesh says {peer.listen_port}")
        if peer.endpoint_pending and component.endpoint_host is None:
            raise ValueError(f"peer {peer.name!r}: the mesh expects a created endpoint but the WireGuardPeer has none")
        if component.standalone:
            raise ValueError(
                f"peer {peer.name!r}: WireGuardPeerArgs.admit_wireguard_from is for a peer used on its own; "
                "the mesh admits its members from each other: drop it"
            )


def _render(mesh: Mesh, peers: Mapping[str, WireGuardPeer], secret: pulumi.Output[str] | None) -> pulumi.Output[dict[str, str]]:
    """All configs at once, when every private key, pending endpoint and the mesh secret are known."""
    inputs: dict[str, Any] = {f"key:{name}": peer.private_key for name, peer in peers.items()}
    for peer in mesh.peers:
        if peer.endpoint_pending:
            inputs[f"endpoint:{peer.name}"] = peers[peer.name].endpoint_host
    if secret is not None:
        inputs["secret"] = secret

    def render(values: dict[str, Any]) -> dict[str, str]:
        endpoints = {key.split(":", 1)[1]: value for key, value in values.items() if key.startswith("endpoint:")}
        keys = MeshKeys(
            private_keys={name: values[f"key:{name}"] for name in peers},
            mesh_secret=seed_bytes(values["secret"]) if "secret" in values else None,
        )
        return render_all(resolve_endpoints(mesh, endpoints), keys)

    return pulumi.Output.all(**inputs).apply(render)


def _parse_verification(stdout: str | None) -> Any:
    """The verify script's JSON line, or the raw text when it is not JSON (kept, so a failure stays readable)."""
    if not stdout:
        return None
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {"ok": False, "raw": stdout[-2000:]}
