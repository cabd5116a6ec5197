"""Bulk TCP through the lab: one bounded iperf3 transfer between two lab namespaces, and what it moved.

Used by ``tests/test_harsh.py`` (transfers must complete) and ``bench/throughput.py`` (figures). Traffic stays
between namespaces of the lab; every process is bounded in time and killed when it overstays.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass

from wgmesh.lab.core import Lab, tool_env

DEFAULT_BYTES = 20 * 1024 * 1024
PORT = 5201


@dataclass(frozen=True)
class Transfer:
    """One transfer: ``ok`` when every byte arrived; ``bits_per_second`` as the receiver counted it."""

    label: str
    ok: bool
    bytes: int
    seconds: float
    bits_per_second: float
    error: str = ""

    @property
    def mbit(self) -> float:
        return self.bits_per_second / 1e6


def iperf(
    lab: Lab,
    client: str,
    server: str,
    address: str,
    *,
    label: str = "",
    size: int = DEFAULT_BYTES,
    reverse: bool = False,
    timeout: float = 30.0,
    port: int = PORT,
    mss: int | None = None,
) -> Transfer:
    """``size`` bytes over TCP from ``client`` to the iperf3 server started in ``server`` at ``address`` (with
    ``reverse``, from the server to the client), within ``timeout`` seconds: a transfer that stalls (a PMTUD black
    hole) ends as not ok instead of hanging. ``mss`` sets the client's TCP MSS."""
    label = label or f"{client} -> {server}{' (reverse)' if reverse else ''}"
    listener = subprocess.Popen(
        lab.exec_argv(server, ["iperf3", "-s", "-1", "-p", str(port), "-B", address]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=tool_env(),
    )
    started = time.monotonic()
    try:
        argv = ["iperf3", "-c", address, "-p", str(port), "-n", str(size), "-J", "--connect-timeout", "3000"]
        argv += ["-R", "--rcv-timeout", str(int(timeout * 1000))] if reverse else []
        argv += ["-M", str(mss)] if mss else []
        deadline = started + timeout
        while True:
            try:
                result = subprocess.run(
                    lab.exec_argv(client, argv),
                    capture_output=True,
                    text=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                    env=tool_env(),
                )
            except subprocess.TimeoutExpired:
                return Transfer(label, False, 0, time.monotonic() - started, 0.0, f"no end within {timeout:.0f}s (stalled)")
            report = _json(result.stdout)
            error = str(report.get("error", "")) if report else (result.stderr.strip() or "no report")
            if "connect" in error.lower() and "refused" in error.lower() and time.monotonic() < deadline - 2:
                time.sleep(0.2)  # the server was not listening yet
                continue
            break
        if result.returncode != 0 or not report or error:
            return Transfer(label, False, 0, time.monotonic() - started, 0.0, error[:300])
        # iperf3 ends cleanly only once the whole transfer was sent and the receiver's report came back; the
        # receiver's count may miss the last in-flight bytes when the sender stopped the test.
        received, sent = report["end"]["sum_received"], report["end"]["sum_sent"]
        moved = max(int(received["bytes"]), int(sent["bytes"]))
        return Transfer(label, moved >= size, moved, float(received["seconds"]), float(received["bits_per_second"]))
    finally:
        if listener.poll() is None:
            listener.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            listener.wait(timeout=5)


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
