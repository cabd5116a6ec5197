"""The network-namespace lab (``lab/``, ``wgmesh lab``).

* a lab's whole life: up (3 hosts, the last behind NAT) leaves only the 198.51.100.0/24 route in the root
  namespace; down leaves no ``wgl-*`` namespace, veth, mount or process and is idempotent;
* on a shared lab: sshd answers from the root namespace with the lab key only (also through the NAT router's
  port-forward), LAN clients reach their host, hosts reach each other over the internet bridge, the NAT host
  reaches out but nobody reaches in, each host has its own ``/etc/wireguard``, ``/run`` and hostname, and a
  reboot brings an installed ``wg0`` back with new processes;
* the stack file ``Pulumi.lab.yaml`` validates with the program's own stack-config parser;
* CLI errors (not root, tools missing, no lab up) are one line and exit 1, without a traceback.

Network rule: nothing leaves the namespaces the lab makes (the root namespace only talks to 198.51.100.0/24 on
the lab's own veth). Every wait is bounded; every lab is taken down in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_lab
from wgmesh.cli.main import main
from wgmesh.lab import Lab, LabBusy, LabError, topology
from wgmesh.lab.core import ns_inode, processes_in

pytestmark = pytest.mark.lab

SSH_BASE = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
SSH_BASE += ["-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]


def ssh(
    lab: Lab, host: str, script: str, *, key: Path | None = None, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as root on a lab host over SSH from the root namespace (like the Pulumi program does)."""
    argv = ["ssh", "-i", str(key or lab.key_path), *SSH_BASE, f"root@{lab.host(host).ssh_host}", script]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


def quiet(stdout: str) -> str:
    """SSH output without the greeting the harsh hosts' noisy profiles print (see docs/lab.md)."""
    return "\n".join(line for line in stdout.splitlines() if not line.startswith("welcome to "))


def host_processes(lab: Lab, name: str) -> list[int]:
    """Pids of the processes in a host's network or mount namespace."""
    host = lab.host(name)
    return processes_in({ns_inode(lab.netns_path(host.netns)), ns_inode(lab.mount_handle(host))} - {None})


def in_ns(lab: Lab, target: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.exec_argv(target, argv), capture_output=True, text=True, timeout=timeout)


LAB_WAIT = 600.0  # other processes (benchmarks, other test runs) may hold the machine's one lab: take turns


def up_or_skip(lab: Lab, peers: int, *, nat_peer: bool = False) -> list[topology.Host]:
    """``lab.up``, waiting (bounded) while another lab holds the machine; skip if it never frees up."""
    try:
        return lab.up(peers, nat_peer=nat_peer, wait=LAB_WAIT)
    except LabBusy as exc:
        pytest.skip(f"another lab held this machine for {LAB_WAIT:.0f}s: {exc}")


def named_netns() -> list[str]:
    """Names in /run/netns (none before the first ``ip netns add`` on a fresh machine)."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def wait_for_free_machine() -> None:
    deadline = time.monotonic() + LAB_WAIT
    while [name for name in named_netns() if name.startswith(topology.PREFIX)] or os.path.exists("/sys/class/net/wgl-root"):
        if time.monotonic() > deadline:
            pytest.skip(f"another lab held this machine for {LAB_WAIT:.0f}s")
        time.sleep(1)


def is_lab_line(line: str) -> bool:
    return "198.51.100." in line or topology.PREFIX in line


def root_snapshot() -> dict[str, Any]:
    """What the lab may change in the root namespace: routes (every table, both families), rules, links, namespaces.

    Other processes on the machine create namespaces and links of their own meanwhile, so the lab's are told apart
    by name (``wgl-*``) and routes by prefix (198.51.100.0/24); the rest must stay exactly as it was.
    """

    def lines(*argv: str) -> list[str]:
        return sorted(subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout.splitlines())

    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=10, check=True).stdout)
    return {
        "routes4": lines("ip", "-4", "route", "show", "table", "all"),
        "routes6": lines("ip", "-6", "route", "show", "table", "all"),
        "rules": lines("ip", "rule", "show"),
        "lab_links": sorted(link["ifname"] for link in links if link["ifname"].startswith(topology.PREFIX)),
        "lab_netns": [name for name in named_netns() if name.startswith(topology.PREFIX)],
    }


def lab_processes(state_dir: Path) -> list[str]:
    """Command lines of live processes that mention the lab's state directory (sshd -f <state>/...)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(state_dir) in cmdline:
                found.append(cmdline)
    return found


def assert_nothing_left(lab: Lab, namespaces: set[tuple[int, int]]) -> None:
    """No namespace, process, veth or mount of this lab remains (another lab may have started since: other inodes)."""
    assert not processes_in(namespaces), "processes of the lab survived"
    for name in named_netns():
        assert ns_inode(f"/run/netns/{name}") not in namespaces, f"namespace {name} of the lab survived"
    assert not lab_processes(lab.state_dir)
    assert str(lab.state_dir) not in Path("/proc/self/mountinfo").read_text()


# --------------------------------------------------------------------------------------------- whole life cycle
# Two labs cannot be up at once (same namespaces and addresses): each test here waits for its turn, and the shared
# lab below is created lazily by the first test that needs it.


def test_up_then_down_leaves_only_the_lab_route_and_then_nothing(tmp_path: Path) -> None:
    require_lab()
    wait_for_free_machine()
    before = root_snapshot()
    state_dir = tmp_path / "state"
    lab = Lab(state_dir)
    namespaces: set[tuple[int, int]] = set()
    try:
        started = time.monotonic()
        hosts = up_or_skip(lab, 3, nat_peer=True)
        assert time.monotonic() - started < LAB_WAIT + 60
        assert [host.name for host in hosts] == ["h1", "h2", "h3"]
        during = root_snapshot()
        expected_netns = {"wgl-inet", *(ns for host in hosts for ns in host.namespaces)}
        assert set(during["lab_netns"]) == expected_netns and during["lab_links"] == ["wgl-root"]
        namespaces = {ns_inode(f"/run/netns/{name}") for name in expected_netns} - {None}  # type: ignore[assignment]
        # The main table gained exactly the connected 198.51.100.0/24 route, the local table only wgl-root's own
        # entries; nothing else changed (no IPv6 route, no rule).
        main4 = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        assert [line for line in main4 if is_lab_line(line)] == ["198.51.100.0/24 dev wgl-root proto kernel scope link src 198.51.100.1 "]
        assert all("dev wgl-root" in line for line in during["routes4"] if is_lab_line(line))
        assert [line for line in during["routes4"] if not is_lab_line(line)] == [
            line for line in before["routes4"] if not is_lab_line(line)
        ]
        assert during["routes6"] == before["routes6"] and during["rules"] == before["rules"]
        assert lab_processes(state_dir), "sshd processes should run while the lab is up"
        # Secrets and state: 0600 files in a 0700 directory.
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        for path in [
            lab.key_path,
            lab.state_path,
            lab.stack_path,
            *lab.hosts_dir.glob("*/ssh_host_ed25519_key*"),
            *lab.hosts_dir.glob("*/sshd*"),
        ]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        removed = lab.down()
    assert removed["netns"] == 3 * 2 + 1 + 1  # hosts, LANs, the internet, the NAT router
    assert removed["links"] == 1 and removed["mounts"] == 1 + 2 * 3  # the handles' private mount, mnt + uts per host
    assert_nothing_left(lab, namespaces)
    after = root_snapshot()
    if not after["lab_netns"]:  # unless another lab started right away: then the routes are its own
        assert after["lab_links"] == [] and after["routes4"] == before["routes4"]
    assert after["routes6"] == before["routes6"] and after["rules"] == before["rules"]
    assert removed["files"] == 4  # stack file, key pair, authorized_keys
    assert not state_dir.exists(), "up made the state directory: down removes it, key and stack file included"
    # Idempotent, and quiet when there is nothing.
    assert lab.down() == {}
    assert main(["lab", "down", "--state", str(state_dir)]) == 0


def test_lab_down_leaves_nothing_up_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`lab up` then `lab down` from a checkout's root: no stack file in the root, no state directory, no key.

    The deploy's engine workspace (its state, kept beside the lab) goes too; a state directory that existed before
    ``up`` stays, holding only what was there before.
    """
    require_lab()
    wait_for_free_machine()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Pulumi.yaml").write_text("name: wgmesh\n")
    assert main(["lab", "up", "--peers", "1", "--wait", str(LAB_WAIT)]) == 0
    try:
        assert "stack file: " + str(tmp_path / "lab-state" / "Pulumi.lab.yaml") in capsys.readouterr().out
        assert not (tmp_path / "Pulumi.lab.yaml").exists(), "the generated stack file stays out of the root"
        from wgmesh.lab.deploy import ENGINE_DIR

        workspace = Lab("lab-state").state_dir / ENGINE_DIR
        (workspace / "backend").mkdir(parents=True)
        (workspace / "backend" / "lab.json").write_text("{}")
        Lab("lab-state").keep_dir(workspace)
    finally:
        assert main(["lab", "down"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"lab down: removed .*, 5 files in", out) and f"removed {tmp_path / 'lab-state'}" in out, out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Pulumi.yaml"]

    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["lab", "up", "--peers", "1", "--state", str(kept), "--wait", str(LAB_WAIT)]) == 0
    assert main(["lab", "down", "--state", str(kept)]) == 0
    assert f"kept {kept}: it was there before `lab up` (notes.txt)" in capsys.readouterr().out
    assert sorted(path.name for path in kept.iterdir()) == ["notes.txt"]


def test_down_never_touches_what_it_did_not_make(tmp_path: Path) -> None:
    """An unrelated ``wgl-*`` namespace makes ``up`` refuse to start, and survives ``down``."""
    require_lab()
    wait_for_free_machine()
    stray = "wgl-h2-lan"
    if subprocess.run(["ip", "netns", "add", stray], capture_output=True, timeout=10).returncode != 0:
        pytest.skip("another lab took the machine meanwhile")
    lab = Lab(tmp_path / "state")
    try:
        with pytest.raises(LabBusy, match="exist already"):
            lab.up(2)
        assert lab.down() == {}
        assert os.path.exists(f"/run/netns/{stray}")
    finally:
        subprocess.run(["ip", "netns", "delete", stray], timeout=10)
        lab.down()


def test_a_failed_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd of h2 cannot start (a broken config): ``up`` fails with sshd's reason and leaves nothing behind."""
    require_lab()
    lab = Lab(tmp_path / "state")
    write = Lab._write_sshd_config
    made: set[tuple[int, int]] = set()

    def broken(self: Lab, host: topology.Host) -> None:
        write(self, host)
        made.update(ns_inode(f"/run/netns/{name}") for name in host.namespaces)  # type: ignore[misc]
        if host.name == "h2":
            with (self.host_dir(host) / "sshd_config").open("a") as config:
                config.write("NoSuchOption yes\n")

    monkeypatch.setattr(Lab, "_write_sshd_config", broken)
    try:
        with pytest.raises(LabError, match=r"sshd of h2 did not start.*NoSuchOption"):
            up_or_skip(lab, 3, nat_peer=True)
        assert made and not lab.state_path.exists()
        assert_nothing_left(lab, made - {None})  # type: ignore[operator]
    finally:
        lab.down()


# ------------------------------------------------------------------------------------------------ shared lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Three hosts, h3 behind NAT; taken down after the module even when a test fails."""
    require_lab()
    shared = Lab(tmp_path_factory.mktemp("lab") / "state")
    try:
        up_or_skip(shared, 3, nat_peer=True)
        yield shared
    finally:
        shared.down()


def test_sshd_reachable_with_the_lab_key_on_every_host(lab: Lab) -> None:
    for name in ("h1", "h2", "h3"):
        host = lab.host(name)
        result = ssh(lab, name, f"hostname; id -u; cat /proc/sys/net/ipv4/ip_forward; ip -4 -o addr show dev {host.uplink}")
        assert result.returncode == 0, result.stderr
        hostname, uid, forwarding, address = quiet(result.stdout).splitlines()
        assert (hostname, uid, forwarding) == (name, "0", "1")
        assert lab.host(name).address + "/24" in address


def test_sshd_refuses_any_other_key(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=10)
    result = ssh(lab, "h1", "true", key=other)
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_lan_client_reaches_its_host_and_hosts_reach_each_other(lab: Lab) -> None:
    for host in lab.hosts().values():
        lan = in_ns(lab, f"{host.name}-lan", "ping", "-c", "1", "-W", "2", host.lan_gateway)
        assert lan.returncode == 0, lan.stdout + lan.stderr
    # Public hosts see each other on the internet bridge; the NAT host reaches out through its router.
    for source, target in (("h1", "198.51.100.12"), ("h2", "198.51.100.11"), ("h3", "198.51.100.11"), ("h3", "198.51.100.12")):
        result = in_ns(lab, source, "ping", "-c", "1", "-W", "2", target)
        assert result.returncode == 0, f"{source} -> {target}: {result.stdout}{result.stderr}"
    # Nobody reaches the NAT host's private address, nor another host's LAN (that is the mesh's job).
    assert in_ns(lab, "h1", "ping", "-c", "1", "-W", "1", "100.64.3.2").returncode != 0
    assert in_ns(lab, "h1", "ping", "-c", "1", "-W", "1", "10.201.2.10").returncode != 0


def test_nat_host_is_masqueraded_and_has_no_inbound_path_but_ssh(lab: Lab) -> None:
    seen = ssh(lab, "h3", "echo $SSH_CONNECTION")
    assert seen.returncode == 0 and quiet(seen.stdout).split()[2] == "100.64.3.2"
    rules = in_ns(lab, "h3-nat", "iptables", "-w", "5", "-t", "nat", "-S")
    assert "-j MASQUERADE" in rules.stdout
    assert [line for line in rules.stdout.splitlines() if "DNAT" in line] == [
        "-A PREROUTING -d 198.51.100.13/32 -p tcp -m tcp --dport 22 -j DNAT --to-destination 100.64.3.2:22"
    ]


def test_each_host_has_its_own_wireguard_dirs_run_and_hostname(lab: Lab) -> None:
    assert ssh(lab, "h1", "umask 077; echo h1-only > /etc/wireguard/probe; touch /run/probe").returncode == 0
    assert (lab.host_dir(lab.host("h1")) / "etc-wireguard" / "probe").read_text() == "h1-only\n"
    assert not (lab.host_dir(lab.host("h2")) / "etc-wireguard" / "probe").exists()
    assert not Path("/etc/wireguard/probe").exists() and not Path("/run/probe").exists()
    other = ssh(lab, "h2", "ls /etc/wireguard; ls /run; test -e /run/systemd/system && echo systemd; hostname")
    assert quiet(other.stdout).split() == ["sshd", "h2"]
    listing = in_ns(lab, "h1", "ls", "/sys/class/net")
    h1 = lab.host("h1")
    assert sorted(listing.stdout.split()) == sorted([h1.uplink, h1.lan_if, "lo"]) == ["ens5", "ens6", "lo"]
    assert ssh(lab, "h1", "rm -f /etc/wireguard/probe /run/probe").returncode == 0


def test_reboot_brings_an_installed_wg0_back_and_waits_for_its_handshakes(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {
        name: subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        for name in ("h1", "h2")
    }
    public = {
        name: subprocess.run(["wg", "pubkey"], input=key + "\n", capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        for name, key in keys.items()
    }
    tunnel = {"h1": "10.255.0.1", "h2": "10.255.0.2"}
    try:
        for name, other in (("h1", "h2"), ("h2", "h1")):
            # The harsh hosts' firewalls drop WireGuard's port unless the config opens it (wgmesh's own configs do).
            opened = "iptables -w 5 -I INPUT 1 -p udp --dport 51820 -j ACCEPT"
            config = (
                f"[Interface]\nPrivateKey = {keys[name]}\nAddress = {tunnel[name]}/24\nListenPort = 51820\n"
                f"PostUp = {opened}\nPostDown = {opened.replace(' -I INPUT 1 ', ' -D INPUT ')}\n\n"
                f"[Peer]\nPublicKey = {public[other]}\nAllowedIPs = {tunnel[other]}/32\nEndpoint = {lab.host(other).public_address}:51820\n"
            )
            # The config travels on stdin, never on a command line (as the install scripts do).
            result = ssh(lab, name, "umask 077; cat > /etc/wireguard/wg0.conf && wg-quick up wg0 2>&1 | tail -1", stdin=config)
            assert result.returncode == 0, result.stdout + result.stderr
        assert ssh(lab, "h1", "ping -c 1 -W 2 10.255.0.2").returncode == 0
        # Hosts share the machine's PID namespace (pgrep on a host sees every host): look processes up by namespace.
        old = set(host_processes(lab, "h1"))
        untouched = set(host_processes(lab, "h2"))
        assert ssh(lab, "h1", "touch /run/before-reboot").returncode == 0
        started = time.monotonic()
        result = lab.reboot("h1")
        assert time.monotonic() - started < 30
        assert result["wg_up"] == ["wg0"] and result["killed"] >= 2  # sshd, wireguard-go (its wg0 went with it)
        assert not old & set(host_processes(lab, "h1")), "a reboot leaves no old process"
        assert untouched <= set(host_processes(lab, "h2")), "another host's processes survive"
        listing = ssh(lab, "h1", "ls /run; wg show interfaces")
        assert listing.returncode == 0
        assert "before-reboot" not in listing.stdout.split() and {"wireguard", "sshd", "wg0"} <= set(listing.stdout.split())
        # reboot returned after a handshake with h2: traffic flows at once, also from h2, which held the old session.
        assert result["handshakes"]["missing"] == [] and result["handshakes"]["no_endpoint"] == [], result
        assert ssh(lab, "h2", "ping -c 1 -W 1 10.255.0.1").returncode == 0, "the tunnel carries traffic when reboot returns"
        # h2 was not rebooted: its wg0 is still there.
        assert lab.status()[1].wg_interfaces == ["wg0"]
        # The CLI says so; and says when it did not wait.
        capsys.readouterr()
        assert main(["lab", "reboot", "--state", str(lab.state_dir), "h2"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"booted in [\d.]+s \(wg0\)\nhandshake with every peer it can reach [\d.]+s after boot", out), out
        assert ssh(lab, "h1", "ping -c 1 -W 1 10.255.0.2").returncode == 0
        assert main(["lab", "reboot", "--state", str(lab.state_dir), "h2", "--handshake-timeout", "0"]) == 0
        assert "not waiting for handshakes: traffic through its tunnels fails until" in capsys.readouterr().out
    finally:
        for name in ("h1", "h2"):
            ssh(lab, name, "wg-quick down wg0 >/dev/null 2>&1; rm -f /etc/wireguard/wg0.conf")


def test_reboot_of_an_unknown_host_is_a_clear_error(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "reboot", "--state", str(lab.state_dir), "h9"]) == 1
    assert "no such lab host 'h9'" in capsys.readouterr().err


def test_status_and_exec_through_the_cli(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "--state", str(lab.state_dir)]) == 0
    out = capsys.readouterr().out
    assert "198.51.100.13:22 ok" in out and "none (NAT)" in out
    assert main(["lab", "exec", "--state", str(lab.state_dir), "h2-lan", "--", "true"]) == 0
    assert main(["lab", "exec", "--state", str(lab.state_dir), "h2-lan", "--", "false"]) == 1
    assert main(["lab", "exec", "--state", str(lab.state_dir), "h7", "--", "true"]) == 1
    assert "no such lab target 'h7'" in capsys.readouterr().err


def test_stack_file_describes_the_hosts_and_validates(lab: Lab, tmp_path: Path) -> None:
    from wgmesh.mesh.stackconfig import load_stack

    document = yaml.safe_load(lab.stack_path.read_text())
    config = document["config"]
    assert config["wgmesh:sshPrivateKeyPath"] == str(lab.key_path)
    peers = config["wgmesh:mesh"]["peers"]
    assert [peer["ssh_host"] for peer in peers] == ["198.51.100.11", "198.51.100.12", "198.51.100.13"]
    assert [peer.get("endpoint") for peer in peers] == ["198.51.100.11:51820", "198.51.100.12:51820", None]
    assert all(peer["kind"] == "external" and peer["ssh_user"] == "root" for peer in peers)
    assert not any(key.endswith("_interface") for peer in peers for key in peer), "each host's interfaces are found on it"
    assert [peer["subnets"] for peer in peers] == [["10.201.1.0/24"], ["10.201.2.0/24"], ["10.201.3.0/24"]]
    spec = load_stack(config["wgmesh:mesh"])
    assert [peer.name for peer in spec.mesh.peers] == ["h1", "h2", "h3"]
    assert spec.mesh.peers[2].endpoint is None


def test_stack_yaml_of_a_nat_host(tmp_path: Path) -> None:
    """The stack document of a host behind NAT: reached over SSH through its router, no endpoint; pure, no lab needed."""
    hosts = topology.plan(2, nat_peer=True)
    text = topology.stack_yaml(hosts, Path("/k/id_ed25519"))
    config = yaml.safe_load(text)["config"]
    assert config["wgmesh:mesh"]["peers"][1]["ssh_host"] == "198.51.100.12"
    assert "endpoint" not in config["wgmesh:mesh"]["peers"][1]


# ------------------------------------------------------------------------------------------------ CLI errors


def test_cli_not_root_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "up", "--peers", "2", "--state", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the lab needs root") and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_cli_missing_tool_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import wgmesh.lab.core  # noqa: F401 (loads it)
    from wgmesh import lab

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab.core, "which", lambda tool: None if tool in ("wireguard-go", "sshd") else "/bin/" + tool)
    assert main(["lab", "up", "--peers", "2", "--state", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err == "error: the lab needs sshd, wireguard-go: apt-get install openssh-server wireguard-go\n"


def test_cli_without_a_lab(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in (["status"], ["exec", "h1", "--", "true"]):
        assert main(["lab", *argv[:1], "--state", str(tmp_path), *argv[1:]]) == 1
        assert "no lab is up" in capsys.readouterr().err
    assert main(["lab", "up", "--peers", "0", "--state", str(tmp_path)]) == 1
    assert "--peers must be between 1 and 200" in capsys.readouterr().err
