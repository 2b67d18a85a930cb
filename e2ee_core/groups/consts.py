"""Every limit and protocol constant of the Sender Keys layer, with the reason beside it.

The numbers follow libsignal's ``rust/protocol/src/consts.rs`` where libsignal has one.
"""

from __future__ import annotations

SENDER_KEY_VERSION = 3
"""libsignal's current sender-key message version; the wire byte is ``(3 << 4) | 3 = 0x33``."""
SENDER_KEY_VERSION_BYTE = (SENDER_KEY_VERSION << 4) | SENDER_KEY_VERSION

MAX_FORWARD_JUMPS = 25_000
"""Furthest a message's iteration may lie ahead of the chain (libsignal): bounds the HMAC work
one forged or far-future iteration can make a receiver do."""
MAX_MESSAGE_KEYS = 2_000
"""Skipped message keys kept per sender chain (libsignal): out-of-order delivery within this
window decrypts; older skipped keys are dropped first."""
MAX_SENDER_KEY_STATES = 5
"""Chains kept per (sender, distribution id) (libsignal): messages sent just before a sender
rotated its key still decrypt, without keeping every old chain forever."""
MAX_ITERATION = 2**32 - 1
"""Iterations are uint32 on the wire; a chain that reaches this must be rotated."""

CHAIN_KEY_LENGTH = 32
"""HMAC-SHA256 output: the chain key seed."""
MESSAGE_KEY_SEED = b"\x01"
"""HMAC input deriving a message key seed from a chain key (libsignal SenderChainKey)."""
CHAIN_KEY_SEED = b"\x02"
"""HMAC input deriving the next chain key (libsignal SenderChainKey)."""
MESSAGE_KEY_INFO = b"WhisperGroup"
"""HKDF info for a sender message key: 48 bytes -> IV (16) || AES-256 key (32), as libsignal."""
DISTRIBUTION_ID_LENGTH = 16
"""libsignal's distribution id is a UUID; here the 16-byte group id."""
SIGNATURE_LENGTH = 64
"""Ed25519 signature appended to every SenderKeyMessage (libsignal: XEdDSA, also 64 bytes)."""
SIGNING_KEY_LENGTH = 32
"""Raw Ed25519 public key."""

MAX_SENDER_KEY_MESSAGE_BYTES = 512 * 1024
"""A group message carries one padded content (<= 256 KiB); refuse larger input before parsing."""
MAX_DISTRIBUTION_MESSAGE_BYTES = 1024
"""A distribution message is ~120 bytes."""
MAX_RECORD_BYTES = 8 * 1024 * 1024
"""A stored record: 5 states x 2,000 skipped keys x ~45 bytes, with room to spare."""

PADDING_BLOCK = 160
"""Group plaintexts are padded like 1:1 ones (Signal: 0x80 then zeros to a 160-byte multiple),
so the server sees only the padded length."""
GROUP_ID_LENGTH = 16
"""Random 128-bit group ids."""
