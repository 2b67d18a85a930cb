"""Binary HTTP messages (RFC 9292), sans-I/O: bytes in, dataclasses out, and back.

Both framings (known-length and indeterminate-length), informational (1xx) responses,
trailers, zero padding and the truncation of empty trailing sections (§3.8) are supported.
Field names are lowercase ASCII tokens (HTTP/2 and HTTP/3 require it; the encoder lowercases,
the decoder rejects uppercase). Field values are byte strings mapped to ``str`` through
Latin-1, so every octet survives a round trip; values holding CR, LF or NUL are refused so a
decoded message can never smuggle a header line into an HTTP/1.1 request.

Request control data keeps the path **with its query string** (``/search?q=cat``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from ohttp_relay import consts
from ohttp_relay._wire import Reader, encode_varint
from ohttp_relay.errors import DecodeError, LimitExceeded, Truncated

Field = tuple[str, str]
"""One field line: (lowercase name, value)."""

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_TOKEN_ANY_CASE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VISIBLE = re.compile(rb"^[\x21-\x7e]*$")
_FORBIDDEN_VALUE = re.compile(rb"[\x00\r\n]")


class Framing(enum.IntEnum):
    """The framing indicator (RFC 9292 §3.3)."""

    KNOWN_LENGTH_REQUEST = 0
    KNOWN_LENGTH_RESPONSE = 1
    INDETERMINATE_REQUEST = 2
    INDETERMINATE_RESPONSE = 3


class Mode(enum.Enum):
    """Which framing to encode with."""

    KNOWN_LENGTH = "known-length"
    INDETERMINATE = "indeterminate-length"


@dataclass(frozen=True)
class Limits:
    """Decoder limits; the defaults live in :mod:`ohttp_relay.consts`."""

    max_field_lines: int = consts.MAX_FIELD_LINES
    max_field_bytes: int = consts.MAX_FIELD_BYTES
    max_section_bytes: int = consts.MAX_SECTION_BYTES
    max_control_bytes: int = consts.MAX_CONTROL_BYTES
    max_content_bytes: int = consts.MAX_CONTENT_BYTES
    max_informational: int = consts.MAX_INFORMATIONAL


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Request:
    """An HTTP request: control data, header fields, content and trailer fields."""

    method: str
    scheme: str
    authority: str
    path: str
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        return _first(self.headers, name)

    def to_bytes(self, mode: Mode = Mode.KNOWN_LENGTH, *, padding: int = 0,
                 truncate: bool = False) -> bytes:
        """Encode (RFC 9292 §3); ``truncate`` omits empty trailing sections (§3.8)."""
        return encode_request(self, mode, padding=padding, truncate=truncate)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
        """Decode a request in either framing; raises :class:`DecodeError`."""
        return decode_request(data, limits)


@dataclass(frozen=True)
class InformationalResponse:
    """An interim 1xx response (RFC 9292 §3.5.1)."""

    status: int
    headers: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Response:
    """An HTTP response: interim responses, final status, header fields, content, trailers."""

    status: int
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[InformationalResponse, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        return _first(self.headers, name)

    def to_bytes(self, mode: Mode = Mode.KNOWN_LENGTH, *, padding: int = 0,
                 truncate: bool = False) -> bytes:
        """Encode (RFC 9292 §3); ``truncate`` omits empty trailing sections (§3.8)."""
        return encode_response(self, mode, padding=padding, truncate=truncate)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Response:
        """Decode a response in either framing; raises :class:`DecodeError`."""
        return decode_response(data, limits)


def _first(fields: Iterable[Field], name: str) -> str | None:
    wanted = name.lower()
    for key, value in fields:
        if key == wanted:
            return value
    return None


def normalize_fields(fields: Iterable[tuple[str, str]]) -> tuple[Field, ...]:
    """Lowercase names and validate names and values; raises ``ValueError`` on bad input."""
    out: list[Field] = []
    for name, value in fields:
        raw_name = name.encode("ascii", "strict") if name.isascii() else b""
        if not _TOKEN_ANY_CASE.match(raw_name):
            raise ValueError("invalid field name")
        raw_value = value.encode("latin-1")
        if _FORBIDDEN_VALUE.search(raw_value):
            raise ValueError("invalid field value")
        out.append((name.lower(), value))
    return tuple(out)


# --- encoding ------------------------------------------------------------------------------

def _vbytes(data: bytes) -> bytes:
    return encode_varint(len(data)) + data


def _field_lines(fields: Iterable[Field]) -> bytes:
    out = bytearray()
    for name, value in fields:
        out += _vbytes(name.lower().encode("ascii"))
        out += _vbytes(value.encode("latin-1"))
    return bytes(out)


def _section(fields: Sequence[Field], mode: Mode) -> bytes:
    lines = _field_lines(fields)
    if mode is Mode.KNOWN_LENGTH:
        return _vbytes(lines)
    return lines + b"\x00"


def _content(content: bytes, mode: Mode) -> bytes:
    if mode is Mode.KNOWN_LENGTH:
        return _vbytes(content)
    return encode_content_chunk(content) + b"\x00"


def encode_content_chunk(chunk: bytes) -> bytes:
    """One indeterminate-length content chunk (empty input encodes to nothing)."""
    return _vbytes(chunk) if chunk else b""


def _rest(headers: Sequence[Field], content: bytes, trailers: Sequence[Field], mode: Mode, *,
          padding: int, truncate: bool) -> bytes:
    """Header section, content, trailers; ``truncate`` drops empty trailing parts (§3.8)."""
    parts = [_section(headers, mode), _content(content, mode), _section(trailers, mode)]
    if truncate:
        present = [bool(headers), bool(content), bool(trailers)]
        while parts and not present[len(parts) - 1]:
            parts.pop()
    return b"".join(parts) + b"\x00" * padding


def _control(text: str) -> bytes:
    return _vbytes(text.encode("ascii"))


def encode_request(request: Request, mode: Mode = Mode.KNOWN_LENGTH, *, padding: int = 0,
                   truncate: bool = False) -> bytes:
    """Encode ``request`` in ``mode`` framing, followed by ``padding`` zero bytes."""
    if padding < 0:
        raise ValueError("negative padding")
    framing = (Framing.KNOWN_LENGTH_REQUEST if mode is Mode.KNOWN_LENGTH
               else Framing.INDETERMINATE_REQUEST)
    out = bytearray(encode_varint(framing))
    for part in (request.method, request.scheme, request.authority, request.path):
        out += _control(part)
    out += _rest(request.headers, request.content, request.trailers, mode,
                 padding=padding, truncate=truncate)
    return bytes(out)


def encode_response_head(status: int, headers: Sequence[Field],
                         informational: Sequence[InformationalResponse] = (),
                         mode: Mode = Mode.INDETERMINATE) -> bytes:
    """Framing, interim responses, final status and header section of a response.

    With :attr:`Mode.INDETERMINATE` the content can then be streamed with
    :func:`encode_content_chunk` and closed with :func:`encode_indeterminate_tail`.
    """
    framing = (Framing.KNOWN_LENGTH_RESPONSE if mode is Mode.KNOWN_LENGTH
               else Framing.INDETERMINATE_RESPONSE)
    return (encode_varint(framing) + _status_lines(status, informational, mode)
            + _section(headers, mode))


def _status_lines(status: int, informational: Sequence[InformationalResponse],
                  mode: Mode) -> bytes:
    if not 200 <= status <= 599:
        raise ValueError("final status out of range")
    out = bytearray()
    for interim in informational:
        if not 100 <= interim.status <= 199:
            raise ValueError("informational status out of range")
        out += encode_varint(interim.status) + _section(interim.headers, mode)
    return bytes(out + encode_varint(status))


def encode_indeterminate_tail(trailers: Sequence[Field] = (), padding: int = 0) -> bytes:
    """Content terminator, trailer section and padding of an indeterminate-length message."""
    return b"\x00" + _section(trailers, Mode.INDETERMINATE) + b"\x00" * padding


def encode_response(response: Response, mode: Mode = Mode.KNOWN_LENGTH, *, padding: int = 0,
                    truncate: bool = False) -> bytes:
    """Encode ``response`` in ``mode`` framing, followed by ``padding`` zero bytes."""
    if padding < 0:
        raise ValueError("negative padding")
    framing = (Framing.KNOWN_LENGTH_RESPONSE if mode is Mode.KNOWN_LENGTH
               else Framing.INDETERMINATE_RESPONSE)
    out = bytearray(encode_varint(framing))
    out += _status_lines(response.status, response.informational, mode)
    out += _rest(response.headers, response.content, response.trailers, mode,
                 padding=padding, truncate=truncate)
    return bytes(out)


# --- decoding ------------------------------------------------------------------------------

def _read_vbytes(reader: Reader, limit: int, what: str) -> bytes:
    length = reader.varint(what)
    if length > limit:
        raise LimitExceeded(f"{what} too long")
    return reader.take(length, what)


def _check_field(name: bytes, value: bytes) -> Field:
    if not _TOKEN.match(name):
        raise DecodeError("invalid field name")
    if _FORBIDDEN_VALUE.search(value):
        raise DecodeError("invalid field value")
    return name.decode("ascii"), value.decode("latin-1")


def _read_field_lines(reader: Reader, end: int | None, limits: Limits) -> tuple[Field, ...]:
    """Field lines up to ``end`` (known-length) or a zero terminator (``end is None``)."""
    fields: list[Field] = []
    start = reader.pos
    while True:
        if end is not None:
            if reader.pos == end:
                break
        elif reader.peek_varint("field section") == 0:
            reader.varint("field section")
            break
        if len(fields) >= limits.max_field_lines:
            raise LimitExceeded("too many field lines")
        name = _read_vbytes(reader, limits.max_field_bytes, "field name")
        if not name:
            raise DecodeError("empty field name")
        value = _read_vbytes(reader, limits.max_field_bytes, "field value")
        if end is not None and reader.pos > end:
            raise DecodeError("field line overruns its section")
        if reader.pos - start > limits.max_section_bytes:
            raise LimitExceeded("field section too large")
        fields.append(_check_field(name, value))
    return tuple(fields)


def _read_section(reader: Reader, mode: Mode, limits: Limits) -> tuple[Field, ...]:
    if mode is Mode.KNOWN_LENGTH:
        length = reader.varint("field section length")
        if length > limits.max_section_bytes:
            raise LimitExceeded("field section too large")
        if length > reader.remaining():
            reader.take(length, "field section")  # raises Truncated (a stream notes the need)
        return _read_field_lines(reader, reader.pos + length, limits)
    return _read_field_lines(reader, None, limits)


def _read_content(reader: Reader, mode: Mode, limits: Limits) -> bytes:
    if mode is Mode.KNOWN_LENGTH:
        return _read_vbytes(reader, limits.max_content_bytes, "content")
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = _read_vbytes(reader, limits.max_content_bytes, "content chunk")
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limits.max_content_bytes:
            raise LimitExceeded("content too large")
        parts.append(chunk)


def _read_rest(reader: Reader, mode: Mode,
               limits: Limits) -> tuple[tuple[Field, ...], bytes, tuple[Field, ...]]:
    """Header section, content, trailers and padding.

    RFC 9292 §3.8: a message may end early where everything after that point is empty, so the
    header section, the content and the trailer section may each be missing at the end.
    """
    if reader.at_end():
        return (), b"", ()
    headers = _read_section(reader, mode, limits)
    if reader.at_end():
        return headers, b"", ()
    content = _read_content(reader, mode, limits)
    if reader.at_end():
        return headers, content, ()
    trailers = _read_section(reader, mode, limits)
    padding = reader.rest()
    if padding.count(0) != len(padding):
        raise DecodeError("non-zero padding")
    return headers, content, trailers


def _read_control_item(reader: Reader, limits: Limits, what: str) -> str:
    raw = _read_vbytes(reader, limits.max_control_bytes, what)
    if not _VISIBLE.match(raw):
        raise DecodeError(f"invalid {what}")
    return raw.decode("ascii")


def _framing(reader: Reader) -> Framing:
    indicator = reader.varint("framing indicator")
    try:
        return Framing(indicator)
    except ValueError:
        raise DecodeError("unknown framing indicator") from None


def decode_request(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
    """Decode a Binary HTTP request (either framing); raises :class:`DecodeError`."""
    reader = Reader(bytes(data))
    framing = _framing(reader)
    if framing is Framing.KNOWN_LENGTH_REQUEST:
        mode = Mode.KNOWN_LENGTH
    elif framing is Framing.INDETERMINATE_REQUEST:
        mode = Mode.INDETERMINATE
    else:
        raise DecodeError("not a request")
    method = _read_control_item(reader, limits, "method")
    if not _TOKEN_ANY_CASE.match(method.encode()):
        raise DecodeError("invalid method")
    scheme = _read_control_item(reader, limits, "scheme")
    authority = _read_control_item(reader, limits, "authority")
    path = _read_control_item(reader, limits, "path")
    headers, content, trailers = _read_rest(reader, mode, limits)
    return Request(method, scheme, authority, path, headers, content, trailers)


def decode_response(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Response:
    """Decode a Binary HTTP response (either framing); raises :class:`DecodeError`."""
    reader = Reader(bytes(data))
    framing = _framing(reader)
    if framing is Framing.KNOWN_LENGTH_RESPONSE:
        mode = Mode.KNOWN_LENGTH
    elif framing is Framing.INDETERMINATE_RESPONSE:
        mode = Mode.INDETERMINATE
    else:
        raise DecodeError("not a response")
    interim: list[InformationalResponse] = []
    while True:
        status = reader.varint("status code")
        if 100 <= status <= 199:
            if len(interim) >= limits.max_informational:
                raise LimitExceeded("too many informational responses")
            interim.append(InformationalResponse(status, _read_section(reader, mode, limits)))
            continue
        if not 200 <= status <= 599:
            raise DecodeError("invalid status code")
        break
    headers, content, trailers = _read_rest(reader, mode, limits)
    return Response(status, headers, content, trailers, tuple(interim))


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Decode either kind of message, chosen by its framing indicator."""
    reader = Reader(bytes(data))
    framing = _framing(reader)
    if framing in (Framing.KNOWN_LENGTH_REQUEST, Framing.INDETERMINATE_REQUEST):
        return decode_request(data, limits)
    return decode_response(data, limits)


def framing_of(data: bytes) -> Framing:
    """The framing indicator of an encoded message."""
    return _framing(Reader(bytes(data)))


class _StreamReader(Reader):
    """A reader that notes how long the input must be for the read that fell short."""

    __slots__ = ("need",)

    def __init__(self, data: bytes | bytearray, pos: int = 0) -> None:
        # A bytearray reads like bytes here (slices, indexing, int.from_bytes): no copy made.
        super().__init__(cast(bytes, data), pos)
        self.need = 0

    def take(self, n: int, what: str = "input") -> bytes:
        if n >= 0 and self.pos + n > len(self.data):
            self.need = self.pos + n
        return super().take(n, what)

    def varint(self, what: str = "varint", *, minimal: bool = False) -> int:
        if self.pos >= len(self.data):
            self.need = self.pos + 1
        return super().varint(what, minimal=minimal)


class ResponseStream:
    """Incremental response decoder: content is released as it arrives.

    ``feed()`` bytes as they come; once the head (interim responses, status, header section)
    is complete, :attr:`head` is set and ``feed()`` returns content pieces. ``close()`` at end
    of stream checks the rest (truncation rules of §3.8 included) and returns the complete
    :class:`Response` without content (the content went out through ``feed()``).
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.head: Response | None = None
        self._buf = bytearray()
        self._mode = Mode.KNOWN_LENGTH
        self._state = "head"
        self._remaining = 0  # known-length content bytes still to come
        self._content_total = 0
        self._trailers: tuple[Field, ...] = ()
        self._head_need = 0  # the head cannot be complete before the buffer is this long
        # The head is parsed incrementally: parsing resumes at _head_pos (after the framing
        # indicator, a status code, each complete field line), so a head sent in small pieces
        # costs linear, not quadratic, time.
        self._head_pos = 0
        self._interim: list[InformationalResponse] = []
        self._status: int | None = None  # the status code whose field section is being read
        self._section_start = 0
        self._fields: list[Field] = []

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        if self._state == "head" and not self._parse_head():
            return out
        while self._buf and self._state == "content":
            piece = self._content_piece()
            if piece is None:
                break
            if piece:
                self._content_total += len(piece)
                if self._content_total > self.limits.max_content_bytes:
                    raise LimitExceeded("content too large")
                out.append(piece)
        # The trailer section and padding wait here for close(): bound them as the whole-message
        # decoder is bounded by the message's size (padding no longer than content may be).
        if self._state == "trailers" and len(self._buf) > (self.limits.max_section_bytes
                                                           + self.limits.max_content_bytes):
            raise LimitExceeded("trailer section and padding too large")
        return out

    def _parse_head(self) -> bool:
        if len(self._buf) < self._head_need:
            return False  # the read that fell short still cannot succeed
        reader = _StreamReader(self._buf, self._head_pos)  # no copy: parsed before any feed
        try:
            if self._head_pos == 0:
                framing = _framing(reader)
                if framing not in (Framing.KNOWN_LENGTH_RESPONSE,
                                   Framing.INDETERMINATE_RESPONSE):
                    raise DecodeError("not a response")
                self._mode = (Mode.KNOWN_LENGTH if framing is Framing.KNOWN_LENGTH_RESPONSE
                              else Mode.INDETERMINATE)
                self._head_pos = reader.pos
            while True:
                if self._status is None:
                    status = reader.varint("status code")
                    if 100 <= status <= 199:
                        if len(self._interim) >= self.limits.max_informational:
                            raise LimitExceeded("too many informational responses")
                    elif not 200 <= status <= 599:
                        raise DecodeError("invalid status code")
                    self._status, self._section_start = status, reader.pos
                    self._head_pos = reader.pos
                section = self._head_section(reader)
                status, self._status = self._status, None
                self._head_pos = reader.pos
                if status >= 200:
                    break
                self._interim.append(InformationalResponse(status, section))
        except Truncated:
            self._head_need = max(reader.need, len(self._buf) + 1)
            return False  # wait for more bytes
        self.head = Response(status, section, b"", (), tuple(self._interim))
        self._state = "content"
        self._remaining = -1
        del self._buf[:reader.pos]
        return True

    def _head_section(self, reader: _StreamReader) -> tuple[Field, ...]:
        """The field section after a status code, resumable after each complete field line."""
        if self._mode is Mode.KNOWN_LENGTH:
            return _read_section(reader, self._mode, self.limits)  # waits for all of it at once
        limits = self.limits
        while reader.peek_varint("field section") != 0:
            if len(self._fields) >= limits.max_field_lines:
                raise LimitExceeded("too many field lines")
            name = _read_vbytes(reader, limits.max_field_bytes, "field name")
            if not name:
                raise DecodeError("empty field name")
            value = _read_vbytes(reader, limits.max_field_bytes, "field value")
            if reader.pos - self._section_start > limits.max_section_bytes:
                raise LimitExceeded("field section too large")
            self._fields.append(_check_field(bytes(name), bytes(value)))
            self._head_pos = reader.pos
        reader.varint("field section")
        section, self._fields = tuple(self._fields), []
        return section

    def _content_piece(self) -> bytes | None:
        """The next piece of content, ``b""`` when content ended, ``None`` to wait."""
        reader = Reader(bytes(self._buf[:8]))
        if self._mode is Mode.KNOWN_LENGTH:
            if self._remaining < 0:
                try:
                    self._remaining = reader.varint("content length")
                except Truncated:
                    return None
                if self._remaining > self.limits.max_content_bytes:
                    raise LimitExceeded("content too large")
                del self._buf[:reader.pos]
            piece = bytes(self._buf[:self._remaining])
            del self._buf[:len(piece)]
            self._remaining -= len(piece)
            if self._remaining == 0:
                self._state = "trailers"
            return piece if piece or self._state == "trailers" else None
        try:
            length = reader.varint("content chunk length")
        except Truncated:
            return None
        if length == 0:
            del self._buf[:reader.pos]
            self._state = "trailers"
            return b""
        if length > self.limits.max_content_bytes:
            raise LimitExceeded("content chunk too large")
        if len(self._buf) < reader.pos + length:
            return None
        piece = bytes(self._buf[reader.pos:reader.pos + length])
        del self._buf[:reader.pos + length]
        return piece

    def close(self) -> Response:
        """Finish: a response cut anywhere but at an allowed point raises :class:`DecodeError`."""
        if self._state == "head":
            return decode_response(bytes(self._buf), self.limits)  # §3.8 or an error
        assert self.head is not None
        if self._state == "content":
            empty_so_far = self._content_total == 0 and self._remaining <= 0
            if self._buf or not empty_so_far:
                raise Truncated("truncated content")
            return self.head
        reader = Reader(bytes(self._buf))
        trailers: tuple[Field, ...] = ()
        if not reader.at_end():
            trailers = _read_section(reader, self._mode, self.limits)
            padding = reader.rest()
            if padding.count(0) != len(padding):
                raise DecodeError("non-zero padding")
        head = self.head
        return Response(head.status, head.headers, b"", trailers, head.informational)
