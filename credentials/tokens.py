"""RFC 9577 / RFC 9578 wire types for token type 0x0002 (Blind RSA 2048), sans-I/O.

Every type has ``encode() -> bytes`` and ``decode(bytes)``; decoders raise only
:class:`~credentials.errors.DecodeError`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import consts
from credentials.errors import DecodeError
from service_kit import wire

# RFC 9578 §6.5: AlgorithmIdentifier id-RSASSA-PSS with RSASSA-PSS-params {SHA-384,
# MGF1-SHA-384, saltLength 48}, DER-encoded exactly as the RFC's test vectors carry it.
_PSS_ALGORITHM_ID = bytes.fromhex(
    "303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d"
    "010108300b0609608648016503040202a203020130"
)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode_token_key(pk: rsa.RSAPublicKey) -> bytes:
    """RFC 9578 §6.5: the RSASSA-PSS SubjectPublicKeyInfo published as ``token-key``."""
    pkcs1 = pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    bit_string = b"\x03" + _der_length(len(pkcs1) + 1) + b"\x00" + pkcs1
    body = _PSS_ALGORITHM_ID + bit_string
    return b"\x30" + _der_length(len(body)) + body


def decode_token_key(spki: bytes) -> rsa.RSAPublicKey:
    """Load a ``token-key``: an RSASSA-PSS SPKI with the RFC 9578 parameters, 2048-bit."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # an unknown key type's OID
        raise DecodeError("token-key is not a public key") from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != consts.RSA_KEY_BITS:
        raise DecodeError("token-key is not a 2048-bit RSA key")
    if encode_token_key(key) != spki:
        raise DecodeError("token-key is not the RSASSA-PSS (SHA-384) encoding")
    return key


def token_key_id(token_key: bytes) -> bytes:
    """RFC 9578 §6.5: token_key_id = SHA-256(token-key encoding)."""
    return hashlib.sha256(token_key).digest()


def _Reader(data: bytes) -> wire.Reader:
    return wire.Reader(bytes(data), error=DecodeError)


def _ascii(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not ASCII") from exc
    if any(not 0x20 <= ord(c) < 0x7F for c in text):
        raise DecodeError(f"{what} has control characters")
    return text


@dataclass(frozen=True)
class TokenChallenge:
    """RFC 9577 §2.1 TokenChallenge."""

    token_type: int
    issuer_name: str
    redemption_context: bytes = b""
    origin_info: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The RFC 9577 §2.1 encoding."""
        if len(self.redemption_context) not in consts.REDEMPTION_CONTEXT_LENGTHS:
            raise DecodeError("redemption_context must be 0 or 32 bytes")
        issuer = self.issuer_name.encode("ascii")
        origins = ",".join(self.origin_info).encode("ascii")
        if not 0 < len(issuer) < 1 << 16 or len(origins) >= 1 << 16:
            raise DecodeError("issuer_name or origin_info length out of range")
        return (struct.pack(">HH", self.token_type, len(issuer)) + issuer
                + bytes([len(self.redemption_context)]) + self.redemption_context
                + struct.pack(">H", len(origins)) + origins)

    @classmethod
    def decode(cls, data: bytes) -> TokenChallenge:
        """Parse an encoded TokenChallenge; DecodeError on any malformation."""
        r = _Reader(data)
        token_type = r.u16()
        issuer = _ascii(r.take(r.u16()), "issuer_name")
        if not issuer:
            raise DecodeError("empty issuer_name")
        context = r.take(r.u8())
        if len(context) not in consts.REDEMPTION_CONTEXT_LENGTHS:
            raise DecodeError("redemption_context must be 0 or 32 bytes")
        origins = _ascii(r.take(r.u16()), "origin_info")
        r.end()
        return cls(token_type, issuer, context, tuple(origins.split(",")) if origins else ())

    def digest(self) -> bytes:
        """SHA-256 of the encoding: the challenge_digest bound into every token."""
        return hashlib.sha256(self.encode()).digest()


@dataclass(frozen=True)
class TokenRequest:
    """RFC 9578 §6.1 TokenRequest for type 0x0002."""

    truncated_token_key_id: int
    blinded_msg: bytes
    token_type: int = consts.TOKEN_TYPE_BLIND_RSA

    def encode(self) -> bytes:
        """token_type || truncated_token_key_id || blinded_msg."""
        if len(self.blinded_msg) != consts.NK:
            raise DecodeError("blinded_msg must be Nk bytes")
        return struct.pack(">HB", self.token_type, self.truncated_token_key_id) + self.blinded_msg

    @classmethod
    def decode(cls, data: bytes) -> TokenRequest:
        """Parse a type-2 TokenRequest (exactly 259 bytes)."""
        r = _Reader(data)
        token_type = r.u16()
        if token_type != consts.TOKEN_TYPE_BLIND_RSA:
            raise DecodeError("unsupported token type")
        truncated = r.u8()
        blinded = r.take(consts.NK)
        r.end()
        return cls(truncated, blinded, token_type)


@dataclass(frozen=True)
class TokenResponse:
    """RFC 9578 §6.2 TokenResponse: the Nk-byte blind signature."""

    blind_sig: bytes

    def encode(self) -> bytes:
        """The Nk-byte blind signature."""
        if len(self.blind_sig) != consts.NK:
            raise DecodeError("blind_sig must be Nk bytes")
        return self.blind_sig

    @classmethod
    def decode(cls, data: bytes) -> TokenResponse:
        """Parse a type-2 TokenResponse (exactly Nk bytes)."""
        if len(data) != consts.NK:
            raise DecodeError("TokenResponse must be Nk bytes")
        return cls(bytes(data))


@dataclass(frozen=True)
class Token:
    """RFC 9577 §2.2 Token (type 0x0002: the authenticator is an Nk-byte RSA-PSS signature)."""

    token_type: int
    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    authenticator: bytes

    def token_input(self) -> bytes:
        """The authenticator input: every field but the authenticator (what was signed)."""
        if (len(self.nonce), len(self.challenge_digest), len(self.token_key_id)) != (
                consts.NONCE_LENGTH, consts.CHALLENGE_DIGEST_LENGTH, consts.NID):
            raise DecodeError("token field lengths are wrong")
        return (struct.pack(">H", self.token_type) + self.nonce + self.challenge_digest
                + self.token_key_id)

    def encode(self) -> bytes:
        """The token: authenticator input followed by the authenticator."""
        if len(self.authenticator) != consts.NK:
            raise DecodeError("authenticator must be Nk bytes")
        return self.token_input() + self.authenticator

    @classmethod
    def decode(cls, data: bytes) -> Token:
        """Parse a type-2 Token (exactly 354 bytes)."""
        r = _Reader(data)
        token_type = r.u16()
        if token_type != consts.TOKEN_TYPE_BLIND_RSA:
            raise DecodeError("unsupported token type")
        nonce = r.take(consts.NONCE_LENGTH)
        digest = r.take(consts.CHALLENGE_DIGEST_LENGTH)
        key_id = r.take(consts.NID)
        authenticator = r.take(consts.NK)
        r.end()
        return cls(token_type, nonce, digest, key_id, authenticator)
