"""WireGuard key material held in Pulumi state as secrets only, turned into keys by the pure ``wgmesh.mesh.keys`` module.

Keys are not generated in the program (they would change on every run): a ``random.RandomPassword`` keeps 64
random characters in the stack's state, as a secret output, and the X25519 key pair (or the mesh secret) is
derived from them (:func:`wgmesh.mesh.keys.seed_from_text`). Not ``RandomBytes``: pulumi-random makes a
``RandomBytes``' base64 value its resource ID, and Pulumi never encrypts IDs, so its bytes would sit in the state
in clear; a ``RandomPassword``'s ID is the constant ``none``. Its ``keepers`` carry a ``key_version``: bumping
it replaces the text, which is how keys are rotated on purpose.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

from wgmesh.mesh.keys import private_key_from_seed, public_key, seed_from_text

SEED_LENGTH = 64  # characters of [A-Za-z0-9]: 381 bits, more than the 256 a key needs


def random_seed(name: str, *, key_version: int, parent: pulumi.Resource) -> pulumi.Output[str]:
    """A secret random text kept in state (never in an ID); a new ``key_version`` draws a new one."""
    seed = random.RandomPassword(
        name,
        length=SEED_LENGTH,
        special=False,
        keepers={"key_version": str(key_version)},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result", "bcryptHash"]),
    )
    return pulumi.Output.secret(seed.result)


def seed_bytes(seed: str) -> bytes:
    """The 32 key bytes of a seed produced by :func:`random_seed`."""
    return seed_from_text(seed)


def key_pair(seed: pulumi.Output[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(private key, public key) in ``wg``'s base64: the private one a secret, the public one plain."""
    private = pulumi.Output.secret(seed.apply(lambda text: private_key_from_seed(seed_bytes(text))))
    public = pulumi.Output.unsecret(private.apply(public_key))
    return private, public
