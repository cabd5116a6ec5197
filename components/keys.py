"""WireGuard key material held in Pulumi state, turned into keys by the pure ``mesh.keys`` module.

Keys are not generated in the program (they would change on every run): a ``random.RandomBytes`` resource keeps
32 random bytes in the stack's state, encrypted like any secret, and the X25519 key pair is derived from them.
Its ``keepers`` carry a ``key_version``: bumping it replaces the bytes, which is how keys are rotated on purpose.
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_random as random

from mesh.keys import KEY_BYTES, private_key_from_seed, public_key


def random_seed(name: str, *, key_version: int, parent: pulumi.Resource) -> pulumi.Output[str]:
    """A secret base64 seed of 32 bytes kept in state; a new ``key_version`` draws new bytes."""
    seed = random.RandomBytes(
        name,
        length=KEY_BYTES,
        keepers={"key_version": str(key_version)},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["base64", "hex"]),
    )
    return pulumi.Output.secret(seed.base64)


def seed_bytes(seed: str) -> bytes:
    """Decode a seed produced by :func:`random_seed` (RandomBytes' standard base64)."""
    return base64.b64decode(seed, validate=True)


def key_pair(seed: pulumi.Output[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(private key, public key) in ``wg``'s base64: the private one a secret, the public one plain."""
    private = pulumi.Output.secret(seed.apply(lambda text: private_key_from_seed(seed_bytes(text))))
    public = pulumi.Output.unsecret(private.apply(public_key))
    return private, public
