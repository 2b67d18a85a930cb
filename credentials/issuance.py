"""RFC 9578 §6 issuance for token type 0x0002 and the §4 issuer directory, sans-I/O.

Client: :func:`begin_issuance` -> send ``PendingToken.request`` -> :meth:`PendingToken.finalize`.
Issuer: :class:`IssuerKeys` maps truncated key ids to signers and evaluates requests.
Origin: :func:`verify_token` checks a token against a challenge and the issuer's keys.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import blind_rsa, consts
from credentials.errors import (
    BlindRSAError,
    DecodeError,
    IssuanceError,
    TokenRejected,
)
from credentials.headers import b64url_decode, b64url_encode
from credentials.tokens import (
    Token,
    TokenChallenge,
    TokenRequest,
    TokenResponse,
    decode_token_key,
    encode_token_key,
    token_key_id,
)

VARIANT = blind_rsa.Variants.PSS_DETERMINISTIC  # RFC 9578 §6: RSABSSA-SHA384-PSS-Deterministic


# -- client ----------------------------------------------------------------------------------
@dataclass
class PendingToken:
    """Client state between a TokenRequest and its TokenResponse (holds the secret blind)."""

    request: TokenRequest
    token_input: bytes
    public_key: rsa.RSAPublicKey = field(repr=False)
    _inv: int = field(repr=False)

    def finalize(self, response: TokenResponse) -> Token:
        """RFC 9578 §6.3: unblind, verify (raises BlindRSAError family), build the Token."""
        sig = blind_rsa.finalize(self.public_key, self.token_input, response.blind_sig,
                                 self._inv, VARIANT)
        return Token.decode(self.token_input + sig)


def begin_issuance(
    challenge: bytes,
    token_key: bytes,
    *,
    nonce: bytes | None = None,
    salt: bytes | None = None,
    blind: int | None = None,
) -> PendingToken:
    """RFC 9578 §6.1: a TokenRequest for an encoded ``challenge`` and the issuer ``token_key``.

    ``nonce``, ``salt`` and ``blind`` are fixed only by known-answer tests.
    """
    pk = decode_token_key(token_key)
    if len(challenge) < 2 or challenge[:2] != consts.TOKEN_TYPE_BLIND_RSA.to_bytes(2, "big"):
        raise DecodeError("challenge is not for token type 0x0002")
    nonce = secrets.token_bytes(consts.NONCE_LENGTH) if nonce is None else nonce
    if len(nonce) != consts.NONCE_LENGTH:
        raise DecodeError("nonce must be 32 bytes")
    key_id = token_key_id(token_key)
    digest = TokenChallenge.decode(challenge).digest()
    token_input = Token(consts.TOKEN_TYPE_BLIND_RSA, nonce, digest, key_id, b"").token_input()
    blinded, inv = blind_rsa.blind(pk, token_input, VARIANT, salt=salt, r=blind)
    return PendingToken(TokenRequest(key_id[-1], blinded), token_input, pk, inv)


# -- issuer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuerKey:
    """One issuer key pair with its published encoding and id."""

    signer: blind_rsa.BlindSigner
    token_key: bytes
    key_id: bytes
    not_before: int

    @classmethod
    def from_private_key(cls, sk: rsa.RSAPrivateKey, not_before: int = 0) -> IssuerKey:
        """Wrap a 2048-bit private key with its signer, token-key encoding and key id."""
        if sk.key_size != consts.RSA_KEY_BITS:
            raise BlindRSAError("token type 0x0002 needs a 2048-bit key")
        spki = encode_token_key(sk.public_key())
        return cls(blind_rsa.BlindSigner(sk), spki, token_key_id(spki), not_before)


class IssuerKeys:
    """The keys an issuer signs with, found by truncated key id (RFC 9578 §6.2)."""

    def __init__(self, keys: Iterable[IssuerKey] = ()) -> None:
        self._by_truncated: dict[int, list[IssuerKey]] = {}
        for key in keys:
            self._by_truncated.setdefault(key.key_id[-1], []).append(key)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_truncated.values())

    def has_truncated(self, truncated: int) -> bool:
        """Whether some key's id ends in ``truncated``."""
        return truncated in self._by_truncated

    def evaluate(self, request: TokenRequest, now: int) -> TokenResponse:
        """BlindSign a request with the key its truncated id names; IssuanceError if none."""
        key = self._key_for(request, now)
        try:
            return TokenResponse(key.signer.blind_sign(request.blinded_msg))
        except BlindRSAError as exc:
            raise IssuanceError("invalid blinded message") from exc

    def evaluate_many(self, requests: Sequence[TokenRequest], now: int
                      ) -> list[TokenResponse | IssuanceError]:
        """:meth:`evaluate` for each request, a failed one giving its error in its place; the
        signatures of each key are checked together (``BlindSigner.blind_sign_many``)."""
        results: list[TokenResponse | IssuanceError] = [
            IssuanceError("not evaluated")] * len(requests)
        groups: dict[int, tuple[IssuerKey, list[int]]] = {}
        for index, request in enumerate(requests):
            try:
                key = self._key_for(request, now)
            except IssuanceError as exc:
                results[index] = exc
                continue
            groups.setdefault(id(key), (key, []))[1].append(index)
        for key, indexes in groups.values():
            signed = key.signer.blind_sign_many([requests[i].blinded_msg for i in indexes])
            for index, out in zip(indexes, signed, strict=True):
                results[index] = (TokenResponse(out) if isinstance(out, bytes)
                                  else IssuanceError("invalid blinded message"))
        return results

    def _key_for(self, request: TokenRequest, now: int) -> IssuerKey:
        if request.token_type != consts.TOKEN_TYPE_BLIND_RSA:
            raise IssuanceError("unsupported token type")
        candidates = [k for k in self._by_truncated.get(request.truncated_token_key_id, ())
                      if k.not_before <= now]
        if not candidates:
            raise IssuanceError("unknown token key")
        # Truncated ids of live keys are kept distinct at generation; the first one is it.
        return candidates[0]


# -- origin ----------------------------------------------------------------------------------
def verify_token(
    token: Token, challenge_digest: bytes, keys: Mapping[bytes, rsa.RSAPublicKey]
) -> None:
    """RFC 9577 §2.2 / RFC 9578 §6.4: type, challenge digest, key id and signature."""
    if token.token_type != consts.TOKEN_TYPE_BLIND_RSA:
        raise TokenRejected("unsupported token type")
    if not hmac.compare_digest(token.challenge_digest, challenge_digest):
        raise TokenRejected("token is for another challenge")
    pk = keys.get(token.token_key_id)
    if pk is None:
        raise TokenRejected("unknown issuer key")
    try:
        blind_rsa.verify(pk, token.token_input(), token.authenticator, VARIANT)
    except BlindRSAError as exc:
        raise TokenRejected("invalid token signature") from exc


# -- issuer directory (RFC 9578 §4) ----------------------------------------------------------
@dataclass(frozen=True)
class DirectoryKey:
    """One ``token-keys`` entry of the issuer directory (RFC 9578 §4)."""

    token_type: int
    token_key: bytes
    not_before: int | None = None

    @property
    def key_id(self) -> bytes:
        """SHA-256 of the token-key encoding."""
        return token_key_id(self.token_key)


@dataclass(frozen=True)
class IssuerDirectory:
    """The issuer directory document (RFC 9578 §4)."""

    issuer_request_uri: str
    token_keys: tuple[DirectoryKey, ...]

    def to_json(self) -> bytes:
        """The directory as compact JSON."""
        keys: list[dict[str, Any]] = []
        for key in self.token_keys:
            entry: dict[str, Any] = {"token-type": key.token_type,
                                     "token-key": b64url_encode(key.token_key)}
            if key.not_before is not None:
                entry["not-before"] = key.not_before
            keys.append(entry)
        doc = {"issuer-request-uri": self.issuer_request_uri, "token-keys": keys}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> IssuerDirectory:
        """Parse a directory; DecodeError on anything that is not one."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deep a nesting
            raise DecodeError("issuer directory is not JSON") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("issuer-request-uri"), str):
            raise DecodeError("issuer directory lacks issuer-request-uri")
        raw_keys = doc.get("token-keys")
        if not isinstance(raw_keys, list):
            raise DecodeError("issuer directory lacks token-keys")
        keys = []
        for entry in raw_keys:
            if not isinstance(entry, dict):
                raise DecodeError("token-keys entry is not an object")
            token_type, key = entry.get("token-type"), entry.get("token-key")
            not_before = entry.get("not-before")
            if not isinstance(token_type, int) or isinstance(token_type, bool) or \
                    not isinstance(key, str):
                raise DecodeError("token-keys entry lacks token-type or token-key")
            if not_before is not None and (not isinstance(not_before, int)
                                           or isinstance(not_before, bool)):
                raise DecodeError("not-before is not an integer")
            keys.append(DirectoryKey(token_type, b64url_decode(key), not_before))
        return cls(doc["issuer-request-uri"], tuple(keys))

    def blind_rsa_keys(self, now: int | None = None) -> list[DirectoryKey]:
        """Type-2 keys; with ``now``, only those already valid (``not-before`` passed)."""
        return [k for k in self.token_keys if k.token_type == consts.TOKEN_TYPE_BLIND_RSA
                and (now is None or k.not_before is None or k.not_before <= now)]


def public_keys(keys: Sequence[DirectoryKey]) -> dict[bytes, rsa.RSAPublicKey]:
    """key id -> public key for every decodable type-2 key (others are skipped)."""
    out = {}
    for key in keys:
        try:
            out[key.key_id] = decode_token_key(key.token_key)
        except DecodeError:
            continue
    return out
