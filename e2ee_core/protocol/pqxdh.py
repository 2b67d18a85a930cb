"""PQXDH (Signal's PQXDH specification): X3DH plus an ML-KEM-1024 encapsulation.

Alice encapsulates to Bob's signed KEM prekey (one-time, or the last-resort one) and appends
the shared secret to the X3DH secret input; the HKDF label becomes libsignal's PQXDH label.
Sessions set up this way use message version 4 with the classic Double Ratchet (no SPQR).
"""

from __future__ import annotations

from e2ee_core.protocol.keys import KemKeyPair, KemPublicKey, KeyPair, PublicKey
from e2ee_core.protocol.x3dh import DerivedKeys, derive, initiator_secrets, responder_secrets


def initiate(*, our_identity: KeyPair, our_base: KeyPair, their_identity: PublicKey,
             their_signed_prekey: PublicKey, their_one_time_prekey: PublicKey | None,
             their_kem_prekey: KemPublicKey) -> tuple[DerivedKeys, bytes]:
    """Alice's side: the derived keys and the KEM ciphertext for the PreKeySignalMessage."""
    shared, ciphertext = their_kem_prekey.encapsulate()
    secrets = initiator_secrets(our_identity, our_base, their_identity, their_signed_prekey,
                                their_one_time_prekey)
    return derive(secrets + shared, post_quantum=True), ciphertext


def respond(*, our_identity: KeyPair, our_signed_prekey: KeyPair,
            our_one_time_prekey: KeyPair | None, our_kem_prekey: KemKeyPair,
            their_identity: PublicKey, their_base: PublicKey,
            kem_ciphertext: bytes) -> DerivedKeys:
    """Bob's side (raises :class:`~e2ee_core.errors.InvalidKey` on a malformed ciphertext)."""
    shared = our_kem_prekey.decapsulate(kem_ciphertext)
    secrets = responder_secrets(our_identity, our_signed_prekey, our_one_time_prekey,
                                their_identity, their_base)
    return derive(secrets + shared, post_quantum=True)
