"""The CLI's local key file, and writing secret files safely.

A description may leave keys out; the CLI then generates them and must keep them, together with the mesh
secret preshared keys derive from and every allocated tunnel address (pinned, so that adding or removing a peer
never moves another one), or the next render would produce a different mesh. That state lives in one YAML file
next to the description (``<stem>.keys.yaml``, gitignored), for example::

    version: 1
    mesh_secret: 0kP...=
    peers:
      bjs:
        private_key: sL1...=
        addresses: [10.255.0.2/24]

Secret files (the key file and rendered configs) are written atomically, with mode 0600 from the moment they
exist: ``os.open`` with ``O_CREAT | O_EXCL`` and mode 0600, then ``fchmod`` (umask-proof), write, ``fsync``, and
``os.replace`` over the old file. A reader sees the old file or the new one, never a torn or 0644 one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import yaml

from wgmesh.mesh.cli import UserError
from wgmesh.mesh.keys import KEY_BYTES, decode_key, generate_mesh_secret, generate_private_key, public_key
from wgmesh.mesh.model import Mesh
from wgmesh.mesh.render import MeshKeys

KEYFILE_VERSION = 1
SECRET_MODE = 0o600


@dataclass
class KeyFile:
    """What the key file holds: the mesh secret, generated private keys and allocated addresses, per peer name."""

    mesh_secret: bytes | None = None
    private_keys: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class ResolvedKeys:
    """The keys to render with, the key file to write back, and what changed (for the user to read)."""

    keys: MeshKeys
    keyfile: KeyFile
    notes: list[str]
    external: list[str]


def default_keyfile_path(description: Path) -> Path:
    """``mesh.yaml`` keeps its keys in ``mesh.keys.yaml`` beside it (``*.keys.yaml`` is gitignored)."""
    return description.with_name(f"{description.stem}.keys.yaml")


def read_keyfile(path: Path) -> KeyFile:
    """The key file at ``path``, or an empty one if there is none; :class:`UserError` naming the field otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return KeyFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the key file ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserError(f"{where}: the key file is not valid YAML; restore it from a backup") from None
    return _parse_keyfile(path, raw)


def _parse_keyfile(path: Path, raw: Any) -> KeyFile:
    def bad(where: str, problem: str) -> UserError:
        return UserError(f"{path}: {where}: {problem}; restore the key file from a backup (it is written only by wgmesh)")

    if not isinstance(raw, Mapping):
        raise bad("top level", "expected a mapping")
    if raw.get("version") != KEYFILE_VERSION:
        raise bad("version", f"expected {KEYFILE_VERSION}, got {raw.get('version')!r}")
    keyfile = KeyFile()
    if raw.get("mesh_secret") is not None:
        try:
            keyfile.mesh_secret = base64.b64decode(str(raw["mesh_secret"]), validate=True)
        except (binascii.Error, ValueError):
            raise bad("mesh_secret", "not base64") from None
        if len(keyfile.mesh_secret) != KEY_BYTES:
            raise bad("mesh_secret", f"expected {KEY_BYTES} bytes")
    peers = raw.get("peers") or {}
    if not isinstance(peers, Mapping):
        raise bad("peers", "expected a mapping of peer name to keys")
    for name, entry in peers.items():
        if not isinstance(entry, Mapping):
            raise bad(f"peers.{name}", "expected a mapping")
        if entry.get("private_key") is not None:
            try:
                decode_key(entry["private_key"])
            except ValueError as exc:
                raise bad(f"peers.{name}.private_key", str(exc)) from None
            keyfile.private_keys[str(name)] = entry["private_key"].strip()
        addresses = entry.get("addresses") or []
        if not isinstance(addresses, list):
            raise bad(f"peers.{name}.addresses", "expected a list")
        for index, text in enumerate(addresses):
            try:
                ip_interface(str(text))
            except ValueError:
                raise bad(f"peers.{name}.addresses[{index}]", f"{text!r} is not an address") from None
        if addresses:
            keyfile.addresses[str(name)] = tuple(str(text) for text in addresses)
    return keyfile


def format_keyfile(keyfile: KeyFile, source: str) -> str:
    """The key file's text: fixed layout and sorted peers, so the same state always gives the same bytes."""
    lines = [
        f"# wgmesh key file for {source}: generated private keys, the preshared-key secret and allocated",
        "# tunnel addresses (pinned so that re-renders keep them). SECRET: keep it mode 0600, out of version",
        "# control (*.keys.yaml is gitignored), and backed up: losing it means new keys on every peer.",
        f"version: {KEYFILE_VERSION}",
    ]
    if keyfile.mesh_secret is not None:
        lines.append(f"mesh_secret: {base64.b64encode(keyfile.mesh_secret).decode('ascii')}")
    names = sorted(set(keyfile.private_keys) | set(keyfile.addresses))
    lines.append("peers:" if names else "peers: {}")
    for name in names:
        lines.append(f"  {name}:")
        if name in keyfile.private_keys:
            lines.append(f"    private_key: {keyfile.private_keys[name]}")
        if keyfile.addresses.get(name):
            lines.append(f"    addresses: [{', '.join(keyfile.addresses[name])}]")
    return "\n".join(lines) + "\n"


def resolve_keys(mesh: Mesh, keyfile: KeyFile) -> ResolvedKeys:
    """Decide every peer's key: the description's, else the key file's, else a fresh one; likewise the secret.

    A peer whose description gives only ``public_key`` is keyed elsewhere (``external``): the others list it,
    its own config is not rendered. The returned key file holds exactly the current peers (removed peers' keys
    and addresses are dropped) and every peer's tunnel addresses, pinned.
    """
    notes: list[str] = []
    external: list[str] = []
    private: dict[str, str] = {}
    public_only: dict[str, str] = {}
    updated = KeyFile(mesh_secret=keyfile.mesh_secret)
    for peer in mesh.peers:
        updated.addresses[peer.name] = tuple(str(address) for address in peer.addresses)
        stored = keyfile.private_keys.get(peer.name)
        if peer.private_key is not None:
            private[peer.name] = peer.private_key
        elif peer.public_key is not None:
            if stored is not None and public_key(stored) == peer.public_key:
                private[peer.name] = updated.private_keys[peer.name] = stored
            else:
                public_only[peer.name] = peer.public_key
                external.append(peer.name)
        elif stored is not None:
            private[peer.name] = updated.private_keys[peer.name] = stored
        else:
            private[peer.name] = updated.private_keys[peer.name] = generate_private_key()
            notes.append(f"generated a key pair for {peer.name}")
    for name in sorted(set(keyfile.private_keys) - {peer.name for peer in mesh.peers}):
        notes.append(f"dropped the keys of {name}, which is no longer in the mesh")
    if updated.mesh_secret is None:
        updated.mesh_secret = generate_mesh_secret()
        notes.append("generated the mesh secret preshared keys derive from")
    keys = MeshKeys(private_keys=private, mesh_secret=updated.mesh_secret, public_keys=public_only)
    return ResolvedKeys(keys=keys, keyfile=updated, notes=notes, external=external)


def write_secret_file(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically with mode 0600; ``False`` (and no write) if it already holds it.

    The temporary file is created by ``os.open(..., O_CREAT | O_EXCL, 0o600)`` and ``fchmod``-ed to 0600, so
    no umask can widen it and no other process ever sees a readable secret. An existing file with a wider mode
    is narrowed to 0600 even when its content is unchanged.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            if stat.S_IMODE(path.stat().st_mode) != SECRET_MODE:
                os.chmod(path, SECRET_MODE)
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), SECRET_MODE)
    except FileExistsError:
        os.unlink(temporary)  # left over by a crashed run of this same pid; it is ours to replace
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), SECRET_MODE)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), SECRET_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: some filesystems refuse to open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
