"""Epoch-chain integrity (beyond the whitepaper: its "Known Limitations", Epoch Integrity).

The whitepaper lets a server truncate the epochs it serves a restoring device, or serve a
different history, without detection. Here each epoch has a signed, hash-chained head:

    body     = 0x01 || u64be(sequenceId) || previousHeadHash[32] || rootCommitment[32]
               || openerDeviceKeyPub[32]
    rootCommitment = kdf(epochRootKey, null, "epoch_head_commitment_" + b64(seq))
    head     = body || pk_sign(openerDeviceKeyPriv, 0x32, body)
    headHash = SHA-256("labyrinth_epoch_head" || body)

The first epoch (sequence 0) has an all-zero previous hash. A device that verifies a chain
(:func:`verify_chain`) detects, with typed errors:

- a gap in the sequence ids, a chain ending before an epoch the device already knows (its own
  last epoch, or the one sealed in a virtual-device bundle), or a chain not starting at the
  first epoch: :class:`EpochChainTruncated`;
- a head whose previous hash is not its predecessor's hash, two heads for one sequence id, a
  head differing from a known checkpoint hash, or a root commitment differing from the root
  key the device derived: :class:`EpochChainForked`;
- a malformed head or a bad signature: :class:`InvalidEpochHead`.

The root commitment is a one-way KDF output: the server learns nothing of the root from it,
and cannot make a head for an epoch whose root it does not know. The epoch id is not in the
head (the server assigns it after the head is made); it is bound through the next epoch's
chaining label ``epoch_chaining_<prevSeq>_<prevID>``, so a wrong id gives a different next root
and the next head's commitment exposes it. What the chain cannot tell is whether epochs exist
after the newest one the device knows of: anchoring the newest head in the key-transparency
log closes that (not built; docs/labyrinth.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .consts import (
    EPOCH_HEAD_BODY_LEN,
    EPOCH_HEAD_HASH_LEN,
    EPOCH_HEAD_LEN,
    EPOCH_HEAD_VERSION,
    EPOCH_SEQUENCE_MAX,
    KEY_LEN,
    SEQUENCE_FIELD_LEN,
    SIGNATURE_LEN,
    SIGNATURE_USE_EPOCH_HEAD,
    X25519_LEN,
)
from .epochs import b64_sequence
from .errors import EpochChainForked, EpochChainTruncated, InvalidEpochHead
from .primitives import kdf_key, mac_equal, sign, verify

GENESIS_PREVIOUS_HASH = bytes(EPOCH_HEAD_HASH_LEN)
_HASH_PREFIX = b"labyrinth_epoch_head"


def root_commitment(root_key: bytes, sequence_id: int) -> bytes:
    """The head's commitment to the epoch root: kdf(root, null, "epoch_head_commitment_<b64>")."""
    if len(root_key) != KEY_LEN:
        raise InvalidEpochHead("epoch root key must be 32 bytes")
    return kdf_key(root_key, None, f"epoch_head_commitment_{b64_sequence(sequence_id)}".encode())


@dataclass(frozen=True, slots=True)
class EpochHead:
    """One signed epoch head, exactly as stored by the server."""

    sequence_id: int
    previous_hash: bytes
    commitment: bytes
    opener_device_key_pub: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if (isinstance(self.sequence_id, bool) or not isinstance(self.sequence_id, int)
                or not 0 <= self.sequence_id <= EPOCH_SEQUENCE_MAX):
            raise InvalidEpochHead("epoch head sequence id out of range")
        if (len(self.previous_hash) != EPOCH_HEAD_HASH_LEN or len(self.commitment) != KEY_LEN
                or len(self.opener_device_key_pub) != X25519_LEN
                or len(self.signature) != SIGNATURE_LEN):
            raise InvalidEpochHead("epoch head field has the wrong length")
        if (self.sequence_id == 0) != (self.previous_hash == GENESIS_PREVIOUS_HASH):
            raise InvalidEpochHead("only the first epoch has an all-zero previous hash")

    def body(self) -> bytes:
        """The signed part of the head."""
        return (bytes([EPOCH_HEAD_VERSION]) + self.sequence_id.to_bytes(SEQUENCE_FIELD_LEN, "big")
                + self.previous_hash + self.commitment + self.opener_device_key_pub)

    def encode(self) -> bytes:
        """The head's 169-byte encoding: body || signature."""
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> EpochHead:
        """Strict decoder: exact length, known version; the signature is checked by
        :meth:`verify_signature` / :func:`verify_chain`."""
        if not isinstance(data, bytes) or len(data) != EPOCH_HEAD_LEN:
            raise InvalidEpochHead("epoch head has the wrong length")
        if data[0] != EPOCH_HEAD_VERSION:
            raise InvalidEpochHead("unknown epoch head version")
        offset = 1 + SEQUENCE_FIELD_LEN
        sequence_id = int.from_bytes(data[1:offset], "big")
        previous = data[offset:offset + EPOCH_HEAD_HASH_LEN]
        offset += EPOCH_HEAD_HASH_LEN
        commitment = data[offset:offset + KEY_LEN]
        offset += KEY_LEN
        opener = data[offset:offset + X25519_LEN]
        return cls(sequence_id, previous, commitment, opener, data[EPOCH_HEAD_BODY_LEN:])

    def hash(self) -> bytes:
        """headHash = SHA-256("labyrinth_epoch_head" || body)."""
        return hashlib.sha256(_HASH_PREFIX + self.body()).digest()

    def verify_signature(self) -> None:
        """Raise :class:`InvalidEpochHead` unless the opener's 0x32 signature verifies."""
        if not verify(self.opener_device_key_pub, self.signature, SIGNATURE_USE_EPOCH_HEAD,
                      self.body()):
            raise InvalidEpochHead("epoch head signature does not verify")


def make_head(*, sequence_id: int, root_key: bytes, previous: EpochHead | None,
              opener_device_key_priv: bytes, opener_device_key_pub: bytes,
              random: bytes | None = None) -> EpochHead:
    """The head of the epoch ``(sequence_id, root_key)`` opened after ``previous``.

    ``previous`` is None only for the first epoch (sequence 0). ``random`` fixes the XEdDSA
    nonce input (test vectors only).
    """
    if previous is None:
        if sequence_id != 0:
            raise InvalidEpochHead("only the first epoch has no predecessor")
        previous_hash = GENESIS_PREVIOUS_HASH
    else:
        if previous.sequence_id + 1 != sequence_id:
            raise InvalidEpochHead("an epoch head must follow its predecessor")
        previous_hash = previous.hash()
    commitment = root_commitment(root_key, sequence_id)
    unsigned = EpochHead(sequence_id, previous_hash, commitment, opener_device_key_pub,
                         bytes(SIGNATURE_LEN))
    signature = sign(opener_device_key_priv, SIGNATURE_USE_EPOCH_HEAD, unsigned.body(), random)
    return EpochHead(sequence_id, previous_hash, commitment, opener_device_key_pub, signature)


def verify_chain(heads: Sequence[EpochHead], *, checkpoints: Mapping[int, bytes] | None = None,
                 roots: Mapping[int, bytes] | None = None,
                 openers: Collection[bytes] | None = None) -> bytes:
    """Verify ``heads`` (oldest first, from the first epoch) and return the newest head's hash.

    ``checkpoints`` maps sequence ids to head hashes the device already trusts (its own last
    epoch, the one in a virtual-device bundle); ``roots`` maps sequence ids to root keys the
    device derived; ``openers``, when given, are the device keys allowed to open epochs.
    """
    known = dict(checkpoints or {})
    derived = dict(roots or {})
    if not heads:
        raise EpochChainTruncated("the epoch chain is empty")
    if heads[0].sequence_id != 0:
        raise EpochChainTruncated("the epoch chain does not start at the first epoch")
    previous_hash = GENESIS_PREVIOUS_HASH
    for index, head in enumerate(heads):
        if head.sequence_id < index:
            raise EpochChainForked("two epoch heads for one sequence id")
        if head.sequence_id > index:
            raise EpochChainTruncated("the epoch chain has a gap")
        head.verify_signature()
        if openers is not None and not any(mac_equal(head.opener_device_key_pub, key)
                                           for key in openers):
            raise InvalidEpochHead("epoch opened by a device that is not allowed to")
        if not mac_equal(head.previous_hash, previous_hash):
            raise EpochChainForked("epoch head does not follow its predecessor")
        previous_hash = head.hash()
        expected = known.pop(head.sequence_id, None)
        if expected is not None and not mac_equal(expected, previous_hash):
            raise EpochChainForked("epoch head differs from a known checkpoint")
        root = derived.pop(head.sequence_id, None)
        if root is not None and not mac_equal(root_commitment(root, head.sequence_id),
                                              head.commitment):
            raise EpochChainForked("epoch head does not commit to the derived epoch key")
    if known or derived:
        raise EpochChainTruncated("the epoch chain ends before an epoch the device knows")
    return previous_hash
