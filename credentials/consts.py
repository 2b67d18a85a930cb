"""Protocol constants and limits of the credentials package, each with its reason."""

from __future__ import annotations

from typing import Final

# RFC 9578 §6: token type 0x0002, Blind RSA (2048-bit), RSABSSA-SHA384-PSS-Deterministic.
TOKEN_TYPE_BLIND_RSA: Final = 0x0002
# RFC 9578 §6: Nk, the modulus length in bytes of the 2048-bit issuer key.
NK: Final = 256
RSA_KEY_BITS: Final = 2048
RSA_PUBLIC_EXPONENT: Final = 65537
# RFC 9578 §6.4: PSS salt length = SHA-384 output length.
PSS_SALT_LENGTH: Final = 48
# RFC 9577 §2.2: Nid, the length of token_key_id (SHA-256 of the token key).
NID: Final = 32
NONCE_LENGTH: Final = 32
CHALLENGE_DIGEST_LENGTH: Final = 32
# RFC 9577 §2.1: redemption_context is either empty or exactly 32 bytes.
REDEMPTION_CONTEXT_LENGTHS: Final = (0, 32)
# TokenRequest (0x0002) = token_type(2) || truncated_token_key_id(1) || blinded_msg(Nk).
TOKEN_REQUEST_LENGTH: Final = 2 + 1 + NK
# Token = token_type(2) || nonce(32) || challenge_digest(32) || token_key_id(32)
#         || authenticator(Nk).
TOKEN_INPUT_LENGTH: Final = 2 + NONCE_LENGTH + CHALLENGE_DIGEST_LENGTH + NID
TOKEN_LENGTH: Final = TOKEN_INPUT_LENGTH + NK

AUTH_SCHEME: Final = "PrivateToken"

# HTTP media types: RFC 9578 §4 and §8.2, and draft-ietf-privacypass-batched-tokens-05 §6
# ("Generic Token Batch Issuance"; the encoding @cloudflare/privacypass-ts 0.8.1 speaks).
MEDIA_DIRECTORY: Final = "application/private-token-issuer-directory"
MEDIA_TOKEN_REQUEST: Final = "application/private-token-request"  # noqa: S105
MEDIA_TOKEN_RESPONSE: Final = "application/private-token-response"  # noqa: S105
MEDIA_BATCH_REQUEST: Final = "application/private-token-generic-batch-request"
MEDIA_BATCH_RESPONSE: Final = "application/private-token-generic-batch-response"
BATCHED_TOKENS_DRAFT: Final = "draft-ietf-privacypass-batched-tokens-05"

DIRECTORY_PATH: Final = "/.well-known/private-token-issuer-directory"
ISSUANCE_PATH: Final = "/token-request"

# Batches are linear in cost for RSA (draft §7.2); one request must not tie up a worker for long.
MAX_BATCH_SIZE: Final = 64
# A generic batch of MAX_BATCH_SIZE type-2 requests plus its 8-byte varint; bigger bodies are 413.
MAX_REQUEST_BODY: Final = 8 + MAX_BATCH_SIZE * TOKEN_REQUEST_LENGTH
# Header values larger than this are refused before parsing (a token header is ~480 bytes).
MAX_HEADER_LENGTH: Final = 16 * 1024

# Issuer defaults (overridable in the service config).
DEFAULT_RATE_LIMIT: Final = 1000
DEFAULT_RATE_WINDOW: Final = 3600
# Short, so a key retirement reaches every cache within a minute (it was 300 s: retired keys
# kept being challenged for five minutes).
DEFAULT_DIRECTORY_MAX_AGE: Final = 60
# How long a key is published before it signs anything, so every client/origin cache sees it.
DEFAULT_KEY_PUBLISH_AHEAD: Final = 0
# The max-age origins put in their challenges and use when caching the issuer directory.
DEFAULT_CHALLENGE_MAX_AGE: Final = 60
# Origins cache the directory at most this long whatever the issuer's max-age says: it bounds
# how long an origin keeps accepting (and challenging with) a retired key.
ORIGIN_MAX_DIRECTORY_AGE: Final = 60
# An origin that cannot reach the issuer keeps using its expired copy this much longer, then
# answers 503: a retired key is never accepted indefinitely by a cut-off instance.
DIRECTORY_STALE_LIMIT: Final = 600
# Spent records of a key withdrawn from the directory are kept this long after an origin first
# saw it withdrawn: far beyond ORIGIN_MAX_DIRECTORY_AGE + DIRECTORY_STALE_LIMIT, the longest any
# instance sharing the store may still accept the key, so a token is never accepted twice.
SPENT_PURGE_DELAY: Final = 3600
# An unknown key id may mean a rotation: origins re-read the directory, at most this often.
FORCED_REFRESH_INTERVAL: Final = 2.0
# The environment variable holding the issuer's key-encryption key (base64url, 32 bytes) when
# private keys are stored AES-256-GCM-wrapped.
KEK_ENV_DEFAULT: Final = "TOKEN_ISSUER_KEK"
