"""X3DH key agreement (Signal's X3DH specification) with libsignal's v3 encoding.

Secret input = 32 x 0xFF || DH1 || DH2 || DH3 [|| DH4] [|| KEM shared secret], where
DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B);
HKDF-SHA256 (zero salt) expands it under libsignal's label into a root key and a chain key.
PQXDH (:mod:`pqxdh`) appends the ML-KEM shared secret and uses the PQXDH label.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2ee_core.protocol.consts import DISCONTINUITY_BYTES, LABEL_PQXDH, LABEL_X3DH
from e2ee_core.protocol.kdf import hkdf
from e2ee_core.protocol.keys import KeyPair, PublicKey


@dataclass(frozen=True)
class DerivedKeys:
    root_key: bytes
    chain_key: bytes


def derive(secret_input: bytes, *, post_quantum: bool) -> DerivedKeys:
    okm = hkdf(secret_input, None, LABEL_PQXDH if post_quantum else LABEL_X3DH, 64)
    return DerivedKeys(okm[:32], okm[32:])


def initiator_secrets(our_identity: KeyPair, our_base: KeyPair, their_identity: PublicKey,
                      their_signed_prekey: PublicKey,
                      their_one_time_prekey: PublicKey | None) -> bytes:
    """Alice's DH outputs, prefixed with the discontinuity bytes."""
    parts = [DISCONTINUITY_BYTES,
             our_identity.private.agree(their_signed_prekey),
             our_base.private.agree(their_identity),
             our_base.private.agree(their_signed_prekey)]
    if their_one_time_prekey is not None:
        parts.append(our_base.private.agree(their_one_time_prekey))
    return b"".join(parts)


def responder_secrets(our_identity: KeyPair, our_signed_prekey: KeyPair,
                      our_one_time_prekey: KeyPair | None, their_identity: PublicKey,
                      their_base: PublicKey) -> bytes:
    """Bob's DH outputs, in the same order as Alice's."""
    parts = [DISCONTINUITY_BYTES,
             our_signed_prekey.private.agree(their_identity),
             our_identity.private.agree(their_base),
             our_signed_prekey.private.agree(their_base)]
    if our_one_time_prekey is not None:
        parts.append(our_one_time_prekey.private.agree(their_base))
    return b"".join(parts)
