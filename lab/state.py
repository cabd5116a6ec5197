"""The lab's state file (``<state>/lab.json``, mode 0600): what a ``lab up`` made, so ``lab down`` removes exactly that.

Everything the lab creates outside its state directory (network namespaces, the root-namespace veth, mounts, the
mount-namespace handles, a missing ``/etc/wireguard``) is recorded here right after it is made, and the file is
rewritten atomically each time. A ``lab up`` that dies half-way therefore still leaves a complete list for
``lab down``, and ``lab down`` never touches anything it did not make (an unrelated ``wgl-*`` namespace stays).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

STATE_VERSION = 1
SECRET_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 from the first byte (temp file + ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    try:
        os.fchmod(fd, SECRET_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


class LabState:
    """The recorded lab, shared by the threads that build hosts in parallel (every change is locked and saved)."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data if data is not None else {"version": STATE_VERSION}
        self.data.setdefault("made", {})
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        """The state at ``path``; None when there is none (no lab is up there)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: not a lab state file of version {STATE_VERSION}")
        return cls(path, data)

    @classmethod
    def claim(cls, path: Path, **fields: Any) -> LabState:
        """Create a new state file, failing (FileExistsError) when one exists: two ``lab up`` never share a directory."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        os.close(fd)
        state = cls(path, {"version": STATE_VERSION, **fields})
        state.save()
        return state

    def made(self, kind: str) -> list[Any]:
        """What was recorded under ``kind`` (``netns``, ``links``, ``mounts``, ``dirs``, ``files``, ``trees``: whole
        directories), in creation order."""
        with self._lock:
            return list(self.data["made"].get(kind, []))

    def record(self, kind: str, value: Any) -> None:
        with self._lock:
            items = self.data["made"].setdefault(kind, [])
            if value not in items:
                items.append(value)
            self._save_locked()

    def forget(self, kind: str, value: Any) -> None:
        with self._lock:
            items = self.data["made"].get(kind, [])
            if value in items:
                items.remove(value)
            self._save_locked()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
            self._save_locked()

    def update_host(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data.setdefault("hosts", {}).setdefault(name, {}).update(fields)
            self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        write_private(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
