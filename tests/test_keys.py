"""Key material: known-answer vectors, wg's clamping, and the HKDF preshared-key derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from wgmesh.mesh.keys import (
    PSK_SALT,
    SEED_SALT,
    clamp,
    decode_key,
    derive_preshared_key,
    generate_mesh_secret,
    generate_private_key,
    is_valid_key,
    private_key_from_seed,
    public_key,
    seed_from_text,
)
from wgmesh.mesh.render import MeshKeys

# RFC 7748, section 6.1 (Alice).
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_public_key_matches_rfc7748() -> None:
    assert public_key(b64(RFC7748_PRIVATE)) == b64(RFC7748_PUBLIC)
    # Clamping does not change the public key (X25519 clamps anyway), only how the private key prints.
    assert public_key(private_key_from_seed(RFC7748_PRIVATE)) == b64(RFC7748_PUBLIC)


def test_private_keys_are_clamped_like_wg_genkey() -> None:
    for _ in range(20):
        raw = decode_key(generate_private_key())
        assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64 == 64
    assert clamp(bytes(range(32)))[0] == 0 and clamp(b"\xff" * 32)[31] == 0x7F
    assert private_key_from_seed(b"\x00" * 32) == b64(b"\x00" * 31 + b"\x40")


def test_seeds_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        private_key_from_seed(b"short")


def test_key_format() -> None:
    key = generate_private_key()
    assert len(key) == 44 and key.endswith("=") and is_valid_key(key) and is_valid_key(public_key(key))
    for bad in ["", "A" * 44, "A" * 43 + "=" + "=", b64(b"\x00" * 31) + "A", 42, None]:
        assert not is_valid_key(bad)


def reference_hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one output block, written out with hmac to check the library use."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_preshared_key_is_hkdf_over_the_ordered_public_keys() -> None:
    secret = bytes(range(32))
    a, b = public_key(private_key_from_seed(b"\x01" * 32)), public_key(private_key_from_seed(b"\x02" * 32))
    first, second = sorted((decode_key(a), decode_key(b)))
    expected = b64(reference_hkdf(secret, PSK_SALT, first + second))
    assert derive_preshared_key(secret, a, b) == expected == derive_preshared_key(secret, b, a)


def test_preshared_keys_differ_per_pair_and_per_secret() -> None:
    publics = [public_key(generate_private_key()) for _ in range(4)]
    secret = generate_mesh_secret()
    pairs = {derive_preshared_key(secret, a, b) for i, a in enumerate(publics) for b in publics[i + 1 :]}
    assert len(pairs) == 6
    assert derive_preshared_key(generate_mesh_secret(), publics[0], publics[1]) != derive_preshared_key(secret, publics[0], publics[1])
    with pytest.raises(ValueError, match="at least 32 bytes"):
        derive_preshared_key(b"short", publics[0], publics[1])


def test_mesh_keys_with_public_only_peers() -> None:
    private = {"a": private_key_from_seed(b"\x01" * 32), "b": private_key_from_seed(b"\x02" * 32)}
    outside = public_key(private_key_from_seed(b"\x03" * 32))
    keys = MeshKeys(private, generate_mesh_secret(), public_keys={"c": outside})
    assert keys.public_key("c") == outside and keys.public_key("a") == public_key(private["a"])
    assert keys.preshared_key("a", "b") == keys.preshared_key("b", "a") is not None
    assert keys.preshared_key("a", "c") is None, "the owner of c could not derive it"
    with pytest.raises(KeyError, match="no private key for peer 'c'"):
        keys.private_key("c")
    assert MeshKeys(private).preshared_key("a", "b") is None


def test_fast_deriver_equals_the_hkdf_reference() -> None:
    from wgmesh.mesh.keys import PresharedKeyDeriver

    secret = generate_mesh_secret()
    derive = PresharedKeyDeriver(secret)
    publics = [public_key(generate_private_key()) for _ in range(6)]
    for a in publics:
        for b in publics:
            if a != b:
                assert derive(a, b) == derive_preshared_key(secret, a, b) == derive(b, a)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PresharedKeyDeriver(b"short")


def test_mesh_keys_cache_gives_the_same_keys_as_direct_derivation() -> None:
    private = {name: generate_private_key() for name in "abcd"}
    keys = MeshKeys(private, generate_mesh_secret())
    for a in private:
        for b in private:
            if a != b:
                expected = derive_preshared_key(keys.mesh_secret, public_key(private[a]), public_key(private[b]))
                assert keys.preshared_key(a, b) == expected == keys.preshared_key(b, a)
    assert MeshKeys(private, keys.mesh_secret) == keys, "the cache is not part of equality"


def test_seed_from_text_is_hkdf_with_the_wgmesh_salt() -> None:
    # Changing this output changes every key of every deployed stack: a breaking change.
    text = "A" * 64
    assert seed_from_text(text) == reference_hkdf(text.encode(), SEED_SALT, b"")
    assert seed_from_text(text).hex() == "0b8b783fa6033f76a1c4677a6aca8c05b3dd166514680713fc41300893726857"
    assert seed_from_text(text) != seed_from_text("A" * 63 + "B")


def test_seed_text_must_carry_a_keys_worth_of_entropy() -> None:
    with pytest.raises(ValueError, match="at least 43"):
        seed_from_text("x" * 42)
