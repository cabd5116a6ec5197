"""Build, inspect, reboot and remove the network-namespace lab (root on Linux).

The lab stands in for servers in several clouds, so that wgmesh's real install path (SSH, wg-quick, wireguard-go,
iptables) runs end to end on one machine. The layout is in :mod:`wgmesh.lab.topology`; this module runs ``ip``,
``nsenter``, ``unshare``, ``mount``, ``ssh-keygen`` and ``sshd`` to make it, and records everything it makes in the
state file (:mod:`wgmesh.lab.state`) so that ``down`` removes exactly that and nothing else.

Each host is a network namespace plus a persistent private mount namespace (a handle bind-mounted at
``<state>/ns/<host>``; a UTS namespace at ``<state>/ns/<host>.uts`` gives it its hostname) in which:

* ``/etc/wireguard`` is a bind mount of ``<state>/hosts/<host>/etc-wireguard`` (the host's own config directory);
* ``/run`` is a fresh tmpfs: wireguard-go's UAPI socket ``/run/wireguard/wg0.sock`` exists once per host instead of
  colliding in the one real ``/run``, a "reboot" empties it like a real one, and the workstation's
  ``/run/systemd/system`` is hidden, so install scripts take the no-systemd path (``wg-quick up``) instead of
  enabling units on the real machine;
* ``/sys`` is a sysfs mounted from inside the host's network namespace (as ``ip netns exec`` does), so
  ``/sys/class/net`` lists the host's own interfaces.

sshd (own config and host key in the state directory, root login with the lab's ed25519 key only) runs there, so
every SSH session, and everything it starts (wg-quick, wireguard-go), lives in the host's namespaces.

The state directory must not lie under ``/run``: the per-host tmpfs would hide it from the host's sshd.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgmesh.lab import topology
from wgmesh.lab.state import LabState, write_private
from wgmesh.lab.topology import Host

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# Tool -> Debian package, for the "missing tools" message.
TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "iptables": "iptables",
    "wg": "wireguard-tools",
    "wg-quick": "wireguard-tools",
    "wireguard-go": "wireguard-go",
}
STATE_FILE = "lab.json"
KEY_FILE = "id_ed25519"
STACK_FILE = "Pulumi.lab.yaml"
COMMAND_TIMEOUT = 30.0
SSH_READY_TIMEOUT = 20.0
WG_QUICK_TIMEOUT = 60.0
KILL_GRACE = 3.0
# After a reboot, how long `reboot` waits for its tunnels to carry traffic again: a peer behind NAT (which the
# rebooted host cannot dial) comes back with its next keepalive, at most 25 s later with wgmesh's default.
HANDSHAKE_TIMEOUT = 30.0


class LabError(Exception):
    """A problem the user can act on (not root, a tool missing, a lab already up); printed without a traceback."""


class LabBusy(LabError):
    """Another lab holds the machine (its namespaces, its veth or 198.51.100.0/24 exist): one lab per machine."""


def tool_env() -> dict[str, str]:
    """The environment for every command: ours, with the sbin directories on PATH (``sudo`` may drop them)."""
    env = dict(os.environ)
    path = env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    env["PATH"] = os.pathsep.join(path + [directory for directory in SBIN_DIRS if directory not in path])
    return env


def which(tool: str) -> str | None:
    return shutil.which(tool, path=tool_env()["PATH"])


def check_prerequisites(tools: Iterable[str] = TOOLS) -> None:
    """:class:`LabError` unless we are root on Linux with every tool the lab runs."""
    if not os.path.isdir("/proc/self/ns") or os.uname().sysname != "Linux":
        raise LabError("the lab needs Linux (network and mount namespaces)")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces, veth pairs and mounts): run it with sudo")
    missing = [tool for tool in tools if which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOLS.get(tool, tool) for tool in missing}))
        raise LabError(f"the lab needs {', '.join(missing)}: apt-get install {packages}")


def run(
    argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command (never through a shell of ours), bounded in time; :class:`LabError` naming it when it fails."""
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=tool_env(),
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    except FileNotFoundError:
        raise LabError(f"`{argv[0]}` not found (is it installed?)") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` failed ({result.returncode}): {detail}")
    return result


def ns_inode(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of a namespace file (``/run/netns/X``, ``/proc/<pid>/ns/net``, a handle); None if gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def processes_in(namespaces: set[tuple[int, int]]) -> list[int]:
    """Every process whose network or mount namespace is one of ``namespaces`` (never ourselves)."""
    found: list[int] = []
    if not namespaces:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for kind in ("net", "mnt"):
            if ns_inode(f"/proc/{entry}/ns/{kind}") in namespaces:
                found.append(int(entry))
                break
    return found


def kill_processes_in(namespaces: set[tuple[int, int]], grace: float = KILL_GRACE) -> int:
    """SIGTERM every process in ``namespaces``, SIGKILL what is left after ``grace`` seconds; how many there were."""
    pids = processes_in(namespaces)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and processes_in(namespaces):
            time.sleep(0.05)
        if not processes_in(namespaces):
            break
    return len(pids)


def tcp_banner(host: str, port: int, timeout: float = 1.0) -> str | None:
    """The first line a TCP server sends (sshd: ``SSH-2.0-...``), or None when it cannot be reached."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(256).decode("ascii", "replace").strip() or None
    except OSError:
        return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class HostStatus:
    name: str
    ssh_host: str
    endpoint: str | None
    lan_subnet: str
    sshd_pid: int | None
    ssh_ok: bool
    wg_interfaces: list[str]

    @property
    def healthy(self) -> bool:
        return self.sshd_pid is not None and self.ssh_ok


class Lab:
    """The lab whose state lives in ``state_dir`` (default ``./lab-state``)."""

    def __init__(self, state_dir: Path | str = "lab-state") -> None:
        self.state_dir = Path(state_dir).absolute()
        self.state_path = self.state_dir / STATE_FILE
        self.key_path = self.state_dir / KEY_FILE
        self.stack_path = self.state_dir / STACK_FILE
        self.ns_dir = self.state_dir / "ns"
        self.hosts_dir = self.state_dir / "hosts"

    # ----------------------------------------------------------------------------------------------- inspection
    def state(self) -> LabState | None:
        try:
            return LabState.load(self.state_path)
        except (ValueError, json.JSONDecodeError) as exc:
            raise LabError(f"{self.state_path}: unreadable lab state ({exc})") from None

    def hosts(self) -> dict[str, Host]:
        """The hosts of the lab that is up (by name); :class:`LabError` when none is."""
        state = self.state()
        if state is None or "peers" not in state.data:
            raise LabError(f"no lab is up (no {self.state_path}): run `wgmesh lab up --peers N` first")
        hosts = topology.plan(
            int(state.data["peers"]),
            nat_peer=int(state.data.get("nat_peer") or 0),
            dual_stack=bool(state.data.get("dual_stack")),
            harsh=bool(state.data.get("harsh", False)),
        )
        return {host.name: host for host in hosts}

    def host(self, name: str) -> Host:
        hosts = self.hosts()
        if name.removeprefix(topology.PREFIX) not in hosts:
            raise LabError(f"no such lab host {name!r} (hosts: {', '.join(hosts)})")
        return hosts[name.removeprefix(topology.PREFIX)]

    def host_dir(self, host: Host) -> Path:
        return self.hosts_dir / host.name

    def mount_handle(self, host: Host) -> Path:
        return self.ns_dir / host.name

    def uts_handle(self, host: Host) -> Path:
        return self.ns_dir / f"{host.name}.uts"

    def netns_path(self, netns: str) -> str:
        return f"/run/netns/{netns}"

    def in_host(self, host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the host: its network namespace, its private mount namespace and its hostname."""
        namespaces = [f"--net={self.netns_path(host.netns)}", f"--mount={self.mount_handle(host)}", f"--uts={self.uts_handle(host)}"]
        return ["nsenter", *namespaces, "--", *argv]

    def in_netns(self, netns: str, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns_path(netns)}", "--", *argv]

    # ------------------------------------------------------------------------------------------------------ up
    def up(
        self,
        peers: int,
        *,
        nat_peer: int = 0,
        dual_stack: bool = False,
        harsh: bool = True,
        workers: int = 16,
        wait: float = 0.0,
    ) -> list[Host]:
        """Build the lab; on any failure remove what was made so far and raise :class:`LabError`.

        The names and addresses are fixed, so one lab at a time fits on a machine. When another one holds it
        (:class:`LabBusy`), retry for up to ``wait`` seconds: whoever creates a namespace first owns it, and a loser
        removes only what it made itself, so concurrent test runs take turns instead of breaking each other.
        """
        try:
            hosts = topology.plan(peers, nat_peer=nat_peer, dual_stack=dual_stack, harsh=harsh)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        check_prerequisites()
        self._check_state_dir()
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._up_once(hosts, workers)
            except LabBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def _up_once(self, hosts: list[Host], workers: int) -> list[Host]:
        peers, nat_peer = len(hosts), sum(host.behind_nat for host in hosts)
        dual_stack = any(host.dual_stack for host in hosts)
        harsh = any(host.harsh for host in hosts)
        self._check_free(hosts)
        made_dir = not self.state_dir.exists()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        try:
            state = LabState.claim(
                self.state_path,
                peers=peers,
                nat_peer=nat_peer,
                dual_stack=dual_stack,
                harsh=harsh,
                status="building",
                started=time.time(),
            )
        except FileExistsError:
            raise LabError(f"a lab is already up with state in {self.state_dir} (run `wgmesh lab down` first)") from None
        if made_dir:
            state.set("made_state_dir", True)
        try:
            self._ensure_key(state)
            self._build_common(state, dual_stack=dual_stack)
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
                list(pool.map(lambda host: self._build_host(state, host), hosts))
            self._wait_ssh(hosts)
            state.record("files", str(self.stack_path))
            write_private(self.stack_path, topology.stack_yaml(hosts, self.key_path))
            state.set("status", "up")
        except BaseException as exc:
            with contextlib.suppress(LabError):
                self.down()
            if isinstance(exc, LabError):
                raise
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise LabError(f"lab up failed ({type(exc).__name__}: {exc}); everything it made was removed") from exc
        return hosts

    def _check_state_dir(self) -> None:
        resolved = self.state_dir.resolve()
        if resolved == Path("/run") or Path("/run") in resolved.parents:
            raise LabError(f"--state {self.state_dir}: must not be under /run (each lab host mounts its own /run)")
        if any(ch.isspace() or ch in "\"'\\%" for ch in str(self.state_dir)):
            raise LabError(f"--state {self.state_dir!r}: use a path without spaces, quotes, backslashes or % (sshd_config paths)")

    def _check_free(self, hosts: list[Host]) -> None:
        """Refuse to start over anything that exists already: we would otherwise "own" and later delete it."""
        existing = set(run(["ip", "netns", "list"]).stdout.split())
        wanted = {topology.INET_NETNS} | {ns for host in hosts for ns in host.namespaces}
        taken = sorted(wanted & existing)
        if taken:
            raise LabBusy(
                f"network namespaces {', '.join(taken)} exist already (another lab? `wgmesh lab down --state DIR` "
                "removes a lab, `ip netns delete NAME` a stray namespace)"
            )
        if run(["ip", "link", "show", topology.ROOT_LINK], check=False).returncode == 0:
            raise LabBusy(f"interface {topology.ROOT_LINK} exists already in the root namespace (another lab is up?)")
        routes = run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
        for route in json.loads(routes or "[]"):
            dst = route.get("dst", "")
            if dst.startswith("198.51.100.") or dst == topology.INET_CIDR:
                raise LabBusy(f"the root namespace already routes {dst} (dev {route.get('dev')}): the lab needs {topology.INET_CIDR}")

    def _ensure_key(self, state: LabState) -> None:
        """The lab's SSH key and authorized_keys; a key this ``up`` generates is recorded, so ``down`` removes it."""
        pub = self.key_path.with_name(KEY_FILE + ".pub")
        if not self.key_path.exists():
            state.record("files", str(self.key_path))
            state.record("files", str(pub))
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wgmesh-lab", "-f", str(self.key_path)])
        if not pub.exists():
            pub.write_text(run(["ssh-keygen", "-y", "-f", str(self.key_path)]).stdout)
        for path in (self.key_path, pub):
            os.chmod(path, 0o600)
        state.record("files", str(self.state_dir / "authorized_keys"))
        write_private(self.state_dir / "authorized_keys", pub.read_text().strip() + "\n")

    def keep_file(self, path: Path) -> None:
        """Record a file kept for the lab that is up (the deploy's state), so that ``down`` removes it with the lab."""
        state = self.state()
        if state is not None:
            state.record("files", str(Path(path).absolute()))

    def keep_dir(self, path: Path) -> None:
        """Record a directory kept for the lab that is up (the deploy's engine workspace): ``down`` removes it whole."""
        state = self.state()
        if state is not None:
            state.record("trees", str(Path(path).absolute()))

    def _add_netns(self, state: LabState, name: str) -> None:
        result = run(["ip", "netns", "add", name], check=False)
        if result.returncode != 0:
            if "exists" in result.stderr:
                raise LabBusy(f"network namespace {name} appeared meanwhile (another lab is starting?)")
            raise LabError(f"`ip netns add {name}` failed: {result.stderr.strip()}")
        state.record("netns", name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _batch(self, netns: str, lines: Iterable[str]) -> None:
        run(["ip", "-n", netns, "-batch", "-"], stdin="\n".join(lines) + "\n")

    def _sysctl(self, netns: str, settings: dict[str, str], *, optional: bool = False) -> None:
        """Write sysctls from inside ``netns`` (``/proc/sys/net`` is per network namespace of the writer)."""
        script = "; ".join(f"echo {value} > /proc/sys/{key.replace('.', '/')}" for key, value in settings.items())
        run(self.in_netns(netns, ["sh", "-c", script]), check=not optional)

    def _build_common(self, state: LabState, *, dual_stack: bool = False) -> None:
        # A private mount for the mount-namespace handles: unshare --mount=FILE refuses a FILE on a shared mount.
        self.ns_dir.mkdir(mode=0o700, exist_ok=True)
        self.hosts_dir.mkdir(mode=0o700, exist_ok=True)
        run(["mount", "--bind", str(self.ns_dir), str(self.ns_dir)])
        state.record("mounts", str(self.ns_dir))
        run(["mount", "--make-private", str(self.ns_dir)])
        if not os.path.isdir("/etc/wireguard"):
            os.mkdir("/etc/wireguard", 0o700)
            state.record("dirs", "/etc/wireguard")
        # The internet: one bridge; no address of its own.
        self._add_netns(state, topology.INET_NETNS)
        self._batch(topology.INET_NETNS, [f"link add {topology.BRIDGE} type bridge", f"link set {topology.BRIDGE} up"])
        self._sysctl(topology.INET_NETNS, {"net.bridge.bridge-nf-call-iptables": "0"}, optional=True)
        # The hosts' default gateway: an address of the bridge in a namespace that forwards nothing. A host finds
        # its uplink by its default route, as on a real server; what it sends there goes nowhere.
        self._sysctl(topology.INET_NETNS, {"net.ipv4.ip_forward": "0"})
        self._batch(topology.INET_NETNS, [f"addr add {topology.INET_GATEWAY}/{topology.INET_PREFIXLEN} dev {topology.BRIDGE}"])
        if dual_stack:
            # Neighbour discovery is multicast: with no MLD querier on this bridge, snooping could prune it.
            self._batch(topology.INET_NETNS, [f"link set {topology.BRIDGE} type bridge mcast_snooping 0"])
        # The root namespace's one way in: a veth with 198.51.100.1/24 (so only the connected 198.51.100.0/24 route).
        result = run(
            ["ip", "link", "add", topology.ROOT_LINK, "type", "veth", "peer", "name", "root", "netns", topology.INET_NETNS], check=False
        )
        if result.returncode != 0:
            busy = "exists" in result.stderr
            raise (LabBusy if busy else LabError)(f"cannot add {topology.ROOT_LINK} in the root namespace: {result.stderr.strip()}")
        state.record("links", topology.ROOT_LINK)
        disable_v6 = f"/proc/sys/net/ipv6/conf/{topology.ROOT_LINK}/disable_ipv6"
        if os.path.exists(disable_v6):
            Path(disable_v6).write_text("1\n")
        run(["ip", "addr", "add", f"{topology.ROOT_ADDRESS}/{topology.INET_PREFIXLEN}", "dev", topology.ROOT_LINK])
        run(["ip", "link", "set", topology.ROOT_LINK, "up"])
        self._batch(topology.INET_NETNS, [f"link set root master {topology.BRIDGE}", "link set root up"])

    def _build_host(self, state: LabState, host: Host) -> None:
        for netns in host.namespaces:
            self._add_netns(state, netns)
            if host.dual_stack:
                # No duplicate address detection: an address is usable at once instead of "tentative" for a second
                # or more (a bounded wait we need not make); the lab's addresses are unique by construction.
                self._sysctl(netns, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"})
        uplink, lan, mtu = host.uplink, host.lan_if, host.mtu
        public = f"link add {topology.PUBLIC_IF} type veth peer name {host.bridge_port} netns {topology.INET_NETNS}"
        if host.nat_netns:
            nat = host.nat_netns
            self._batch(
                nat,
                [
                    public,
                    f"link set {topology.PUBLIC_IF} mtu {mtu}",
                    f"addr add {host.public_address}/{topology.INET_PREFIXLEN} dev {topology.PUBLIC_IF}",
                    f"link set {topology.PUBLIC_IF} up",
                    f"link add {topology.NAT_PRIVATE_IF} type veth peer name {uplink} netns {host.netns}",
                    f"link set {topology.NAT_PRIVATE_IF} mtu {mtu}",
                    f"addr add {host.nat_inside_address}/24 dev {topology.NAT_PRIVATE_IF}",
                    f"link set {topology.NAT_PRIVATE_IF} up",
                ],
            )
            self._sysctl(nat, {"net.ipv4.ip_forward": "1"})
            private_net = f"100.64.{host.index}.0/24"
            rules = [
                ["-t", "nat", "-A", "POSTROUTING", "-s", private_net, "-o", topology.PUBLIC_IF, "-j", "MASQUERADE"],
                # The one port-forward: SSH to the router's public address reaches the host's sshd (management path).
                [
                    *("-t", "nat", "-A", "PREROUTING", "-d", host.public_address, "-p", "tcp", "--dport", str(topology.SSH_PORT)),
                    *("-j", "DNAT", "--to-destination", f"{host.address}:{topology.SSH_PORT}"),
                ],
            ]
            if host.harsh:  # "fragmentation needed" filtered, as many home and office routers do
                drop = ("-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP")
                rules += [["-A", chain, *drop] for chain in ("FORWARD", "OUTPUT")]
            for rule in rules:
                run(self.in_netns(nat, ["iptables", "-w", "5", *rule]))
            host_lines = [
                f"link set {uplink} mtu {mtu}",
                f"addr add {host.address}/{host.address_prefixlen} dev {uplink}",
                f"link set {uplink} up",
                f"route add default via {host.nat_inside_address}",
            ]
        else:
            host_lines = [
                public.replace(f"link add {topology.PUBLIC_IF} ", f"link add {uplink} ", 1),
                f"link set {uplink} mtu {mtu}",
                f"addr add {host.address}/{host.address_prefixlen} dev {uplink}",
                f"link set {uplink} up",
                f"route add default via {topology.INET_GATEWAY}",
            ]
            if host.dual_stack and host.public_address6:
                host_lines.append(f"addr add {host.public_address6}/{topology.INET6_PREFIXLEN} dev {uplink} nodad")
        host_lines += [
            f"link add {lan} type veth peer name {topology.LAN_CLIENT_IF} netns {host.lan_netns}",
            f"link set {lan} mtu {mtu}",
            f"addr add {host.lan_gateway}/24 dev {lan}",
            f"link set {lan} up",
        ]
        lan_lines = [
            f"link set {topology.LAN_CLIENT_IF} mtu {mtu}",
            f"addr add {host.lan_client}/24 dev {topology.LAN_CLIENT_IF}",
            f"link set {topology.LAN_CLIENT_IF} up",
            f"route add default via {host.lan_gateway}",
        ]
        if host.dual_stack:
            host_lines.append(f"addr add {host.lan_gateway6}/64 dev {lan} nodad")
            lan_lines.append(f"addr add {host.lan_client6}/64 dev {topology.LAN_CLIENT_IF} nodad")
            lan_lines.append(f"route add default via {host.lan_gateway6}")
        self._batch(host.netns, host_lines)
        self._batch(host.lan_netns, lan_lines)
        # The internet's side of the host's link carries 1500: bigger frames are dropped there, without ICMP.
        self._batch(
            topology.INET_NETNS,
            [
                f"link set {host.bridge_port} mtu {topology.PATH_MTU}",
                f"link set {host.bridge_port} master {topology.BRIDGE}",
                f"link set {host.bridge_port} up",
            ],
        )
        self._sysctl(host.netns, {"net.ipv4.ip_forward": "1", **({"net.ipv6.conf.all.forwarding": "1"} if host.dual_stack else {})})
        self._build_mount_namespace(state, host)
        self._write_sshd_config(host)
        self._firewall(host)
        self._boot(state, host)

    def _firewall(self, host: Host) -> None:
        """The host's own firewall, per its profile (as at every boot): see :func:`firewall_rules`."""
        lines = firewall_rules(host)
        if lines:
            run(self.in_netns(host.netns, ["sh", "-ec", "\n".join(lines)]))

    def _build_mount_namespace(self, state: LabState, host: Host) -> None:
        directory = self.host_dir(host)
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / "etc-wireguard").mkdir(mode=0o700, exist_ok=True)
        handle = self.mount_handle(host)
        handle.touch(mode=0o600)
        run(["unshare", f"--mount={handle}", "--propagation", "private", "true"])
        state.record("mounts", str(handle))
        state.update_host(host.name, mntns=list(ns_inode(handle) or ()))
        # Its own hostname too (shell prompts, logs), in a UTS namespace kept by a handle like the mount namespace.
        uts = self.uts_handle(host)
        uts.touch(mode=0o600)
        run(["unshare", f"--uts={uts}", "hostname", host.name])
        state.record("mounts", str(uts))
        etc_wireguard = directory / "etc-wireguard"
        # Its own root home directory too (no workstation dotfiles in SSH sessions), unless the state lives under /root.
        home: Path | None = None
        if not self.state_dir.resolve().is_relative_to("/root"):
            home = directory / "root-home"
            home.mkdir(mode=0o700, exist_ok=True)
        passwd: Path | None = None
        if host.harsh:
            if home is not None:
                # A noisy profile, as real hosts have: a greeting on stdout and stderr from every file a shell may read.
                noise = f'echo "welcome to {host.name} ({host.profile.name}): noisy profile"\necho "{host.name}: and on stderr" >&2\n'
                for name in (".profile", ".bashrc", ".bash_profile"):
                    write_private(home / name, noise)
            if host.profile.shell != "bash":
                # Root's login shell, as sshd reads it from /etc/passwd in the host's mount namespace.
                shell = which(host.profile.shell) or f"/bin/{host.profile.shell}"
                entries = Path("/etc/passwd").read_text().splitlines()
                entries = [":".join([*line.split(":")[:6], shell]) if line.startswith("root:") else line for line in entries]
                passwd = directory / "passwd"
                passwd.write_text("\n".join(entries) + "\n")
                passwd.chmod(0o644)
        lines = [
            "set -e",
            *([f"mount --bind {shlex.quote(str(passwd))} /etc/passwd"] if passwd else []),
            # Copies of other hosts' handles and of /run/netns would keep those namespaces alive: drop them here.
            f"umount -l {shlex.quote(str(self.ns_dir))} 2>/dev/null || true",
            "umount -l /run/netns 2>/dev/null || true",
            f"mount --bind {shlex.quote(str(etc_wireguard))} /etc/wireguard",
            *([f"mount --bind {shlex.quote(str(home))} /root"] if home else []),
            "umount -l /sys 2>/dev/null || true",
            "mount -t sysfs sysfs /sys",
        ]
        script = "\n".join(lines) + "\n"
        run(self.in_host(host, ["sh", "-c", script]))
        self._fresh_run(host)

    def _fresh_run(self, host: Host) -> None:
        """A new empty ``/run`` for the host (at build and at every boot), with sshd's privilege-separation directory."""
        script = (
            "set -e\n"
            # The marker tells our tmpfs from the real /run (at build time): only ours is replaced.
            "if [ -e /run/.wgmesh-lab ]; then umount -l /run; fi\n"
            "mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run\n"
            "touch /run/.wgmesh-lab\n"
            "mkdir -m 0755 /run/sshd\n"
        )
        run(self.in_host(host, ["sh", "-c", script]))

    def _write_sshd_config(self, host: Host) -> None:
        directory = self.host_dir(host)
        key = directory / "ssh_host_ed25519_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{host.name}.lab", "-f", str(key)])
        os.chmod(key.with_name(key.name + ".pub"), 0o600)
        config = f"""# sshd of lab host {host.name} (generated by `wgmesh lab up`)
Port {topology.SSH_PORT}
ListenAddress {host.address}
HostKey {key}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {self.state_dir / "authorized_keys"}
AllowUsers root
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PubkeyAcceptedAlgorithms ssh-ed25519
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitEmptyPasswords no
UsePAM no
# Off: a --state DIR under /tmp (1777) would fail its path check; every lab file is 0600 in a 0700 directory.
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PermitTunnel no
MaxStartups 200:30:400
MaxSessions 50
LoginGraceTime 60
"""
        write_private(directory / "sshd_config", config)

    def _sshd_pid(self, host: Host) -> int | None:
        """The pid of the host's running sshd (its pid file, and the process still in the host's namespace)."""
        try:
            pid = int((self.host_dir(host) / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        inode = ns_inode(self.netns_path(host.netns))
        return pid if inode is not None and ns_inode(f"/proc/{pid}/ns/net") == inode else None

    def _start_sshd(self, host: Host) -> int:
        directory = self.host_dir(host)
        (directory / "sshd.pid").unlink(missing_ok=True)
        sshd = which("sshd") or "/usr/sbin/sshd"
        config = str(directory / "sshd_config")
        log = str(directory / "sshd.log")
        result = run(self.in_host(host, [sshd, "-f", config, "-E", log]), check=False)
        if result.returncode != 0 or not wait_until(lambda: self._sshd_pid(host) is not None, 5.0, 0.02):
            tail = ""
            with contextlib.suppress(OSError):
                tail = " | ".join(Path(log).read_text().strip().splitlines()[-3:])
            raise LabError(f"sshd of {host.name} did not start: {(result.stderr or '').strip()} {tail}".strip())
        os.chmod(directory / "sshd.pid", 0o600)
        return self._sshd_pid(host) or 0

    def _boot(self, state: LabState, host: Host) -> list[str]:
        """What the host does at boot: sshd, then ``wg-quick up`` for each config (systemd's enabled wg-quick@)."""
        pid = self._start_sshd(host)
        state.update_host(host.name, sshd_pid=pid)
        started = []
        for conf in sorted((self.host_dir(host) / "etc-wireguard").glob("*.conf")):
            interface = conf.stem
            if not 1 <= len(interface) <= 15 or not all(ch.isalnum() or ch in "_=+.-" for ch in interface):
                continue
            result = run(self.in_host(host, ["wg-quick", "up", interface]), check=False, timeout=WG_QUICK_TIMEOUT)
            if result.returncode != 0:
                raise LabError(f"{host.name}: `wg-quick up {interface}` failed at boot: {result.stderr.strip()[-500:]}")
            started.append(interface)
        return started

    def _wait_ssh(self, hosts: Iterable[Host], timeout: float = SSH_READY_TIMEOUT) -> None:
        """Until every host's sshd answers from the root namespace (through the NAT port-forward where there is one)."""
        pending = list(hosts)
        deadline = time.monotonic() + timeout
        while pending:
            with ThreadPoolExecutor(max_workers=min(32, len(pending))) as pool:
                banners = list(pool.map(lambda host: tcp_banner(host.ssh_host, topology.SSH_PORT), pending))
            pending = [host for host, banner in zip(pending, banners, strict=True) if not (banner or "").startswith("SSH-")]
            if pending and time.monotonic() >= deadline:
                names = ", ".join(host.name for host in pending)
                raise LabError(f"sshd of {names} not reachable from the root namespace within {timeout:.0f}s")
            if pending:
                time.sleep(0.1)

    # ---------------------------------------------------------------------------------------------------- down
    def down(self) -> dict[str, int]:
        """Remove everything the state file lists (idempotent); what was removed, by kind."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root to remove namespaces and mounts: run it with sudo")
        state = self.state()
        if state is None:
            return {}
        removed = {"processes": 0, "netns": 0, "links": 0, "mounts": 0, "files": 0}
        namespaces = {inode for name in state.made("netns") if (inode := ns_inode(self.netns_path(name)))}
        for host in state.data.get("hosts", {}).values():
            if host.get("mntns"):
                namespaces.add(tuple(host["mntns"]))
        removed["processes"] = kill_processes_in(namespaces)
        for link in reversed(state.made("links")):
            if run(["ip", "link", "show", link], check=False).returncode == 0:
                run(["ip", "link", "delete", link], check=False)
                removed["links"] += 1
            state.forget("links", link)
        for mount in reversed(state.made("mounts")):
            if _is_mountpoint(mount):
                if run(["umount", mount], check=False).returncode != 0:
                    run(["umount", "-l", mount], check=False)
                removed["mounts"] += 1
            state.forget("mounts", mount)
        for netns in reversed(state.made("netns")):
            if os.path.exists(self.netns_path(netns)):
                run(["ip", "netns", "delete", netns], check=False)
                removed["netns"] += 1
            state.forget("netns", netns)
        for directory in reversed(state.made("dirs")):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
            state.forget("dirs", directory)
        leftover = [kind for kind in ("links", "mounts", "netns") if state.made(kind)]
        if leftover:
            raise LabError(f"lab down could not remove every {', '.join(leftover)}: see {self.state_path}")
        shutil.rmtree(self.hosts_dir, ignore_errors=True)
        shutil.rmtree(self.ns_dir, ignore_errors=True)
        for path in state.made("files"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed["files"] += 1
            state.forget("files", path)
        for path in state.made("trees"):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed["files"] += 1
            state.forget("trees", path)
        self.state_path.unlink(missing_ok=True)
        if state.data.get("made_state_dir"):
            with contextlib.suppress(OSError):  # left in place (and said by `lab down`) if something else was put there
                self.state_dir.rmdir()
        return removed

    # -------------------------------------------------------------------------------------------------- status
    def status(self) -> list[HostStatus]:
        hosts = list(self.hosts().values())

        def one(host: Host) -> HostStatus:
            interfaces: list[str] = []
            if os.path.exists(self.netns_path(host.netns)) and _is_mountpoint(str(self.mount_handle(host))):
                shown = run(self.in_host(host, ["wg", "show", "interfaces"]), check=False, timeout=10)
                interfaces = shown.stdout.split() if shown.returncode == 0 else []
            banner = tcp_banner(host.ssh_host, topology.SSH_PORT)
            return HostStatus(
                name=host.name,
                ssh_host=host.ssh_host,
                endpoint=host.endpoint,
                lan_subnet=host.lan_subnet,
                sshd_pid=self._sshd_pid(host),
                ssh_ok=(banner or "").startswith("SSH-"),
                wg_interfaces=interfaces,
            )

        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            return list(pool.map(one, hosts))

    # ---------------------------------------------------------------------------------------------------- exec
    def exec_argv(self, target: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` in a host (network + mount namespace) or another lab namespace."""
        hosts = self.hosts()
        try:
            host, netns = topology.target_namespace(hosts, target)
        except KeyError as exc:
            raise LabError(exc.args[0]) from None
        if not os.path.exists(self.netns_path(netns)):
            raise LabError(f"namespace {netns} does not exist (is the lab up?)")
        if host is not None:
            return self.in_host(host, argv)
        return ["ip", "netns", "exec", netns, *argv]

    def exec(self, target: str, argv: Sequence[str], *, timeout: float | None = None) -> int:
        """Run ``argv`` in ``target`` with our stdin/stdout/stderr; its exit code."""
        command = self.exec_argv(target, argv or ["bash", "-l"])
        check_prerequisites(("ip", "nsenter"))
        try:
            return subprocess.run(command, env=tool_env(), timeout=timeout).returncode
        except FileNotFoundError as exc:
            raise LabError(f"{exc.filename}: not found") from None

    # -------------------------------------------------------------------------------------------------- reboot
    def reboot(self, name: str, *, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> dict[str, Any]:
        """Power-cycle a host: kill its processes, drop its runtime state, then boot it (sshd, wg-quick up).

        Its interfaces being up is not its tunnels working: until a new handshake, the other peers keep encrypting
        for the session the reboot destroyed, and traffic through the host fails for seconds. So the reboot waits
        (``handshake_timeout``, 0 for not at all) for a handshake with every peer, prodding each one it can dial
        with a ping, and reports who has none yet (``handshakes``).
        """
        check_prerequisites()
        state = self.state()
        host = self.host(name)
        assert state is not None
        namespaces = {inode for inode in (ns_inode(self.netns_path(host.netns)), ns_inode(self.mount_handle(host))) if inode}
        if len(namespaces) != 2:
            raise LabError(f"{host.name}: its namespaces are gone (was the lab taken down?)")
        killed = kill_processes_in(namespaces)
        links = json.loads(run(["ip", "-n", host.netns, "-j", "link", "show"]).stdout or "[]")
        deleted = [link["ifname"] for link in links if link["ifname"] not in topology.HOST_BASE_LINKS]
        for link in deleted:
            run(["ip", "-n", host.netns, "link", "delete", link], check=False)
        # A booted kernel has empty firewall tables and only the default routing rules.
        flush = []
        for tool in ("iptables", "ip6tables"):
            if which(tool):
                for table in ("filter", "nat", "mangle", "raw"):
                    flush.append(f"{tool} -w 5 -t {table} -F 2>/dev/null; {tool} -w 5 -t {table} -X 2>/dev/null")
                flush.append(f"for c in INPUT FORWARD OUTPUT; do {tool} -w 5 -P $c ACCEPT 2>/dev/null; done")
        if which("nft"):
            flush.append("nft flush ruleset 2>/dev/null")
        flush.append("ip -4 rule flush && ip -4 rule add pref 32766 table main && ip -4 rule add pref 32767 table default")
        flush.append("ip -6 rule flush 2>/dev/null && ip -6 rule add pref 32766 table main 2>/dev/null")
        run(self.in_netns(host.netns, ["sh", "-c", "; ".join(flush) + "; true"]))
        self._firewall(host)  # the host's own firewall comes back at boot
        self._fresh_run(host)
        interfaces = self._boot(state, host)
        self._wait_ssh([host])
        booted = time.monotonic()
        handshakes = self.wait_for_handshakes(host, interfaces, handshake_timeout) if handshake_timeout > 0 else None
        if handshakes is not None:
            handshakes["seconds"] = round(time.monotonic() - booted, 1)
        return {"host": host.name, "killed": killed, "deleted_links": deleted, "wg_up": interfaces, "handshakes": handshakes}

    def wait_for_handshakes(self, host: Host, interfaces: Sequence[str], timeout: float) -> dict[str, Any]:
        """Start a handshake with every peer ``host`` can dial and wait (bounded) for them; who is still without one.

        ``missing``: peers with an endpoint and no handshake after ``timeout`` (each is prodded with one ping to its
        tunnel address: any packet for a peer starts a handshake). ``no_endpoint``: peers without one (behind NAT),
        not waited for: the host cannot reach them, and their keepalives, sent on the session the reboot destroyed,
        start no new one; such a peer comes back when it next sends traffic (WireGuard retries about 15 s after an
        unanswered packet). Peers are named after the lab host behind their endpoint or LAN.
        """
        hosts = list(self.hosts().values())
        deadline = time.monotonic() + timeout
        prodded = 0.0
        while True:
            pending: list[tuple[str, str, str]] = []  # (label, endpoint, tunnel address)
            for interface in interfaces:
                dump = run(self.in_host(host, ["wg", "show", interface, "dump"]), check=False, timeout=COMMAND_TIMEOUT).stdout
                for line in dump.splitlines()[1:]:  # the first line is the interface's own
                    fields = line.split("\t")
                    if len(fields) < 5 or fields[4] != "0":
                        continue
                    endpoint, allowed = fields[2], fields[3].split(",")
                    address = next((item.split("/")[0] for item in allowed if item.endswith(("/32", "/128"))), "")
                    pending.append((_peer_label(hosts, interface, endpoint, allowed), endpoint, address))
            dialable = [(label, address) for label, endpoint, address in pending if endpoint != "(none)" and address]
            now = time.monotonic()
            if not dialable or now >= deadline:
                return {
                    "missing": sorted(label for label, _ in dialable),
                    "no_endpoint": sorted(label for label, endpoint, _ in pending if endpoint == "(none)"),
                }
            if now - prodded >= 1.0:
                pings = " ".join(f"ping -n -c 1 -W 1 {shlex.quote(address)} >/dev/null 2>&1 &" for _, address in dialable)
                run(self.in_host(host, ["sh", "-c", f"{pings} wait"]), check=False, timeout=COMMAND_TIMEOUT)
                prodded = now
            time.sleep(0.2)


def _peer_label(hosts: Sequence[Host], interface: str, endpoint: str, allowed: Sequence[str]) -> str:
    """The lab host a WireGuard peer is: the one behind its endpoint, else the one whose LAN it routes."""
    address = endpoint.rpartition(":")[0].strip("[]")
    for host in hosts:
        if address == host.public_address or host.lan_subnet in allowed:
            return host.name
    return f"{interface} peer {allowed[0]}"


def _is_mountpoint(path: str) -> bool:
    """Whether ``path`` is a mount point in our mount namespace (from /proc/self/mountinfo: works for nsfs handles)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == path:
                    return True
    except OSError:
        return False
    return False


def firewall_rules(host: Host) -> list[str]:
    """The commands that give a harsh host its profile's firewall, for IPv4 and IPv6 alike.

    ``ufw``: INPUT and FORWARD policy DROP; loopback, established traffic, ping (ICMPv6 too, neighbour discovery
    needs it) and SSH allowed, like ufw's defaults with ``ufw allow ssh``. ``firewalld``: the same accepts, then a
    final ``REJECT`` in INPUT and FORWARD, like firewalld's public zone or Oracle's cloud images. Nothing else
    is open: not WireGuard's port, not forwarding.
    """
    kind = host.profile.firewall
    if kind == "none":
        return []
    lines = []
    for binary, icmp, reject in (
        ("iptables", "-p icmp --icmp-type echo-request", "icmp-host-prohibited"),
        ("ip6tables", "-p ipv6-icmp", "icmp6-adm-prohibited"),
    ):
        for chain in ("INPUT", "FORWARD"):
            lines.append(f"{binary} -w 5 -A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        lines.append(f"{binary} -w 5 -A INPUT -i lo -j ACCEPT")
        lines.append(f"{binary} -w 5 -A INPUT {icmp} -j ACCEPT")
        lines.append(f"{binary} -w 5 -A INPUT -p tcp --dport {topology.SSH_PORT} -j ACCEPT")
        if kind == "ufw":
            lines += [f"{binary} -w 5 -P INPUT DROP", f"{binary} -w 5 -P FORWARD DROP"]
        else:
            lines += [f"{binary} -w 5 -A {chain} -j REJECT --reject-with {reject}" for chain in ("INPUT", "FORWARD")]
    return lines
