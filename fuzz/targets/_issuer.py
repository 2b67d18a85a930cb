"""The RFC 9578 Appendix A.2 issuer key (a fixed 2048-bit key when the vectors are absent)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials.issuance import IssuerKey, IssuerKeys
from fuzz.vectors import vectors

VECTORS = vectors("rfc9578_type2")


def _private_key() -> rsa.RSAPrivateKey:
    if VECTORS:
        key = serialization.load_pem_private_key(bytes.fromhex(VECTORS[0]["skS"]), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    return rsa.generate_private_key(65537, 2048)


ISSUER_KEY = IssuerKey.from_private_key(_private_key())
ISSUER_KEYS = IssuerKeys([ISSUER_KEY])
PUBLIC_KEYS = {ISSUER_KEY.key_id: ISSUER_KEY.signer.public_key}
