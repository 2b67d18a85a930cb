"""Chunked Oblivious HTTP messages, sans-I/O (draft-ietf-ohai-chunked-ohttp-06).

Follows draft-ietf-ohai-chunked-ohttp-06 (September 2025); the wire format is unchanged in
-07/-08 as far as this implementation uses it. Media types ``message/ohttp-chunked-req`` and
``message/ohttp-chunked-res``.

Request:  header(7) || enc || chunk* || final chunk, where a non-final chunk is
``varint(len) || HPKE Seal(aad="", pt)`` with len >= 1 and the final chunk is
``varint(0) || HPKE Seal(aad="final", pt)`` running to the end of the message. The HPKE info
label is ``message/bhttp chunked request``; HPKE's own sequence number orders the chunks.

Response: ``response_nonce(max(Nn, Nk)) || chunk* || final chunk`` with the same chunk framing;
``secret = Export("message/bhttp chunked response", max(Nn, Nk))``, key and nonce derived as in
RFC 9458 §4.4, and chunk ``i`` sealed with nonce ``aead_nonce XOR I2OSP(i, Nn)``; the final
chunk uses AAD ``final`` so truncation at a chunk boundary is detected.

Every class here is incremental: ``feed()`` bytes as they arrive, get plaintext chunks back, and
``close()`` at end of stream (which opens the final chunk or reports truncation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from pyhpke import OpenError

from ohttp_relay import consts
from ohttp_relay._wire import Reader, encode_varint
from ohttp_relay.errors import DecodeError, DecryptError, LimitExceeded
from ohttp_relay.ohttp import (
    AEAD_SIZES,
    HEADER_BYTES,
    KEM_SIZES,
    TAG_BYTES,
    KeyConfig,
    KeyLookup,
    SymmetricSuite,
    aead,
    cipher_suite,
    hpke_public_key,
    open_request_header,
    recipient_context,
    response_key_nonce,
    response_nonce_length,
)
from ohttp_relay.ohttp import RequestHeader as _Header

DRAFT_VERSION = "draft-ietf-ohai-chunked-ohttp-06"


def _frame(ciphertext: bytes, final: bool) -> bytes:
    return (b"\x00" if final else encode_varint(len(ciphertext))) + ciphertext


class _ChunkParser:
    """Splits a byte stream into (is_final, sealed chunk) frames; the final runs to the end."""

    def __init__(self, max_chunk: int) -> None:
        self._buf = bytearray()
        self._final = False
        self._max = max_chunk

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        if self._final:
            if len(self._buf) > self._max + 1:
                raise LimitExceeded("final chunk too large")
            return out
        while self._buf:
            reader = Reader(bytes(self._buf[:8]))
            try:
                length = reader.varint("chunk length")
            except DecodeError:
                break  # need more bytes for the varint
            if length == 0:
                self._final = True
                del self._buf[:reader.pos]
                if len(self._buf) > self._max:
                    raise LimitExceeded("final chunk too large")
                break
            if length > self._max:
                raise LimitExceeded("chunk too large")
            if len(self._buf) < reader.pos + length:
                break
            out.append(bytes(self._buf[reader.pos:reader.pos + length]))
            del self._buf[:reader.pos + length]
        return out

    def close(self) -> bytes:
        if not self._final:
            raise DecodeError("truncated chunked message: no final chunk")
        return bytes(self._buf)


# --- client side ---------------------------------------------------------------------------

class ChunkedRequestSealer:
    """Client: seals a request as a sequence of chunks."""

    def __init__(self, config: KeyConfig, *, suite: SymmetricSuite | None = None) -> None:
        chosen = suite or config.choose_suite()
        self.header = _Header(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id)
        hpke = cipher_suite(config.kem_id, chosen.kdf_id, chosen.aead_id)
        enc, self._context = hpke.create_sender_context(
            hpke_public_key(config), self.header.info(consts.CHUNKED_REQUEST_LABEL))
        self.enc: bytes = enc
        self._done = False

    def prefix(self) -> bytes:
        """The bytes that start the message: header || enc."""
        return self.header.to_bytes() + self.enc

    def seal(self, plaintext: bytes, *, final: bool = False) -> bytes:
        """One framed chunk; exactly one final chunk ends the message."""
        if self._done:
            raise ValueError("message already finished")
        self._done = final
        aad = consts.FINAL_CHUNK_AAD if final else b""
        return _frame(bytes(self._context.seal(plaintext, aad)), final)

    def response_opener(self) -> ChunkedResponseOpener:
        secret = bytes(self._context.export(consts.CHUNKED_RESPONSE_LABEL,
                                            response_nonce_length(self.header.aead_id)))
        return ChunkedResponseOpener(self.header.aead_id, secret, self.enc)


def encapsulate_chunked_request(config: KeyConfig, chunks: Iterable[bytes], *,
                                suite: SymmetricSuite | None = None
                                ) -> tuple[bytes, ChunkedResponseOpener]:
    """Seal ``chunks`` (the last one final) into a whole chunked Encapsulated Request."""
    sealer = ChunkedRequestSealer(config, suite=suite)
    parts = [sealer.prefix()]
    pending: bytes | None = None
    for chunk in chunks:
        if pending is not None:
            parts.append(sealer.seal(pending))
        pending = chunk
    parts.append(sealer.seal(pending or b"", final=True))
    return b"".join(parts), sealer.response_opener()


class ChunkedResponseOpener:
    """Client: opens a chunked Encapsulated Response incrementally."""

    def __init__(self, aead_id: int, secret: bytes, enc: bytes) -> None:
        self._aead_id = aead_id
        self._secret = secret
        self._enc = enc
        self._nonce_len = response_nonce_length(aead_id)
        self._head = bytearray()
        self._cipher: Any = None
        self._base_nonce = b""
        self._counter = 0
        self._parser = _ChunkParser(consts.MAX_CHUNK_BYTES)

    def _open(self, sealed: bytes, final: bool) -> bytes:
        nn = AEAD_SIZES[self._aead_id][1]
        nonce = (int.from_bytes(self._base_nonce, "big") ^ self._counter).to_bytes(nn, "big")
        self._counter += 1
        if len(sealed) < TAG_BYTES:
            raise DecodeError("truncated response chunk")
        try:
            plaintext: bytes = self._cipher.decrypt(
                nonce, sealed, consts.FINAL_CHUNK_AAD if final else b"")
        except InvalidTag:
            raise DecryptError("response chunk authentication failed") from None
        return plaintext

    def feed(self, data: bytes) -> list[bytes]:
        if self._cipher is None:
            self._head += data
            if len(self._head) < self._nonce_len:
                return []
            response_nonce = bytes(self._head[:self._nonce_len])
            data = bytes(self._head[self._nonce_len:])
            key, self._base_nonce = response_key_nonce(self._aead_id, self._secret, self._enc,
                                                       response_nonce)
            self._cipher = aead(self._aead_id, key)
        return [self._open(sealed, False) for sealed in self._parser.feed(data)]

    def close(self) -> bytes:
        """Open the final chunk; a stream cut at any point raises :class:`DecodeError`."""
        if self._cipher is None:
            raise DecodeError("truncated response nonce")
        return self._open(self._parser.close(), True)

    def open_all(self, data: bytes) -> bytes:
        """Open a whole chunked response at once."""
        return b"".join(self.feed(data)) + self.close()


# --- gateway side --------------------------------------------------------------------------

class ChunkedRequestOpener:
    """Gateway: opens a chunked Encapsulated Request incrementally."""

    def __init__(self, lookup: KeyLookup, *, max_chunk: int = consts.MAX_CHUNK_BYTES) -> None:
        self._lookup = lookup
        self._head = bytearray()
        self._context: Any = None
        self.header: _Header | None = None
        self.enc = b""
        self._parser = _ChunkParser(max_chunk)

    def feed(self, data: bytes) -> list[bytes]:
        if self._context is None:
            self._head += data
            if len(self._head) < HEADER_BYTES:
                return []
            kem_id = int.from_bytes(self._head[1:3], "big")
            need = HEADER_BYTES + KEM_SIZES.get(kem_id, (0, 0))[1]
            if len(self._head) < need:
                return []
            header, key, enc, reader = open_request_header(bytes(self._head), self._lookup)
            self.header, self.enc = header, enc
            self._context = recipient_context(header, key, enc,
                                              header.info(consts.CHUNKED_REQUEST_LABEL))
            data = reader.rest()
        return [self._open(sealed, b"") for sealed in self._parser.feed(data)]

    def _open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return bytes(self._context.open(sealed, aad))
        except OpenError:
            raise DecryptError("request chunk authentication failed") from None

    def close(self) -> bytes:
        if self._context is None:
            raise DecodeError("truncated chunked request header")
        return self._open(self._parser.close(), consts.FINAL_CHUNK_AAD)

    def response_sealer(self, *, response_nonce: bytes | None = None) -> ChunkedResponseSealer:
        if self._context is None or self.header is None:
            raise ValueError("request header not yet read")
        aead_id = self.header.aead_id
        secret = bytes(self._context.export(consts.CHUNKED_RESPONSE_LABEL,
                                            response_nonce_length(aead_id)))
        return ChunkedResponseSealer(aead_id, secret, self.enc, response_nonce=response_nonce)


def decapsulate_chunked_request(data: bytes, lookup: KeyLookup
                                ) -> tuple[bytes, ChunkedRequestOpener]:
    """Open a whole chunked Encapsulated Request; returns plaintext and the opener."""
    opener = ChunkedRequestOpener(lookup)
    body = b"".join(opener.feed(data)) + opener.close()
    return body, opener


class ChunkedResponseSealer:
    """Gateway: seals a response as a stream of chunks."""

    def __init__(self, aead_id: int, secret: bytes, enc: bytes, *,
                 response_nonce: bytes | None = None) -> None:
        nonce_len = response_nonce_length(aead_id)
        self.response_nonce = os.urandom(nonce_len) if response_nonce is None \
            else response_nonce
        key, self._base_nonce = response_key_nonce(aead_id, secret, enc, self.response_nonce)
        self._cipher = aead(aead_id, key)
        self._nn = AEAD_SIZES[aead_id][1]
        self._counter = 0
        self._done = False

    def prefix(self) -> bytes:
        return self.response_nonce

    def seal(self, plaintext: bytes, *, final: bool = False) -> bytes:
        if self._done:
            raise ValueError("message already finished")
        self._done = final
        nonce = (int.from_bytes(self._base_nonce, "big") ^ self._counter).to_bytes(self._nn,
                                                                                  "big")
        self._counter += 1
        sealed = self._cipher.encrypt(nonce, plaintext,
                                      consts.FINAL_CHUNK_AAD if final else b"")
        return _frame(sealed, final)
