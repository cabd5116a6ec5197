"""OpenSSH public keys as the stack config carries them, and how a host key is learned on first contact.

Pure: the validation (``wgmesh.mesh.stackconfig``) and the components use the same parser, so a key that would fail
half-way through ``pulumi up`` (bad base64, a cut blob, a type that does not match the blob) is refused first.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import struct

SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
# The host key type learned on first contact: every OpenSSH since 6.5 (and every Ubuntu cloud image) has one.
SCANNED_KEY_TYPE = "ssh-ed25519"
SCAN_PAUSE_SECONDS = 5


def parse_ssh_key(text: str) -> tuple[str, str]:
    """``(type, base64 blob)`` of an OpenSSH public key line (``authorized_keys``/``known_hosts`` style: leading
    host patterns or options and a trailing comment are dropped); ``ValueError`` saying what is wrong.

    The blob is decoded and its own type name must match the line's: a key that passes a pattern but is not valid
    base64 (or was cut) would otherwise fail only half-way through ``pulumi up``.
    """
    fields_ = text.split()
    position = next((index for index, item in enumerate(fields_) if item in SSH_KEY_TYPES), None)
    if position is None or position + 1 >= len(fields_):
        raise ValueError(f"no key of a known type ({', '.join(SSH_KEY_TYPES)}) followed by its base64 blob")
    if fields_[0].startswith("@"):
        raise ValueError(f"a {fields_[0]} marker line is not a host key")
    kind, encoded = fields_[position], fields_[position + 1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its key blob is not valid base64") from None
    if len(blob) < 4 or len(blob) < 4 + struct.unpack(">I", blob[:4])[0]:
        raise ValueError("its key blob is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != kind.encode():
        raise ValueError(f"its key blob holds a {blob[4 : 4 + length][:40]!r} key, not {kind}")
    if kind == "ssh-ed25519" and len(blob) != 4 + length + 4 + 32:
        raise ValueError("its ed25519 key blob does not hold a 32-byte key")
    return kind, encoded


def host_key_scan_script(host: str, port: int, *, timeout_seconds: int) -> str:
    """A POSIX ``sh`` script, run where ``pulumi up`` runs, that prints the host's ed25519 key as ``type blob``.

    Trust on first use: it retries until sshd answers (a new instance boots for a minute or two), then prints the
    key once; the key is kept in the stack's state and pinned on every later connection.
    """
    where = f"{host}:{port}"
    return f"""# wgmesh: learn the SSH host key of {where} (trust on first use)
deadline=$(( $(date +%s) + {int(timeout_seconds)} ))
while :; do
    key=$(ssh-keyscan -T 5 -t ed25519 -p {int(port)} {shlex.quote(host)} 2>/dev/null \\
        | awk '$2 == "{SCANNED_KEY_TYPE}" {{ print $2 " " $3; exit }}')
    if [ -n "$key" ]; then echo "$key"; exit 0; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "wgmesh: no {SCANNED_KEY_TYPE} host key from {where} within {int(timeout_seconds)}s" \\
            "(is sshd up, and port {int(port)} open to this machine?)" >&2
        exit 1
    fi
    sleep {SCAN_PAUSE_SECONDS}
done
"""
