"""The wg-quick file format: a small structured form, its byte-stable text, and a parser that reads it back.

Rendering goes mesh -> :class:`WgConfig` -> text, so the text layout lives in exactly one place and
``parse_config(format_config(c)) == c`` holds for every config wgmesh produces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Entry = tuple[str, str]

NAME_COMMENT = "# Name = "
# wgmesh writes ``# Name = x``; wg-meshconf writes ``# Name: x``. Both name the peer when read back.
NAME_COMMENT_RE = re.compile(r"^#\s*Name\s*[=:]\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class WgPeerSection:
    """One ``[Peer]`` block: the remote member's name (kept as a comment wg ignores) and its entries in order."""

    name: str | None
    entries: tuple[Entry, ...]

    def get(self, key: str) -> str | None:
        return _get(self.entries, key)


@dataclass(frozen=True)
class WgConfig:
    """A whole wg-quick file: ``[Interface]`` entries and the ``[Peer]`` blocks, in file order."""

    interface: tuple[Entry, ...]
    peers: tuple[WgPeerSection, ...]

    def get(self, key: str) -> str | None:
        return _get(self.interface, key)

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.interface if name == key]

    def peer(self, name: str) -> WgPeerSection:
        for section in self.peers:
            if section.name == name:
                return section
        raise KeyError(f"no [Peer] named {name!r}")


def _get(entries: tuple[Entry, ...], key: str) -> str | None:
    for name, value in entries:
        if name == key:
            return value
    return None


class ConfigSyntaxError(ValueError):
    """A wg-quick file wgmesh cannot read, with the 1-based line number."""


def _check_entries(entries: tuple[Entry, ...]) -> None:
    """Refuse what a wg-quick file cannot carry: wg and wg-quick cut a line at '#', and an entry is one line."""
    for key, value in entries:
        for text in (key, value):
            if any(char in text for char in "\n\r#") or text != text.strip():
                raise ValueError(f"{key} = {value!r} cannot be written to a wg-quick file (one line, no '#', no edge spaces)")
        if not key or "=" in key:
            raise ValueError(f"{key!r} is not a wg-quick key")


def format_config(config: WgConfig, header: str | None = None) -> str:
    """The text of a config. Same input, same bytes: no timestamps, no dict ordering, ``\\n`` line ends.

    ``ValueError`` for a value that would not read back the same (a '#', a newline): validation keeps those out
    of a mesh, so this only guards callers that build a :class:`WgConfig` by hand.
    """
    _check_entries(config.interface)
    for section in config.peers:
        _check_entries(section.entries)
        if section.name is not None and (not section.name.strip() or "\n" in section.name or section.name != section.name.strip()):
            raise ValueError(f"peer name {section.name!r} cannot be written as a '# Name' comment")
    lines: list[str] = []
    if header:
        lines += [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append("[Interface]")
    lines += [f"{key} = {value}" for key, value in config.interface]
    for section in config.peers:
        lines.append("")
        lines.append("[Peer]")
        if section.name is not None:
            lines.append(f"{NAME_COMMENT}{section.name}")
        lines += [f"{key} = {value}" for key, value in section.entries]
    return "\n".join(lines) + "\n"


def parse_config(text: str) -> WgConfig:
    """Read a wg-quick file back into a :class:`WgConfig`.

    Comments are ignored, like ``wg`` and ``wg-quick`` do (from ``#`` to the end of the line), except a
    ``# Name = x`` line (wgmesh's form) or ``# Name: x`` line (wg-meshconf's form) inside a ``[Peer]`` block,
    which names the peer. Keys keep their order and repeated keys (``PostUp``) are kept.
    """
    interface: list[Entry] | None = None
    peers: list[WgPeerSection] = []
    current: list[Entry] | None = None
    current_name: str | None = None
    section: str | None = None

    def close_peer() -> None:
        if section == "Peer" and current is not None:
            peers.append(WgPeerSection(current_name, tuple(current)))

    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if line.startswith("#"):
            match = NAME_COMMENT_RE.match(line)
            if section == "Peer" and match:
                current_name = match.group(1)
            continue
        line = line.partition("#")[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            close_peer()
            section = line[1:-1].strip()
            if section == "Interface":
                if interface is not None:
                    raise ConfigSyntaxError(f"line {number}: a second [Interface] section")
                interface = current = []
            elif section == "Peer":
                current, current_name = [], None
            else:
                raise ConfigSyntaxError(f"line {number}: unknown section [{section}]")
            continue
        if current is None:
            raise ConfigSyntaxError(f"line {number}: an entry before any [Interface] or [Peer] section")
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigSyntaxError(f"line {number}: expected 'Key = Value', got {raw_line!r}")
        current.append((key.strip(), value.strip()))
    close_peer()
    if interface is None:
        raise ConfigSyntaxError("no [Interface] section")
    return WgConfig(tuple(interface), tuple(peers))
