"""RFC 9577 §2.1.1 / §2.2.1 header syntax: ``WWW-Authenticate`` and ``Authorization``.

A small RFC 9110 §11 challenge parser: several challenges in one field value, other schemes and
their token68 or parameters skipped, unknown ``PrivateToken`` parameters ignored, quoted or bare
values. Every failure is a :class:`~credentials.errors.DecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from credentials import consts
from credentials.errors import DecodeError
from credentials.tokens import Token, TokenChallenge

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BARE_VALUE = re.compile(r"[^\s,\"]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def b64url_encode(data: bytes) -> str:
    """base64url with padding, as RFC 9577's examples print it."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64url_decode(text: str) -> bytes:
    """base64url, padded or not; standard-alphabet characters are refused."""
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9\-_]*={0,2}", text):
        raise DecodeError("not base64url")
    stripped = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("not base64url") from exc



def parse_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a ``WWW-Authenticate`` / ``Authorization`` value into (scheme, params) pairs.

    Parameter names are lower-cased; a token68 credential is kept under the key ``""``.
    """
    if len(value) > consts.MAX_HEADER_LENGTH:
        raise DecodeError("header value too long")
    out: list[tuple[str, dict[str, str]]] = []
    pos, n = 0, len(value)
    current: dict[str, str] | None = None

    def skip(p: int) -> int:
        while p < n and value[p] in " \t,":
            p += 1
        return p

    pos = skip(pos)
    while pos < n:
        m = _TOKEN.match(value, pos)
        if not m:
            raise DecodeError("malformed authentication header")
        name = m.group(0)
        after = _OWS.match(value, m.end())
        assert after is not None
        p = after.end()
        if current is not None and p < n and value[p] == "=":
            # auth-param of the current challenge: name = token / quoted-string
            vstart = _OWS.match(value, p + 1)
            assert vstart is not None
            p = vstart.end()
            if p < n and value[p] == '"':
                text, p = _quoted(value, p)
            else:
                vm = _BARE_VALUE.match(value, p)
                if not vm:
                    raise DecodeError("missing parameter value")
                text, p = vm.group(0), vm.end()
            current.setdefault(name.lower(), text)
            pos = skip(p)
            continue
        # A new challenge: scheme [ 1*SP ( token68 / #auth-param ) ]
        current = {}
        out.append((name, current))
        if p < n and p > m.end():
            t68 = _TOKEN68.match(value, p)
            if t68:
                end = _OWS.match(value, t68.end())
                assert end is not None
                is_param = "=" not in t68.group(0) and end.end() < n and value[end.end()] == "="
                if not is_param and (end.end() >= n or value[end.end()] == ","):
                    current[""] = t68.group(0)
                    p = end.end()
        pos = skip(p)
    return out


def _quoted(value: str, pos: int) -> tuple[str, int]:
    """RFC 9110 §5.6.4 quoted-string starting at ``pos``: (unescaped text, end position)."""
    m = _QUOTED.match(value, pos)
    if not m:
        raise DecodeError("unterminated quoted string")
    text = m.group(1)
    return (_QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text), m.end()


@dataclass(frozen=True)
class PrivateTokenChallenge:
    """One ``PrivateToken`` challenge from a ``WWW-Authenticate`` value."""

    challenge: bytes  # the encoded TokenChallenge, as sent
    token_key: bytes
    max_age: int | None = None

    @property
    def token_type(self) -> int:
        """The token type: the first two bytes of the encoded challenge."""
        value: int = struct.unpack(">H", self.challenge[:2])[0]
        return value

    def token_challenge(self) -> TokenChallenge:
        """The challenge decoded (DecodeError for unknown structures such as grease)."""
        return TokenChallenge.decode(self.challenge)

    def to_header(self) -> str:
        """The challenge as one ``WWW-Authenticate`` element (quoted values)."""
        text = (f'{consts.AUTH_SCHEME} challenge="{b64url_encode(self.challenge)}", '
                f'token-key="{b64url_encode(self.token_key)}"')
        if self.max_age is not None:
            text += f', max-age="{int(self.max_age)}"'
        return text


def parse_www_authenticate(value: str) -> list[PrivateTokenChallenge]:
    """Every well-formed ``PrivateToken`` challenge in ``value`` (others are skipped).

    A ``PrivateToken`` challenge without ``challenge``/``token-key`` or with undecodable values
    is skipped too: a client answers the challenges it understands (RFC 9577 §2.1).
    """
    out = []
    for scheme, params in parse_challenges(value):
        if scheme.lower() != consts.AUTH_SCHEME.lower():
            continue
        try:
            challenge = b64url_decode(params["challenge"])
            token_key = b64url_decode(params["token-key"])
        except (KeyError, DecodeError):
            continue
        if len(challenge) < 2:
            continue
        max_age: int | None = None
        raw_age = params.get("max-age")
        # ASCII digits only: str.isdigit() is also true of "¹" or "²", which int() refuses.
        if raw_age is not None and raw_age.isascii() and raw_age.isdigit() \
                and len(raw_age) <= 10:
            max_age = int(raw_age)
        out.append(PrivateTokenChallenge(challenge, token_key, max_age))
    return out


def authorization_header(token: Token) -> str:
    """RFC 9577 §2.2.1: ``PrivateToken token=<base64url(Token)>``."""
    return f'{consts.AUTH_SCHEME} token="{b64url_encode(token.encode())}"'


def parse_authorization(value: str) -> Token:
    """The first ``PrivateToken`` token in an ``Authorization`` value, decoded."""
    for scheme, params in parse_challenges(value):
        if scheme.lower() == consts.AUTH_SCHEME.lower() and "token" in params:
            return Token.decode(b64url_decode(params["token"]))
    raise DecodeError("no PrivateToken credential")
