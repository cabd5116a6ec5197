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


# What would not read back the same: a '#' (wg and wg-quick cut the line there), a line break, whitespace at an
# end, and for keys also '=' or nothing at all.
_UNWRITABLE_KEY = re.compile(r"^$|=|^\s|\s$|[#\n\r]")
_UNWRITABLE_VALUE = re.compile(r"^\s|\s$|[#\n\r]")


def _check_entries(entries: tuple[Entry, ...]) -> None:
    """Refuse what a wg-quick file cannot carry; one regex pass over everything, then a slow pass naming the culprit."""
    for key, value in entries:
        if _UNWRITABLE_KEY.search(key):
            raise ValueError(f"{key!r} is not a wg-quick key")
        if _UNWRITABLE_VALUE.search(value):
            raise ValueError(f"{key} = {value!r} cannot be written to a wg-quick file (one line, no '#', no edge spaces)")


def format_config(config: WgConfig, header: str | None = None, *, verify: bool = True) -> str:
    """The text of a config. Same input, same bytes: no timestamps, no dict ordering, ``\\n`` line ends.

    ``ValueError`` for a value that would not read back the same (a '#', a newline): validation keeps those out
    of a mesh, so this only guards callers that build a :class:`WgConfig` by hand; the renderer, whose values all
    come from a validated mesh, passes ``verify=False`` (the property tests check its output reads back the same).
    """
    blocks: list[str] = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    interface = "\n".join(map(" = ".join, config.interface))
    blocks.append(f"[Interface]\n{interface}" if interface else "[Interface]")
    bodies = [interface]
    names: list[str] = []
    for section in config.peers:
        body = "\n".join(map(" = ".join, section.entries))
        bodies.append(body)
        head = "\n[Peer]" if section.name is None else f"\n[Peer]\n{NAME_COMMENT}{section.name}"
        blocks.append(f"{head}\n{body}" if body else head)
        if section.name is not None:
            names.append(section.name)
    if not verify:
        return "\n".join(blocks) + "\n"
    count = len(config.interface) + sum(len(section.entries) for section in config.peers)
    keys = {key for key, _ in config.interface} | {key for section in config.peers for key, _ in section.entries}
    if _suspicious("\n".join(body for body in bodies if body), count) or any(_UNWRITABLE_KEY.search(key) for key in keys) or not all(names):
        _check_entries(config.interface)
        for section in config.peers:
            if section.name is not None and (not section.name or _UNWRITABLE_VALUE.search(section.name)):
                raise ValueError(f"peer name {section.name!r} cannot be written as a '# Name' comment")
            _check_entries(section.entries)
    if names and _suspicious("\n".join(names), len(names)):
        for name in names:
            if _UNWRITABLE_VALUE.search(name):
                raise ValueError(f"peer name {name!r} cannot be written as a '# Name' comment")
    return "\n".join(blocks) + "\n"


def _suspicious(lines: str, count: int) -> bool:
    """Whether ``count`` newline-joined ``key = value`` lines *might* hold something unwritable.

    Substring scans over one string instead of a regex per value: a stray line break (more lines than
    entries), '#', a control character, or whitespace at the edge of a key or value.
    """
    if not lines.isascii() or lines.count("\n") != max(count - 1, 0):
        return True  # non-ASCII whitespace could sit at an edge: let the exact check decide
    markers = ("#", "\r", "\t", "\x0b", "\x0c", " \n", "\n ", "  = ", " =  ")
    return any(marker in lines for marker in markers) or lines[:1] == " " or lines[-1:] == " "


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
