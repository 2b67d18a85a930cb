"""The fuzz targets, one module per decoder of untrusted input.

Every module defines ``ACCEPTED`` (the package's typed errors, the only exceptions the decoder
may raise), ``MAX_LEN`` (the longest input worth generating), ``test_one_input(data)`` and
``seeds()`` (valid encodings the code produces, plus official vectors where they exist). The
modules are imported only by :mod:`fuzz.worker`, under atheris' import instrumentation.
"""

from __future__ import annotations

# In the order of risk: the long runs go through them in this order.
TARGETS: tuple[str, ...] = (
    "bhttp",
    "ohttp_request",
    "ohttp_response",
    "ohttp_keys",
    "chunked_request",
    "chunked_response",
    "tokens",
    "batched",
    "headers",
    "wire",
    "signal_messages",
    "bundle",
    "content",
    "sender_keys",
    "fingerprint",
    "sticker_response",
    "web_manifest",
    "keytrans",
    "kt_wire",
    "labyrinth",
    "labyrinth_devices",
    "labyrinth_server",
    "plexi",
)
