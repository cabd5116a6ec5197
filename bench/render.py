"""Validate + render full meshes of 10, 100 and 500 peers, against wg-meshconf's ``genconfig`` on the same meshes.

    python bench/render.py                 # 10, 100, 500 peers
    python bench/render.py --sizes 10 100  # fewer

Comparison (in-process, both sides, so interpreter start-up is excluded from both):

* wgmesh: ``load_mesh`` (every validation check) + ``render_all`` (configs with per-pair preshared keys and the
  NAT/forwarding PostUp/PostDown rules), then the same again plus writing one ``<peer>.conf`` per peer (plain
  0600 writes, no fsync, like wg-meshconf's writes; the CLI adds an fsync per file for durability).
* wg-meshconf (PyPI ``wg-meshconf``, the ``bench`` extra): ``DatabaseManager.genconfig`` over a CSV database of
  the same peers (same names, private keys, addresses, endpoints, ports and subnets as AllowedIPs), written
  beforehand; genconfig reads the CSV, derives public keys and writes the files. It does no validation, no
  preshared keys and no NAT rules, so wgmesh writes about 1.5 times as many bytes (its NAT rules are a fixed
  handful per file; the preshared keys are most of the difference).

Every run starts cold: wgmesh's caches are cleared and its key objects rebuilt. Figures are the best of several
runs on each side (10 and 5 up to 100 peers, 3 and 2 at 500): on a shared machine the minimum is the figure
least distorted by other load. No timed assertions: this prints figures and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wgmesh.mesh import load_mesh, render_all
from wgmesh.mesh import render as render_module
from wgmesh.mesh.keys import private_key_from_seed, public_key
from wgmesh.mesh.render import MeshKeys


def peer_name(index: int) -> str:
    return f"p{index:03d}"


def raw_mesh(size: int) -> dict[str, Any]:
    """``size`` peers, each with a public endpoint (documentation addresses) and one /24 subnet of its own."""
    return {
        "network": "10.255.0.0/22",
        "peers": [
            {
                "name": peer_name(index),
                "address": f"10.255.{index // 256}.{index % 256 + 1}" if index % 256 < 254 else None,
                "endpoint": f"203.0.113.{index % 254 + 1}:{51820 + index // 254}",
                "subnets": [f"172.{16 + index // 256}.{index % 256}.0/24"],
            }
            for index in range(size)
        ],
    }


def private_keys(size: int) -> dict[str, str]:
    return {peer_name(index): private_key_from_seed(hashlib.sha256(f"bench:{index}".encode()).digest()) for index in range(size)}


def cold_caches() -> None:
    public_key.cache_clear()
    render_module._text.cache_clear()
    render_module._forwarding_rules.cache_clear()


def wgmesh_render(raw: dict[str, Any], keys: dict[str, str]) -> dict[str, str]:
    cold_caches()
    mesh = load_mesh(raw)
    return render_all(mesh, MeshKeys(keys, b"\x07" * 32))


def write_plain(directory: Path, configs: dict[str, str]) -> None:
    for name, text in configs.items():
        fd = os.open(directory / f"{name}.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def best_of(runs: int, action: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def wg_meshconf_database(directory: Path, raw: dict[str, Any], keys: dict[str, str]) -> Any:
    from wg_meshconf.database_manager import DatabaseManager

    mesh = load_mesh(raw)
    manager = DatabaseManager(directory / "database.csv")
    peers = {
        peer.name: {
            "Address": [str(address) for address in peer.addresses],
            "Endpoint": peer.endpoint.host if peer.endpoint else None,
            "ListenPort": peer.listen_port,
            "AllowedIPs": [str(subnet) for subnet in peer.subnets],
            "PrivateKey": keys[peer.name],
        }
        for peer in mesh.peers
    }
    manager.write_database({"peers": peers})
    return manager


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.conf"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    args = parser.parse_args()
    try:
        import wg_meshconf  # noqa: F401

        have_meshconf = True
    except ImportError:
        have_meshconf = False
        print("wg-meshconf is not installed (pip install wg-meshconf, or `pip install -e '.[bench]'`): wgmesh figures only\n")

    columns = ["peers", "wgmesh validate+render", "+ write files", "wg-meshconf genconfig", "speed-up", "bytes wgmesh / wg-meshconf"]
    header = "  ".join(f"{title:>{width}}" for title, width in zip(columns, [5, 22, 13, 21, 8, 26], strict=True))
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        raw, keys = raw_mesh(size), private_keys(size)
        runs = 10 if size <= 100 else 3
        render_time, configs = best_of(runs, lambda raw=raw, keys=keys: wgmesh_render(raw, keys))
        with tempfile.TemporaryDirectory(prefix="wgmesh-bench-") as temporary:
            ours = Path(temporary) / "ours"
            ours.mkdir()
            write_time, _ = best_of(runs, lambda raw=raw, keys=keys, ours=ours: write_plain(ours, wgmesh_render(raw, keys)))
            our_bytes = directory_bytes(ours)
            row = f"{size:>5}  {render_time * 1000:>19.1f} ms  {write_time * 1000:>10.1f} ms"
            if have_meshconf:
                theirs = Path(temporary) / "theirs"
                theirs.mkdir()
                manager = wg_meshconf_database(Path(temporary), raw, keys)
                meshconf_runs = 5 if size <= 100 else 2
                with contextlib.redirect_stdout(io.StringIO()):
                    meshconf_time, _ = best_of(meshconf_runs, lambda manager=manager, theirs=theirs: manager.genconfig(None, theirs))
                ratio = meshconf_time / write_time
                row += f"  {meshconf_time * 1000:>18.1f} ms  {ratio:>7.1f}x  {our_bytes:>12,} / {directory_bytes(theirs):<11,}"
            print(row)
            shutil.rmtree(ours)
        assert len(configs) == size
    print("\nspeed-up = wg-meshconf genconfig time / wgmesh validate+render+write time (in-process, best of several runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
