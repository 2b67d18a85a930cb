"""The OHTTP events the relay and the gateway count (Prometheus; docs/metrics.md).

Label values are fixed here; nothing about an address, a target, a key id or a message is
ever a label (statuses chosen by another party are reduced to their class, ``2xx``...).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from service_kit.metrics import one_of, status_class

#: Why the gateway could not open an Encapsulated Request (RFC 9458 §5.2 failure classes).
DECAPSULATION_FAILURES: Final = frozenset({"key_unknown", "too_large", "decrypt_failed",
                                           "malformed"})
#: Why the gateway refused a request before or after decapsulation (outer answers).
GATEWAY_REFUSALS: Final = frozenset({"relay_unauthenticated", "media_type", "too_large",
                                     "replayed", "replay_store_failed"})
#: Why an opened request got a sealed error answer instead of the target's.
INNER_FAILURES: Final = frozenset({"malformed", "date_rejected", "target_invalid",
                                   "target_forbidden", "target_timeout", "target_unreachable",
                                   "target_failed", "target_stream_failed"})
#: Why the relay refused or failed a request.
RELAY_REFUSALS: Final = frozenset({"media_type", "too_large"})
RELAY_UPSTREAM_FAILURES: Final = frozenset({"unreachable", "timeout", "failed",
                                            "stream_failed", "keys_failed",
                                            "keys_unreachable"})
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")

DECAPSULATION_FAILED = Counter("ohttp_gateway_decapsulation_failures",
                               "Encapsulated requests the gateway could not open, by class",
                               ["class"])
GATEWAY_REFUSED = Counter("ohttp_gateway_refused",
                          "Requests the gateway refused with an outer problem, by reason",
                          ["reason"])
GATEWAY_ANSWERED = Counter("ohttp_gateway_answered",
                           "Sealed answers, by framing and the inner status class",
                           ["framing", "status"])
INNER_FAILED = Counter("ohttp_gateway_inner_failures",
                       "Opened requests answered with a sealed error, by reason", ["reason"])
RELAY_FORWARDED = Counter("ohttp_relay_forwarded",
                          "Requests the relay forwarded, by the gateway's status class",
                          ["status"])
RELAY_RATE_LIMITED = Counter("ohttp_relay_rate_limited",
                             "Requests the relay refused for its per-address rate limit")
RELAY_REFUSED = Counter("ohttp_relay_refused", "Requests the relay refused, by reason",
                        ["reason"])
RELAY_UPSTREAM_FAILED = Counter("ohttp_relay_upstream_failures",
                                "Hops to the gateway that failed, by reason", ["reason"])

for _name in DECAPSULATION_FAILURES:
    DECAPSULATION_FAILED.labels(_name)
for _name in GATEWAY_REFUSALS:
    GATEWAY_REFUSED.labels(_name)
for _name in INNER_FAILURES:
    INNER_FAILED.labels(_name)
for _name in RELAY_REFUSALS:
    RELAY_REFUSED.labels(_name)
for _name in RELAY_UPSTREAM_FAILURES:
    RELAY_UPSTREAM_FAILED.labels(_name)


def decapsulation_failed(failure: str) -> None:
    DECAPSULATION_FAILED.labels(one_of(failure, DECAPSULATION_FAILURES)).inc()


def gateway_refused(reason: str) -> None:
    GATEWAY_REFUSED.labels(one_of(reason, GATEWAY_REFUSALS)).inc()


def inner_failed(reason: str) -> None:
    INNER_FAILED.labels(one_of(reason, INNER_FAILURES)).inc()


def gateway_answered(framing: str, status: int) -> None:
    GATEWAY_ANSWERED.labels(one_of(framing, ("whole", "chunked")), status_class(status)).inc()


def relay_forwarded(status: int) -> None:
    RELAY_FORWARDED.labels(status_class(status)).inc()


def relay_refused(reason: str) -> None:
    RELAY_REFUSED.labels(one_of(reason, RELAY_REFUSALS)).inc()


def relay_upstream_failed(reason: str) -> None:
    RELAY_UPSTREAM_FAILED.labels(one_of(reason, RELAY_UPSTREAM_FAILURES)).inc()
