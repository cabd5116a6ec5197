"""WireGuard key material: X25519 key pairs and pairwise preshared keys derived from one mesh secret.

Keys are base64 strings exactly as ``wg genkey``/``wg pubkey``/``wg genpsk`` print them. Preshared keys are not
stored per pair: each one is derived with HKDF-SHA256 from a single 32-byte mesh secret and the *ordered* pair of
the two peers' public keys, so both ends derive the same key, a mesh of N peers keeps O(N) secrets instead of
O(N^2), and rotating a peer's key pair rotates every preshared key it takes part in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
PSK_SALT = b"wgmesh preshared key v1"
SEED_SALT = b"wgmesh key seed v1"
# A seed text (RandomPassword's secret result) must carry at least a key's worth of entropy: 64 characters of
# [A-Za-z0-9] are 381 bits; anything under 43 such characters (256 bits) is refused.
SEED_TEXT_MIN_CHARS = 43


def decode_key(text: str) -> bytes:
    """The 32 raw bytes of a base64 WireGuard key; raises ``ValueError`` saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a WireGuard key is a base64 string, got {type(text).__name__}")
    stripped = text.strip()
    if len(stripped) != 44 or not stripped.endswith("="):
        raise ValueError("a WireGuard key is 44 base64 characters ending in '=' (as `wg genkey` prints)")
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"decodes to {len(raw)} bytes, a WireGuard key has {KEY_BYTES}")
    return raw


def encode_key(raw: bytes) -> str:
    """Base64 text of 32 raw key bytes."""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a WireGuard key has {KEY_BYTES} bytes, got {len(raw)}")
    return base64.b64encode(raw).decode("ascii")


def clamp(raw: bytes) -> bytes:
    """Curve25519 clamping, as ``wg genkey`` applies it, so our private keys print byte-identical to wg's."""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a private key seed has {KEY_BYTES} bytes, got {len(raw)}")
    key = bytearray(raw)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def private_key_from_seed(seed: bytes) -> str:
    """The WireGuard private key made from 32 random bytes (e.g. Pulumi's ``RandomBytes``), clamped like wg's."""
    return encode_key(clamp(seed))


def seed_from_text(text: str) -> bytes:
    """32 key bytes from a secret random text (pulumi-random's ``RandomPassword`` result), by HKDF-SHA256.

    Why a text and not ``RandomBytes``: pulumi-random uses a ``RandomBytes``' base64 value as its resource ID, which
    Pulumi never encrypts, so every key seeded from one is readable in the state; a ``RandomPassword``'s ID is the
    constant ``none`` and its ``result`` is a secret output. Changing this derivation changes every key of every
    stack: a breaking change (``tests/test_keys.py`` pins known answers).
    """
    if not isinstance(text, str) or len(text) < SEED_TEXT_MIN_CHARS:
        raise ValueError(f"a key seed text has at least {SEED_TEXT_MIN_CHARS} random characters")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=SEED_SALT, info=b"").derive(text.encode("utf-8"))


def generate_private_key() -> str:
    """A fresh private key from the OS's CSPRNG, as ``wg genkey`` would make one."""
    return private_key_from_seed(os.urandom(KEY_BYTES))


@lru_cache(maxsize=4096)
def public_key(private_key: str) -> str:
    """The public key of a base64 private key, equal to what ``wg pubkey`` prints for it."""
    private = X25519PrivateKey.from_private_bytes(decode_key(private_key))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return encode_key(raw)


_SHA256_BLOCK = 64


def generate_mesh_secret() -> bytes:
    """A fresh 32-byte mesh secret, the one value every preshared key of a mesh is derived from."""
    return os.urandom(KEY_BYTES)


def derive_preshared_key(mesh_secret: bytes, public_a: str, public_b: str) -> str:
    """The preshared key shared by the peers with public keys ``public_a`` and ``public_b``.

    Symmetric (both peers derive the same key whichever order they pass) because the pair is sorted before
    it becomes HKDF's ``info``; distinct per pair because the public keys are.
    """
    if len(mesh_secret) < KEY_BYTES:
        raise ValueError(f"the mesh secret must have at least {KEY_BYTES} bytes, got {len(mesh_secret)}")
    first, second = sorted((decode_key(public_a), decode_key(public_b)))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=PSK_SALT, info=first + second)
    return encode_key(hkdf.derive(mesh_secret))


class PresharedKeyDeriver:
    """:func:`derive_preshared_key` for one mesh secret, fast enough for meshes of hundreds of peers.

    Same bytes as the HKDF above (RFC 5869 with SHA-256 and a 32-byte output is exactly
    ``HMAC(HMAC(salt, secret), info || 0x01)``), but the extract step runs once per secret instead of once per
    pair, and decoded public keys are kept. ``tests/test_keys.py`` checks both against a reference HKDF.
    """

    def __init__(self, mesh_secret: bytes) -> None:
        if len(mesh_secret) < KEY_BYTES:
            raise ValueError(f"the mesh secret must have at least {KEY_BYTES} bytes, got {len(mesh_secret)}")
        prk = hmac.digest(PSK_SALT, mesh_secret, "sha256").ljust(_SHA256_BLOCK, b"\0")
        # HMAC(prk, m) = H((prk ^ opad) || H((prk ^ ipad) || m)): both padded-key blocks are hashed once here and
        # each pair only copies those states, which halves the cost of N^2/2 derivations.
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in prk))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in prk))
        self._raw: dict[str, bytes] = {}

    def _decoded(self, key: str) -> bytes:
        raw = self._raw.get(key)
        if raw is None:
            raw = self._raw[key] = decode_key(key)
        return raw

    def __call__(self, public_a: str, public_b: str) -> str:
        first, second = sorted((self._decoded(public_a), self._decoded(public_b)))
        inner = self._inner.copy()
        inner.update(first + second + b"\x01")
        outer = self._outer.copy()
        outer.update(inner.digest())
        return encode_key(outer.digest())


def is_valid_key(text: object) -> bool:
    """Whether ``text`` is a well-formed WireGuard key."""
    try:
        decode_key(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True
