"""The lab as a wgmesh stack: ``pulumi up`` of the real program on it through the real engine, and checks made
from inside its namespaces.

:class:`LabStack` is ``pulumi up --stack lab``: the lab's ``Pulumi.lab.yaml`` config (edited the way a user edits a
stack config: peers added or removed, ``key_version`` bumped, a hook added) goes to the Pulumi engine through the
Automation API (:mod:`wgmesh.lab.engine`), which runs the program and its providers: every ``remote.Command`` the program
declares (install, verify) really runs over SSH on the lab hosts, with the engine's own diffing, ordering, deletes
and state. The stack's workspace (backend, state, passphrase) lives in ``<lab state>/engine`` and goes with the lab.

The checks (:func:`ping`, :func:`all_pairs`, :class:`Pinger`, :func:`wg_show`) run ``ping`` and ``wg`` inside the
lab's namespaces through ``nsenter``: what a user of the servers would see, independent of the program's own
verification. Every wait is bounded.

Used by ``wgmesh demo``, ``bench/`` and the end-to-end tests. Needs root (the lab does).
"""

from __future__ import annotations

import contextlib
import copy
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgmesh.lab.core import Lab, LabError, ns_inode, processes_in, tool_env
from wgmesh.lab.core import run as run_command
from wgmesh.lab.engine import Operation, Workspace, summary_text

ENGINE_DIR = "engine"


def stack_config(path: Path) -> dict[str, Any]:
    """The ``config:`` map of a ``Pulumi.<stack>.yaml`` file."""
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["config"]


PING_TIMEOUT = 1.0
IN_FLIGHT_WINDOW = 0.25


@dataclass
class UpResult:
    """One ``pulumi up``: how long it took, what the engine did to each resource (by name), the stack outputs, Pulumi's
    own summary, and the failure if any (``failures``: resource name -> the engine's error for it)."""

    seconds: float
    actions: dict[str, list[str]]
    exports: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    stdout: str = ""
    changes: dict[str, int] = field(default_factory=dict)  # Pulumi's own counts: {"create": 21, "same": 3}

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def verification(self) -> dict[str, Any]:
        """Each peer's verify result (``{"ok": ..., "peers": {...}}``), as the stack exports it."""
        return dict(self.exports.get("verification") or {})

    @classmethod
    def of(cls, operation: Operation) -> UpResult:
        return cls(
            seconds=operation.seconds,
            actions=operation.actions,
            exports=operation.outputs,
            error=None if operation.ok else (operation.error or "failed"),
            failures=operation.failures,
            summary=summary_text(operation),
            stdout=operation.stdout,
            changes=operation.changes,
        )


class LabStack:
    """The lab's stack: config from its ``Pulumi.lab.yaml``, deployed by the Pulumi engine (see the module doc)."""

    def __init__(self, lab: Lab, *, directory: Path | None = None, program: Callable[[], None] | None = None, parallel: int = 64) -> None:
        self.lab = lab
        self.parallel = parallel
        self.directory = directory or lab.state_dir / ENGINE_DIR
        self._forget_stale_state()
        lab.keep_dir(self.directory)  # the stack's state describes the lab's hosts: `lab down` removes it with them
        self.workspace = Workspace(self.directory, stack="lab", program=program)

    def _forget_stale_state(self) -> None:
        """A workspace older than the lab describes installs on hosts that no longer exist: start from nothing."""
        state = self.lab.state()
        started = float(state.data.get("started", 0)) if state is not None else 0.0
        with contextlib.suppress(FileNotFoundError):
            if self.directory.stat().st_mtime < started:
                shutil.rmtree(self.directory)

    @property
    def engine(self) -> str:
        """Which Pulumi CLI and which providers (official or test) ran."""
        return self.workspace.engine.describe()

    def config(
        self,
        peers: Sequence[str] | None = None,
        *,
        verify: bool = True,
        peer_settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The lab's stack config, edited: only ``peers`` (default all, in the lab's order), each peer's extra
        settings merged in (``{"h2": {"key_version": 2}}``), and ``wgmesh:verify: false`` when not ``verify``."""
        config = copy.deepcopy(stack_config(self.lab.stack_path))
        mesh = config["wgmesh:mesh"]
        known = [peer["name"] for peer in mesh["peers"]]
        wanted = list(known if peers is None else peers)
        unknown = sorted(set(wanted) - set(known) | set(peer_settings or {}) - set(known))
        if unknown:
            raise ValueError(f"no such lab host(s) {', '.join(unknown)} (hosts: {', '.join(known)})")
        mesh["peers"] = [peer | dict((peer_settings or {}).get(peer["name"], {})) for peer in mesh["peers"] if peer["name"] in wanted]
        if not verify:
            config["wgmesh:verify"] = "false"
        return config

    def up(self, config: Mapping[str, Any], **options: Any) -> UpResult:
        """One ``pulumi up`` with ``config``; never raises for a failed update (the result says what failed, like
        ``pulumi up``'s exit status and diagnostics). ``options`` go to the engine (``expect_no_changes``, ``replace``)."""
        self.workspace.set_config(config)
        return UpResult.of(self.workspace.up(parallel=self.parallel, **options))

    def preview(self, config: Mapping[str, Any], **options: Any) -> Operation:
        """``pulumi preview`` of ``config``: :attr:`Operation.actions` says what each resource would undergo."""
        self.workspace.set_config(config)
        return self.workspace.preview(parallel=self.parallel, **options)

    def destroy(self) -> UpResult:
        """``pulumi destroy``: every resource's delete (the uninstalls), in dependency order."""
        return UpResult.of(self.workspace.destroy(parallel=self.parallel))


# ------------------------------------------------------------------------------------------------------ checks


def in_lab(
    lab: Lab, target: str, argv: Sequence[str], *, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``argv`` in a lab namespace (``h1``, ``h1-lan``, ``h3-nat``, ``inet``), bounded in time; never raises on exit."""
    command = lab.exec_argv(target, argv)
    try:
        return run_command(command, stdin=stdin, timeout=timeout, check=False)
    except LabError as exc:  # it did not finish in time
        return subprocess.CompletedProcess(list(argv), 124, "", str(exc))


def ping(lab: Lab, target: str, address: str, *, count: int = 1, wait: float = PING_TIMEOUT) -> bool:
    """Whether ``address`` answers ``count`` pings sent from ``target`` (each waiting at most ``wait`` seconds);
    ``ping -6`` for an IPv6 address, so a dual-stack check can never fall back to IPv4."""
    family = ["-6"] if ":" in address else []
    argv = ["ping", *family, "-n", "-q", "-c", str(count), "-W", f"{wait:g}", "-i", "0.2", address]
    result = in_lab(lab, target, argv, timeout=count * wait + 10)
    return result.returncode == 0


def ping_until(lab: Lab, target: str, address: str, *, timeout: float) -> bool:
    """Ping once a second until ``address`` answers (a handshake may be under way) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if ping(lab, target, address):
            return True
        if time.monotonic() >= deadline:
            return False


def all_pairs(lab: Lab, pairs: Sequence[tuple[str, str]], *, timeout: float = 15, workers: int = 32) -> dict[tuple[str, str], bool]:
    """(source target, destination address) -> answered, pinging every pair in parallel until it answers or times out."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pairs)))) as pool:
        results = list(pool.map(lambda pair: ping_until(lab, pair[0], pair[1], timeout=timeout), pairs))
    return dict(zip(pairs, results, strict=True))


def tunnel_pairs(lab: Lab, names: Sequence[str], *, family: int = 4) -> list[tuple[str, str]]:
    """Every ordered pair of hosts, as (source host, destination tunnel address of IP ``family``)."""
    hosts = lab.hosts()
    address = (lambda host: host.tunnel_address) if family == 4 else (lambda host: host.tunnel_address6)
    return [(source, address(hosts[dest])) for source in names for dest in names if source != dest]


def lan_pairs(lab: Lab, names: Sequence[str], *, family: int = 4) -> list[tuple[str, str]]:
    """Every ordered pair of LANs, as (source LAN client, destination LAN client address of IP ``family``): "VPC to VPC"."""
    hosts = lab.hosts()
    address = (lambda host: host.lan_client) if family == 4 else (lambda host: host.lan_client6)
    return [(f"{source}-lan", address(hosts[dest])) for source in names for dest in names if source != dest]


@dataclass(frozen=True)
class WgPeer:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int
    keepalive: int | None
    received: int = 0
    sent: int = 0


@dataclass(frozen=True)
class WgInterface:
    """``wg show <iface> dump`` of one host, without the private and preshared keys."""

    public_key: str
    listen_port: int
    peers: dict[str, WgPeer]


def wg_show(lab: Lab, host: str, interface: str = "wg0") -> WgInterface | None:
    """The host's WireGuard interface as ``wg show dump`` reports it (secrets dropped); None when it is not up."""
    result = in_lab(lab, host, ["wg", "show", interface, "dump"], timeout=15)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    _private, public, port, _fwmark = lines[0][:4]
    peers = {}
    for fields in lines[1:]:
        key, _psk, endpoint, allowed, handshake, rx, tx, keepalive = fields[:8]
        peers[key] = WgPeer(
            public_key=key,
            endpoint=None if endpoint == "(none)" else endpoint,
            allowed_ips=tuple(sorted(allowed.split(","))) if allowed != "(none)" else (),
            latest_handshake=int(handshake),
            keepalive=None if keepalive == "off" else int(keepalive),
            received=int(rx),
            sent=int(tx),
        )
    return WgInterface(public_key=public, listen_port=int(port), peers=peers)


def wireguard_pids(lab: Lab, host: str) -> list[int]:
    """Pids of the ``wireguard-go`` processes running in a host."""
    spec = lab.host(host)
    namespaces = {inode for inode in (ns_inode(lab.netns_path(spec.netns)), ns_inode(lab.mount_handle(spec))) if inode}
    pids = []
    for pid in processes_in(namespaces):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "wireguard-go":
                pids.append(pid)
    return pids


@dataclass(frozen=True)
class PingStats:
    transmitted: int
    received: int
    in_flight: int
    # The longest run of consecutive probes without an answer, in seconds (runs x interval): how long the path was cut.
    longest_gap: float = 0.0

    @property
    def lost(self) -> int:
        """Probes that got no answer, not counting one still in flight when the pinger was stopped."""
        return self.transmitted - self.received - self.in_flight


# Probes before and after the block a Pinger watches, so that the change is covered on both sides.
PING_LEAD_IN = 0.5
PING_RUN_OUT = 1.0
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_REPLY = re.compile(r"icmp_seq=(\d+) ttl=")


class Pinger:
    """``ping -i <interval>`` from a lab namespace for as long as the ``with`` block runs; :attr:`stats` afterwards.

    The pinger starts half a second before the block and keeps going for a second after it, so the change is
    covered on both sides. It is stopped with SIGINT, which makes ping print its summary at once: a probe sent in
    the last ``IN_FLIGHT_WINDOW`` seconds may not have had its answer yet, so an unanswered one there counts as in
    flight, not as lost (it is a second after the change anyway).
    """

    def __init__(self, lab: Lab, target: str, address: str, *, interval: float = 0.05) -> None:
        self.argv = lab.exec_argv(target, ["ping", "-n", "-i", f"{interval:g}", "-W", f"{PING_TIMEOUT:g}", address])
        self.interval = interval
        self.stats: PingStats | None = None
        self.output = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start pinging (no lead-in: :meth:`__enter__` and :func:`pinging_all` add it)."""
        self._process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=tool_env())

    def stop(self) -> None:
        """Stop now and read the summary into :attr:`stats` (no run-out: the callers add it)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            self.output, _ = self._process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self.output, _ = self._process.communicate()
        match = _SUMMARY.search(self.output)
        if match is None:
            raise RuntimeError(f"ping printed no summary: {self.output[-500:]}")
        transmitted, received = int(match.group(1)), int(match.group(2))
        answered = {int(seq) for seq in _REPLY.findall(self.output)}
        # Sequence numbers start at 1; the last `tail` probes were sent within IN_FLIGHT_WINDOW of the stop.
        tail = max(1, round(IN_FLIGHT_WINDOW / self.interval))
        in_flight = sum(1 for seq in range(max(1, transmitted - tail + 1), transmitted + 1) if seq not in answered)
        run = longest = 0
        for seq in range(1, transmitted - in_flight + 1):
            run = 0 if seq in answered else run + 1
            longest = max(longest, run)
        self.stats = PingStats(transmitted, received, in_flight, round(longest * self.interval, 3))

    def __enter__(self) -> Pinger:
        self.start()
        time.sleep(PING_LEAD_IN)  # a few probes before whatever the block does
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(PING_RUN_OUT)
        self.stop()


@contextlib.contextmanager
def pinging_all(lab: Lab, pairs: Sequence[tuple[str, str]], *, interval: float = 0.05) -> Iterator[list[Pinger]]:
    """A :class:`Pinger` per (source target, destination address), sharing one lead-in and one run-out: each
    pinger's own, nested, would add up (12 pingers: 18 s of waiting per block)."""
    pingers = [Pinger(lab, source, address, interval=interval) for source, address in pairs]
    started: list[Pinger] = []
    try:
        for pinger in pingers:
            pinger.start()
            started.append(pinger)
        time.sleep(PING_LEAD_IN)
        yield pingers
        time.sleep(PING_RUN_OUT)
    finally:
        for pinger in started:
            pinger.stop()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result
