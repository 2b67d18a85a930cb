"""Protocol constants and every limit of the package, with the reason beside each."""

from __future__ import annotations

from typing import Final

# --- Binary HTTP (RFC 9292) ---------------------------------------------------------------
#: Largest QUIC variable-length integer (RFC 9000 §16): 2**62 - 1.
VARINT_MAX: Final = (1 << 62) - 1
#: Field lines per section: generous for real traffic, small enough to bound work per message.
MAX_FIELD_LINES: Final = 256
#: Bytes of one field name or value (HTTP servers commonly cap a line at 8-16 KiB).
MAX_FIELD_BYTES: Final = 16 * 1024
#: Bytes of a whole field section (header or trailer).
MAX_SECTION_BYTES: Final = 64 * 1024
#: Bytes of one control-data item (method, scheme, authority, path).
MAX_CONTROL_BYTES: Final = 8 * 1024
#: Bytes of content: the gateway forwards whole messages, so bound memory per request.
MAX_CONTENT_BYTES: Final = 16 * 1024 * 1024
#: Informational (1xx) responses before the final one: real servers send one or two.
MAX_INFORMATIONAL: Final = 16

# --- Oblivious HTTP (RFC 9458) -------------------------------------------------------------
MEDIA_TYPE_KEYS: Final = "application/ohttp-keys"
MEDIA_TYPE_REQUEST: Final = "message/ohttp-req"
MEDIA_TYPE_RESPONSE: Final = "message/ohttp-res"
#: draft-ietf-ohai-chunked-ohttp-06 media types.
MEDIA_TYPE_CHUNKED_REQUEST: Final = "message/ohttp-chunked-req"
MEDIA_TYPE_CHUNKED_RESPONSE: Final = "message/ohttp-chunked-res"
#: RFC 9458 §4.3 HPKE info label and §4.4 exporter label.
REQUEST_LABEL: Final = b"message/bhttp request"
RESPONSE_LABEL: Final = b"message/bhttp response"
#: draft-ietf-ohai-chunked-ohttp-06 §6.1/§6.2 labels and the final-chunk AAD.
CHUNKED_REQUEST_LABEL: Final = b"message/bhttp chunked request"
CHUNKED_RESPONSE_LABEL: Final = b"message/bhttp chunked response"
FINAL_CHUNK_AAD: Final = b"final"
#: Plaintext bytes per chunk we emit (the draft leaves the size to the sender).
CHUNK_PLAINTEXT_BYTES: Final = 16 * 1024
#: Largest sealed chunk we accept: bounds memory of a streaming decoder.
MAX_CHUNK_BYTES: Final = 64 * 1024
#: RFC 9457 problem type for key configuration problems (RFC 9458 §5.3).
PROBLEM_OHTTP_KEY: Final = "https://iana.org/assignments/http-problem-types#ohttp-key"
#: Problem type for a Date outside the accepted window (RFC 9458 §6.5 / RFC 9110 Date).
PROBLEM_DATE: Final = "https://iana.org/assignments/http-problem-types#date"
#: Header a relay uses to prove itself to a gateway when a shared secret is configured.
RELAY_SECRET_HEADER: Final = "OHTTP-Relay-Secret"  # noqa: S105 - a header name
#: Encapsulated requests larger than this are refused with 413 (content limit + overhead).
MAX_ENCAPSULATED_REQUEST: Final = MAX_CONTENT_BYTES + 1024 * 1024
#: Seconds either side of the gateway clock a request's Date may lie (RFC 9458 §6.5).
DEFAULT_DATE_WINDOW: Final = 60
#: Without a Date window, seen requests are remembered this long.
DEFAULT_REPLAY_TTL: Final = 600
#: Default Cache-Control max-age of the key configuration list.
DEFAULT_KEYS_MAX_AGE: Final = 3600
#: A rotated-out key keeps decrypting this long (clients may hold cached configs).
DEFAULT_KEY_GRACE: Final = 7 * 24 * 3600

#: Bytes read from an upstream per chunk when streaming a response through a hop.
HOP_CHUNK_BYTES: Final = 16 * 1024
#: Kept-alive connections per upstream origin in a hop's pool (a service runs at most this many
#: application threads by default; more would idle).
HOP_POOL_CONNECTIONS: Final = 16
#: Upstream origins a hop keeps pools for (the relay has a few gateways, the gateway its
#: allowlisted targets).
HOP_POOLS: Final = 32
