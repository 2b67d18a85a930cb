"""Fixed gateway keys shared by the OHTTP targets, so every finding reproduces."""

from __future__ import annotations

import hashlib

from fuzz.vectors import vectors
from ohttp_relay.ohttp import KEM_P256, KEM_X25519, GatewayKey

# RFC 9458 Appendix A's gateway key (key id 1) when the vectors are at hand, else a fixed one.
_VECTOR = next(iter(vectors("rfc9458")), None)
_X25519_SK = (bytes.fromhex(_VECTOR["gateway_x25519_secret_key"]) if _VECTOR
              else hashlib.sha256(b"fuzz x25519").digest())
X25519_KEY = GatewayKey.from_private_key(1, KEM_X25519, _X25519_SK)
P256_KEY = GatewayKey.from_private_key(2, KEM_P256, hashlib.sha256(b"fuzz p256").digest())
KEYS = {key.key_id: key for key in (X25519_KEY, P256_KEY)}


def lookup(key_id: int) -> GatewayKey | None:
    return KEYS.get(key_id)
