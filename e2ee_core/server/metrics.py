"""The delivery server's events (Prometheus; docs/metrics.md): envelope and connection counts,
never an account name, a device, a credential or a message."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

from service_kit.metrics import one_of

SEND_REFUSALS: Final = frozenset({"rate_limited", "queue_full"})
PUSH_OUTCOMES: Final = frozenset({"accepted", "auth_failed", "device_removed"})

ENVELOPES_STORED = Counter("e2ee_envelopes_stored", "Envelopes queued for a device")
ENVELOPES_DELIVERED = Counter("e2ee_envelopes_delivered",
                              "Envelopes handed to a device, by channel", ["channel"])
ENVELOPES_ACKED = Counter("e2ee_envelopes_acked",
                          "Envelopes a device acknowledged (deleted from its queue)")
ENVELOPES_EXPIRED = Counter("e2ee_envelopes_expired", "Expired envelopes purged unread")
SENDS_REFUSED = Counter("e2ee_sends_refused", "Sends refused, by reason", ["reason"])
PUSH_CONNECTIONS = Counter("e2ee_push_connections",
                           "Push (WebSocket) connection attempts, by outcome", ["outcome"])
PUSH_OPEN = Gauge("e2ee_push_connections_open", "Push connections open now",
                  multiprocess_mode="livesum")
PUSH_IN_FLIGHT = Gauge("e2ee_push_envelopes_in_flight",
                       "Envelopes pushed and not acknowledged yet (the push queue's depth)",
                       multiprocess_mode="livesum")
ENVELOPES_WAITING = Gauge("e2ee_envelopes_waiting",
                          "Envelopes queued for all devices (the queues' depth), as of the last "
                          "expiry purge (once per purge interval, a minute by default)",
                          multiprocess_mode="mostrecent")
PUSH_BAD_FRAMES = Counter("e2ee_push_bad_frames", "Push connections closed for a bad frame")

for _channel in ("http", "push"):
    ENVELOPES_DELIVERED.labels(_channel)
for _reason in SEND_REFUSALS:
    SENDS_REFUSED.labels(_reason)
for _outcome in PUSH_OUTCOMES:
    PUSH_CONNECTIONS.labels(_outcome)


def send_refused(reason: str) -> None:
    SENDS_REFUSED.labels(one_of(reason, SEND_REFUSALS)).inc()


def push_connection(outcome: str) -> None:
    PUSH_CONNECTIONS.labels(one_of(outcome, PUSH_OUTCOMES)).inc()
