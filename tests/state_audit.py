"""Audit a Pulumi state for key material in clear: what a reader of the state file learns without the passphrase.

Pulumi encrypts secret *values*; everything else in a state (resource IDs, URNs, plain inputs and outputs, the
checkpoint's backups) is stored as it is. :func:`findings` walks a state export (``pulumi stack export``) and
reports every clear string that either contains a secret's plaintext (taken from the same state exported with
``--show-secrets``) or, read as key material the way wgmesh reads it, gives a peer's published public key:

* 44-character base64 of 32 bytes (``RandomBytes``' base64, and its resource ID): clamped into a private key;
* 64 hex digits (``RandomBytes``' hex);
* a text of 43 or more characters (``RandomPassword``'s result): :func:`wgmesh.mesh.keys.seed_from_text`.

Used by the engine tests on real state files; it is test equipment, kept out of the product.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wgmesh.mesh.keys import private_key_from_seed, public_key, seed_from_text

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{43,}")


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def clear_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every string outside a secret envelope: keys of objects included."""
    if _is_secret(value):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", str(key)
            yield from clear_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from clear_strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def secret_plaintexts(shown: Any) -> set[str]:
    """The key material inside the secrets of a ``--show-secrets`` export: every token of 43 or more base64 or
    word characters in a secret's strings (a WireGuard key, a key seed, a line of an SSH private key). A secret
    object can hold plain facts too (a connection's host beside its key): those are not what leaks."""
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, str):
            found.update(TOKEN.findall(value))
            try:
                decoded = json.loads(value)
            except ValueError:
                return
            if not isinstance(decoded, str):
                collect(decoded)

    def walk(value: Any) -> None:
        if _is_secret(value):
            collect(value.get("plaintext", value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(shown)
    return found - public_tokens(shown)


SSH_PUBLIC_KEY = re.compile(r"(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) ([A-Za-z0-9+/=]+)")
WG_PUBLIC_KEY = re.compile(r"PublicKey\s*=\s*(\S+)")


def public_tokens(shown: Any) -> set[str]:
    """Public keys anywhere in the export (SSH host keys, WireGuard ``PublicKey`` lines): never a leak."""
    text = json.dumps(shown)
    return set(SSH_PUBLIC_KEY.findall(text)) | set(WG_PUBLIC_KEY.findall(text.replace("\\n", "\n")))


def keys_read_from(text: str) -> Iterator[str]:
    """The public keys a reader gets by taking ``text`` (or a token in it) as wgmesh key material."""
    for token in {text, *TOKEN.findall(text)}:
        candidates: list[bytes] = []
        if len(token) == 44:
            try:
                raw = base64.b64decode(token, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) == 32:
                candidates.append(raw)
        if re.fullmatch(r"[0-9a-fA-F]{64}", token):
            candidates.append(bytes.fromhex(token))
        if len(token) >= 43:
            candidates.append(seed_from_text(token))
        for raw in candidates:
            yield public_key(private_key_from_seed(raw))


def findings(clear: Any, shown: Any, public_keys: Iterable[str]) -> list[str]:
    """What in the clear export gives a secret away: one line each, naming the path."""
    published = set(public_keys)
    plaintexts = secret_plaintexts(shown) - published
    problems = []
    for path, text in clear_strings(clear):
        leaked = sorted(secret for secret in plaintexts if secret in text)
        if leaked:
            problems.append(f"{path}: holds a secret's plaintext in clear ({len(leaked)} secret(s))")
        derived = published.intersection(keys_read_from(text))
        if derived:
            problems.append(f"{path}: read as a key, gives the public key of a peer ({sorted(derived)[0][:8]}...)")
    return problems


def secrets_in_text(text: str, shown: Any, public_keys: Iterable[str]) -> list[str]:
    """The secrets (key material, see :func:`secret_plaintexts`) that occur in ``text``: an engine's output, a log."""
    return sorted(secret for secret in secret_plaintexts(shown) - set(public_keys) if secret in text)


def file_findings(paths: Iterable[Path], shown: Any, public_keys: Iterable[str]) -> list[str]:
    """:func:`findings` over every JSON file the backend keeps (checkpoint, backups, history)."""
    problems = []
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        problems += [f"{path.name}{line}" for line in findings(document, shown, public_keys)]
    return problems
