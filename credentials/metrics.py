"""The Privacy Pass events the issuer and origins count (Prometheus; docs/metrics.md).

Label values are fixed here: a refusal or redemption reason outside these sets is ``other``.
Nothing about an account, credential, token, nonce or key id is ever a label.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from service_kit.metrics import one_of

#: Why the issuer refused an issuance request (one per HTTP request).
ISSUANCE_REFUSALS: Final = frozenset({
    "unauthenticated", "rate_limited", "unsupported_media_type", "malformed", "unknown_key",
    "unsignable", "empty_batch", "batch_too_large",
})

#: What an origin concluded of a presented token, from :class:`~credentials.errors.TokenRejected`
#: reasons (fixed strings in code) to label values.
_REDEMPTION_OUTCOMES: Final = {
    "missing token": "missing",
    "malformed token": "malformed",
    "unsupported token type": "unsupported_type",
    "token is for another challenge": "wrong_challenge",
    "unknown issuer key": "unknown_key",
    "invalid token signature": "bad_signature",
    "token already spent": "double_spend",
}
REDEMPTION_OUTCOMES: Final = frozenset({"accepted", "issuer_unavailable",
                                        *_REDEMPTION_OUTCOMES.values()})

TOKENS_ISSUED = Counter("privacypass_tokens_issued", "Tokens the issuer signed",
                        ["request"])  # single | batch
ISSUANCE_REFUSED = Counter("privacypass_issuance_refused",
                           "Issuance requests the issuer refused, by reason", ["reason"])
BATCH_ITEMS_NOT_ISSUED = Counter(
    "privacypass_batch_items_not_issued",
    "Token requests of a partly answered batch (206) that were not signed")
REDEMPTIONS = Counter("privacypass_redemptions", "Tokens presented to an origin, by outcome",
                      ["outcome"])

for _kind in ("single", "batch"):
    TOKENS_ISSUED.labels(_kind)
for _reason in ISSUANCE_REFUSALS:
    ISSUANCE_REFUSED.labels(_reason)
for _outcome in REDEMPTION_OUTCOMES:
    REDEMPTIONS.labels(_outcome)


def issuance_refused(reason: str) -> None:
    ISSUANCE_REFUSED.labels(one_of(reason, ISSUANCE_REFUSALS)).inc()


def redeemed(outcome: str) -> None:
    """Count one redemption: ``accepted``, ``issuer_unavailable`` or a refusal reason."""
    REDEMPTIONS.labels(_REDEMPTION_OUTCOMES.get(outcome) or one_of(outcome, REDEMPTION_OUTCOMES)
                       ).inc()
