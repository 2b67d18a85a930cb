"""Oblivious HTTP message encapsulation (RFC 9458), sans-I/O.

- :class:`KeyConfig` and the ``application/ohttp-keys`` list (§3);
- client: :func:`encapsulate_request` -> (Encapsulated Request, :class:`ClientResponseContext`)
  whose ``decapsulate`` opens the Encapsulated Response (§4.3, §4.4);
- gateway: :class:`GatewayKey` + :func:`decapsulate_request` -> (request bytes,
  :class:`ServerResponseContext`) whose ``encapsulate`` seals the response.

HPKE (RFC 9180) comes from ``pyhpke``; the response AEAD and HKDF come from ``cryptography``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyPair, OpenError

from ohttp_relay import consts
from ohttp_relay._wire import Reader
from ohttp_relay.errors import (
    DecodeError,
    DecryptError,
    KeyConfigError,
    UnknownKeyId,
    UnsupportedSuite,
)

# --- algorithm identifiers (RFC 9180 §7) ---------------------------------------------------
KEM_P256: int = 0x0010
KEM_X25519: int = 0x0020
KDF_HKDF_SHA256: int = 0x0001
AEAD_AES_128_GCM: int = 0x0001
AEAD_AES_256_GCM: int = 0x0002
AEAD_CHACHA20_POLY1305: int = 0x0003

#: KEM id -> (Npk, Nenc) in bytes.
KEM_SIZES: dict[int, tuple[int, int]] = {KEM_X25519: (32, 32), KEM_P256: (65, 65)}
#: AEAD id -> (Nk, Nn) in bytes.
AEAD_SIZES: dict[int, tuple[int, int]] = {
    AEAD_AES_128_GCM: (16, 12),
    AEAD_AES_256_GCM: (32, 12),
    AEAD_CHACHA20_POLY1305: (32, 12),
}
SUPPORTED_KDFS = frozenset({KDF_HKDF_SHA256})
#: The AEAD tag length of every supported AEAD.
TAG_BYTES = 16
#: Key id (1) + kem_id (2) + kdf_id (2) + aead_id (2) (RFC 9458 §4.1).
HEADER_BYTES = 7


@dataclass(frozen=True, order=True)
class SymmetricSuite:
    """One (KDF, AEAD) pair a key configuration offers."""

    kdf_id: int
    aead_id: int

    @property
    def supported(self) -> bool:
        return self.kdf_id in SUPPORTED_KDFS and self.aead_id in AEAD_SIZES


DEFAULT_SYMMETRIC: tuple[SymmetricSuite, ...] = (
    SymmetricSuite(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
    SymmetricSuite(KDF_HKDF_SHA256, AEAD_AES_256_GCM),
    SymmetricSuite(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
)


def cipher_suite(kem_id: int, kdf_id: int, aead_id: int) -> CipherSuite:
    if kem_id not in KEM_SIZES:
        raise UnsupportedSuite("unsupported KEM")
    if kdf_id not in SUPPORTED_KDFS or aead_id not in AEAD_SIZES:
        raise UnsupportedSuite("unsupported KDF or AEAD")
    return _SUITES[(kem_id, kdf_id, aead_id)]


_SUITES: dict[tuple[int, int, int], CipherSuite] = {
    (kem, kdf, aead): CipherSuite.new(KEMId(kem), KDFId(kdf), AEADId(aead))
    for kem in KEM_SIZES for kdf in SUPPORTED_KDFS for aead in AEAD_SIZES
}


# --- key configurations (RFC 9458 §3) ------------------------------------------------------

@dataclass(frozen=True)
class KeyConfig:
    """A gateway's public key configuration (RFC 9458 §3.1)."""

    key_id: int
    kem_id: int
    public_key: bytes
    symmetric: tuple[SymmetricSuite, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 255:
            raise KeyConfigError("key id out of range")
        if not 0 <= self.kem_id <= 0xFFFF:
            raise KeyConfigError("KEM id out of range")
        if not self.symmetric:
            raise KeyConfigError("no symmetric algorithms")
        sizes = KEM_SIZES.get(self.kem_id)
        if sizes is not None and len(self.public_key) != sizes[0]:
            raise KeyConfigError("public key has the wrong length")

    def to_bytes(self) -> bytes:
        """Encode as in RFC 9458 §3.1."""
        algs = b"".join(s.kdf_id.to_bytes(2, "big") + s.aead_id.to_bytes(2, "big")
                        for s in self.symmetric)
        return (self.key_id.to_bytes(1, "big") + self.kem_id.to_bytes(2, "big")
                + self.public_key + len(algs).to_bytes(2, "big") + algs)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyConfig:
        """Decode exactly one key configuration; trailing bytes are an error."""
        reader = Reader(bytes(data))
        config = _read_key_config(reader)
        if not reader.at_end():
            raise KeyConfigError("trailing bytes after key configuration")
        return config

    @property
    def supported(self) -> bool:
        """Whether this implementation can encapsulate to this configuration."""
        return self.kem_id in KEM_SIZES and any(s.supported for s in self.symmetric)

    def choose_suite(self, preferred: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC
                     ) -> SymmetricSuite:
        """The first of ``preferred`` this configuration offers, else its first supported one."""
        for suite in preferred:
            if suite in self.symmetric and suite.supported:
                return suite
        for suite in self.symmetric:
            if suite.supported:
                return suite
        raise UnsupportedSuite("no supported symmetric algorithm")


def _read_key_config(reader: Reader) -> KeyConfig:
    try:
        key_id = reader.uint(1, "key id")
        kem_id = reader.uint(2, "KEM id")
        sizes = KEM_SIZES.get(kem_id)
        if sizes is None:
            raise UnsupportedSuite("unsupported KEM")
        public_key = reader.take(sizes[0], "public key")
        algs_len = reader.uint(2, "symmetric algorithms length")
        if algs_len == 0 or algs_len % 4:
            raise KeyConfigError("bad symmetric algorithms length")
        algs = Reader(reader.take(algs_len, "symmetric algorithms"))
    except DecodeError as exc:
        raise KeyConfigError(str(exc)) from None
    symmetric = []
    while not algs.at_end():
        symmetric.append(SymmetricSuite(algs.uint(2, "KDF id"), algs.uint(2, "AEAD id")))
    return KeyConfig(key_id, kem_id, public_key, tuple(symmetric))


def encode_key_configs(configs: Iterable[KeyConfig]) -> bytes:
    """The ``application/ohttp-keys`` body: each config prefixed by a 2-byte length (§3.2)."""
    out = bytearray()
    for config in configs:
        encoded = config.to_bytes()
        out += len(encoded).to_bytes(2, "big") + encoded
    return bytes(out)


def decode_key_configs(data: bytes, *, skip_unsupported: bool = True) -> list[KeyConfig]:
    """Decode an ``application/ohttp-keys`` body.

    Configurations with an unknown KEM are skipped (their length prefix allows it) unless
    ``skip_unsupported`` is false; any malformed entry raises :class:`KeyConfigError`.
    """
    reader = Reader(bytes(data))
    configs: list[KeyConfig] = []
    if reader.at_end():
        raise KeyConfigError("empty key configuration list")
    while not reader.at_end():
        try:
            length = reader.uint(2, "key configuration length")
            body = reader.take(length, "key configuration")
        except DecodeError as exc:
            raise KeyConfigError(str(exc)) from None
        try:
            configs.append(KeyConfig.from_bytes(body))
        except UnsupportedSuite:
            if not skip_unsupported:
                raise
    return configs


def parse_key_material(data: bytes) -> list[KeyConfig]:
    """Accept either an ``application/ohttp-keys`` list or one bare key configuration."""
    try:
        return decode_key_configs(data)
    except KeyConfigError:
        return [KeyConfig.from_bytes(data)]


# --- gateway keys --------------------------------------------------------------------------

@dataclass(frozen=True)
class GatewayKey:
    """A gateway's key pair plus the configuration it advertises. Never log or repr secrets."""

    config: KeyConfig
    private_key: bytes

    def __repr__(self) -> str:
        return f"GatewayKey(key_id={self.config.key_id}, kem_id={self.config.kem_id:#06x})"

    @property
    def key_id(self) -> int:
        return self.config.key_id

    @classmethod
    def generate(cls, key_id: int, kem_id: int = KEM_X25519,
                 symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> GatewayKey:
        """A fresh key pair from the operating system's CSPRNG (through ``cryptography``)."""
        if kem_id == KEM_X25519:
            private = x25519.X25519PrivateKey.generate()
            sk = private.private_bytes_raw()
        elif kem_id == KEM_P256:
            sk = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value \
                .to_bytes(32, "big")
        else:
            raise UnsupportedSuite("unsupported KEM")
        return cls.from_private_key(key_id, kem_id, sk, symmetric)

    @classmethod
    def from_private_key(cls, key_id: int, kem_id: int, private_key: bytes,
                         symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> GatewayKey:
        """Rebuild a key from its stored private key (raw X25519 or P-256 scalar)."""
        public = _public_bytes(kem_id, _load_private(kem_id, private_key))
        return cls(KeyConfig(key_id, kem_id, public, tuple(symmetric)), bytes(private_key))

    def hpke_private_key(self) -> Any:
        """The pyhpke key object, loaded once (loading costs as much as the DH itself)."""
        return self._hpke_key

    @functools.cached_property
    def _hpke_key(self) -> Any:
        return KEMKey.from_pyca_cryptography_key(_load_private(self.config.kem_id,
                                                               self.private_key))


def _load_private(kem_id: int, sk: bytes) -> Any:
    try:
        if kem_id == KEM_X25519:
            return x25519.X25519PrivateKey.from_private_bytes(sk)
        if kem_id == KEM_P256:
            if len(sk) != 32:
                raise ValueError("bad scalar length")
            return ec.derive_private_key(int.from_bytes(sk, "big"), ec.SECP256R1())
    except ValueError:
        raise KeyConfigError("invalid private key") from None
    raise UnsupportedSuite("unsupported KEM")


def _public_bytes(kem_id: int, private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if kem_id == KEM_X25519:
        raw: bytes = private.public_key().public_bytes_raw()
        return raw
    point: bytes = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return point


def hpke_public_key(config: KeyConfig) -> Any:
    suite = cipher_suite(config.kem_id, KDF_HKDF_SHA256, AEAD_AES_128_GCM)
    try:
        return suite.kem.deserialize_public_key(config.public_key)
    except Exception:  # pyhpke raises several types for a bad point
        raise KeyConfigError("invalid public key") from None


# --- request header and response keys ------------------------------------------------------

@dataclass(frozen=True)
class RequestHeader:
    """The 7-byte header that starts an Encapsulated Request (RFC 9458 §4.1)."""

    key_id: int
    kem_id: int
    kdf_id: int
    aead_id: int

    def to_bytes(self) -> bytes:
        return (self.key_id.to_bytes(1, "big") + self.kem_id.to_bytes(2, "big")
                + self.kdf_id.to_bytes(2, "big") + self.aead_id.to_bytes(2, "big"))

    @classmethod
    def read(cls, reader: Reader) -> RequestHeader:
        return cls(reader.uint(1, "key id"), reader.uint(2, "KEM id"),
                   reader.uint(2, "KDF id"), reader.uint(2, "AEAD id"))

    def info(self, label: bytes = consts.REQUEST_LABEL) -> bytes:
        """The HPKE info string: label || 0x00 || header (§4.3)."""
        return label + b"\x00" + self.to_bytes()


def response_key_nonce(aead_id: int, secret: bytes, enc: bytes,
                       response_nonce: bytes) -> tuple[bytes, bytes]:
    """RFC 9458 §4.4: prk = Extract(enc || response_nonce, secret); key and nonce from prk."""
    nk, nn = AEAD_SIZES[aead_id]
    prk = HKDF.extract(hashes.SHA256(), enc + response_nonce, secret)
    key = HKDFExpand(hashes.SHA256(), nk, b"key").derive(prk)
    nonce = HKDFExpand(hashes.SHA256(), nn, b"nonce").derive(prk)
    return key, nonce


def response_nonce_length(aead_id: int) -> int:
    """max(Nn, Nk) (RFC 9458 §4.4)."""
    nk, nn = AEAD_SIZES[aead_id]
    return max(nk, nn)


def aead(aead_id: int, key: bytes) -> AESGCM | ChaCha20Poly1305:
    """The response AEAD primitive from ``cryptography``."""
    if aead_id == AEAD_CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


# --- client side ---------------------------------------------------------------------------

class ClientResponseContext:
    """What a client keeps after sending a request: opens the matching response (§4.4)."""

    def __init__(self, context: Any, enc: bytes, aead_id: int,
                 label: bytes = consts.RESPONSE_LABEL) -> None:
        self._context = context
        self.enc = enc
        self.aead_id = aead_id
        self._label = label

    def exported_secret(self) -> bytes:
        return bytes(self._context.export(self._label, response_nonce_length(self.aead_id)))

    def decapsulate(self, encapsulated_response: bytes) -> bytes:
        """Open an Encapsulated Response; raises :class:`DecodeError` / :class:`DecryptError`."""
        nonce_len = response_nonce_length(self.aead_id)
        if len(encapsulated_response) < nonce_len + TAG_BYTES:
            raise DecodeError("truncated encapsulated response")
        response_nonce = encapsulated_response[:nonce_len]
        key, nonce = response_key_nonce(self.aead_id, self.exported_secret(), self.enc,
                                        response_nonce)
        try:
            return aead(self.aead_id, key).decrypt(nonce, encapsulated_response[nonce_len:],
                                                   b"")
        except InvalidTag:
            raise DecryptError("response authentication failed") from None


def encapsulate_request(
    config: KeyConfig,
    request: bytes,
    *,
    suite: SymmetricSuite | None = None,
    ephemeral_private_key: bytes | None = None,
) -> tuple[bytes, ClientResponseContext]:
    """Seal ``request`` (Binary HTTP) to ``config`` (RFC 9458 §4.3).

    ``ephemeral_private_key`` fixes the HPKE ephemeral key: for known-answer tests only.
    """
    chosen = suite or config.choose_suite()
    if chosen not in config.symmetric:
        raise UnsupportedSuite("suite not offered by the key configuration")
    header = RequestHeader(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id)
    hpke = cipher_suite(config.kem_id, chosen.kdf_id, chosen.aead_id)
    eks = None
    if ephemeral_private_key is not None:
        sk = _load_private(config.kem_id, ephemeral_private_key)
        eks = KEMKeyPair(KEMKey.from_pyca_cryptography_key(sk),
                         KEMKey.from_pyca_cryptography_key(sk.public_key()))
    enc, context = hpke.create_sender_context(hpke_public_key(config), header.info(), eks=eks)
    ciphertext = context.seal(request)
    return header.to_bytes() + enc + ciphertext, ClientResponseContext(context, enc,
                                                                       chosen.aead_id)


# --- gateway side --------------------------------------------------------------------------

class ServerResponseContext:
    """What a gateway keeps after opening a request: seals the response (§4.4)."""

    def __init__(self, context: Any, enc: bytes, header: RequestHeader,
                 label: bytes = consts.RESPONSE_LABEL) -> None:
        self._context = context
        self.enc = enc
        self.header = header
        self._label = label

    def exported_secret(self) -> bytes:
        return bytes(self._context.export(self._label,
                                          response_nonce_length(self.header.aead_id)))

    def encapsulate(self, response: bytes, *, response_nonce: bytes | None = None) -> bytes:
        """Seal ``response``; ``response_nonce`` is fixed only by known-answer tests."""
        nonce_len = response_nonce_length(self.header.aead_id)
        nonce_bytes = os.urandom(nonce_len) if response_nonce is None else response_nonce
        if len(nonce_bytes) != nonce_len:
            raise ValueError("response nonce has the wrong length")
        key, nonce = response_key_nonce(self.header.aead_id, self.exported_secret(), self.enc,
                                        nonce_bytes)
        return nonce_bytes + aead(self.header.aead_id, key).encrypt(nonce, response, b"")


KeyLookup = Callable[[int], "GatewayKey | None"]


def open_request_header(data: bytes, lookup: KeyLookup) -> tuple[RequestHeader, GatewayKey,
                                                                  bytes, Reader]:
    """Parse header and ``enc`` and find the key; shared by the plain and chunked forms."""
    reader = Reader(bytes(data))
    header = RequestHeader.read(reader)
    key = lookup(header.key_id)
    if key is None:
        raise UnknownKeyId("unknown key id")
    if header.kem_id != key.config.kem_id:
        raise UnsupportedSuite("KEM does not match the key configuration")
    if SymmetricSuite(header.kdf_id, header.aead_id) not in key.config.symmetric:
        raise UnsupportedSuite("KDF/AEAD not offered by the key configuration")
    cipher_suite(header.kem_id, header.kdf_id, header.aead_id)
    enc = reader.take(KEM_SIZES[header.kem_id][1], "encapsulated key")
    return header, key, enc, reader


def decapsulate_request(data: bytes, lookup: KeyLookup) -> tuple[bytes, ServerResponseContext]:
    """Open an Encapsulated Request (RFC 9458 §4.3) with the key ``lookup(key_id)`` returns.

    Raises :class:`DecodeError` (truncated), :class:`UnknownKeyId`, :class:`UnsupportedSuite`
    or :class:`DecryptError`.
    """
    header, key, enc, reader = open_request_header(data, lookup)
    ciphertext = reader.rest()
    if len(ciphertext) < TAG_BYTES:
        raise DecodeError("truncated ciphertext")
    context = recipient_context(header, key, enc, header.info())
    try:
        plaintext = context.open(ciphertext)
    except OpenError:
        raise DecryptError("request authentication failed") from None
    return bytes(plaintext), ServerResponseContext(context, enc, header)


def recipient_context(header: RequestHeader, key: GatewayKey, enc: bytes, info: bytes) -> Any:
    """HPKE SetupBaseR; an invalid ``enc`` point is a :class:`DecryptError`."""
    hpke = cipher_suite(header.kem_id, header.kdf_id, header.aead_id)
    try:
        return hpke.create_recipient_context(enc, key.hpke_private_key(), info)
    except Exception:  # pyhpke raises several types for an invalid or low-order point
        raise DecryptError("invalid encapsulated key") from None
