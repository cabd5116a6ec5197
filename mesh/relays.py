"""Which peer relays each pair of peers that are both behind NAT.

Two peers without an endpoint can never start a handshake with each other: neither knows where the other is, and
each one's NAT router drops what it did not ask for. They talk through a relay instead: a peer with a public
endpoint that both already reach (and keep their NAT mappings open to). It forwards between its own tunnel peers,
so it decrypts and re-encrypts what it relays and sees that traffic in the clear.

A pair's relay is the one a NAT peer names (``relay: NAME``), else the public peer with the highest rendezvous
(highest-random-weight) score for that unordered pair. That choice is deterministic and moves as little as
possible when the mesh changes:

* removing a public peer moves only the pairs it relayed (every other pair's top score is still there);
* adding a public peer moves a pair only when the newcomer scores highest for it: about 1/N of the relayed pairs
  with N public peers afterwards, spread evenly;
* the score depends only on the pair's names and the candidate's name, never on list order or on other peers.

Pairs that must not move at all pin their relay with ``relay:`` on one of the two peers. Peers with
``relay_allowed: false`` are never chosen (nor may they be named).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wgmesh.mesh.model import Mesh, Peer

# Said wherever relays are shown (check, graph, stack output, docs): what a user trusts a relay with.
CLEARTEXT_NOTE = "a relay decrypts and re-encrypts what it forwards, so it sees the relayed traffic in the clear"


def rendezvous_score(first: str, second: str, candidate: str) -> int:
    """The score of ``candidate`` as relay of the unordered pair ``{first, second}``: 64 bits of a hash.

    Peer names never contain NUL, so the joined key is unambiguous; the pair is sorted so that it is unordered.
    """
    low, high = sorted((first, second))
    return int.from_bytes(hashlib.blake2b(f"{low}\0{high}\0{candidate}".encode(), digest_size=8).digest(), "big")


def choose_relay(first: str, second: str, candidates: Iterable[str]) -> str | None:
    """The candidate with the highest rendezvous score for the pair (ties, which need a 64-bit collision, by name)."""
    best: tuple[int, str] | None = None
    for candidate in candidates:
        if candidate in (first, second):
            continue
        scored = (rendezvous_score(first, second, candidate), candidate)
        if best is None or scored > best:
            best = scored
    return None if best is None else best[1]


def relay_candidates(peers: Iterable[Peer]) -> list[str]:
    """Peers that may relay: reachable (an endpoint, or one created at deploy), not ``relay_allowed: false``, and
    routing their AllowedIPs (``table: off`` would leave the relay no route back into the tunnel)."""
    return [peer.name for peer in peers if peer.reachable and peer.relay_allowed and peer.table != "off"]


def assign_relays(peers: Sequence[Peer]) -> tuple[tuple[str, str, str], ...]:
    """``(first, second, relay)`` for every pair of peers that both lack an endpoint, pairs in the peers' order.

    A relay named by either peer wins (validation has made sure both name the same one when both name one, and
    that it may relay); otherwise :func:`choose_relay` over :func:`relay_candidates`. ``ValueError`` when a pair
    has no relay at all, which :func:`wgmesh.mesh.validation.load_mesh` reports with the field and fix beforehand.
    """
    behind_nat = [peer for peer in peers if not peer.reachable]
    if len(behind_nat) < 2:
        return ()
    candidates = relay_candidates(peers)
    pairs: list[tuple[str, str, str]] = []
    for index, first in enumerate(behind_nat):
        for second in behind_nat[index + 1 :]:
            relay = first.relay or second.relay or choose_relay(first.name, second.name, candidates)
            if relay is None:
                raise ValueError(f"peers {first.name!r} and {second.name!r} are both behind NAT and no peer can relay between them")
            pairs.append((first.name, second.name, relay))
    return tuple(pairs)


@dataclass(frozen=True)
class RelayedPair:
    """A pair of peers behind NAT and its relay, as ``check``, ``graph`` and the stack output show it.

    ``pinned_by`` is the peer whose ``relay:`` named the relay (the first of the pair when both did), or ``None``
    when it was chosen by rendezvous hashing and may move when public peers come and go.
    """

    first: str
    second: str
    relay: str
    pinned_by: str | None

    def as_output(self) -> dict[str, object]:
        """The stack-output form: plain JSON values."""
        return {"peers": [self.first, self.second], "relay": self.relay, "pinned_by": self.pinned_by}


def relayed_pairs(mesh: Mesh) -> list[RelayedPair]:
    """Every relayed pair of ``mesh``, in its order, with who pinned the relay."""
    pairs = []
    for first, second, relay in mesh.relays:
        pinned_by = next((name for name in (first, second) if mesh.peer(name).relay == relay), None)
        pairs.append(RelayedPair(first, second, relay, pinned_by))
    return pairs
