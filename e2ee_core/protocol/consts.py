"""Every protocol constant and limit in one place, each with the reason beside it."""

from __future__ import annotations

from typing import Final

# -- versions ------------------------------------------------------------------------------
# libsignal v3 (X3DH): both nibbles of the version byte are 3 -> 0x33.
VERSION_X3DH: Final = 3
# Our PQXDH sessions (X3DH + ML-KEM-1024, classic Double Ratchet, no SPQR) use version 4.
VERSION_PQXDH: Final = 4
SUPPORTED_VERSIONS: Final = frozenset({VERSION_X3DH, VERSION_PQXDH})

# -- key encodings (libsignal's type bytes) ----------------------------------------------------
DJB_TYPE: Final = 0x05  # Curve25519 public keys travel as 0x05 || 32 bytes
KYBER_1024_TYPE: Final = 0x08  # KEM public keys: 0x08 || 1568-byte ML-KEM-1024 key
CURVE_KEY_LEN: Final = 32
SERIALIZED_CURVE_KEY_LEN: Final = 33
SIGNATURE_LEN: Final = 64
MLKEM1024_PUBLIC_LEN: Final = 1568
MLKEM1024_CIPHERTEXT_LEN: Final = 1568
MLKEM_SEED_LEN: Final = 64

# -- KDF labels (libsignal's HKDF info strings) -----------------------------------------------
LABEL_X3DH: Final = b"WhisperText"
LABEL_PQXDH: Final = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
LABEL_RATCHET: Final = b"WhisperRatchet"
LABEL_MESSAGE_KEYS: Final = b"WhisperMessageKeys"
# X3DH section 2.2: 32 0xFF bytes before the DH outputs (domain separation from XEdDSA).
DISCONTINUITY_BYTES: Final = b"\xff" * 32
MESSAGE_KEY_SEED: Final = b"\x01"  # HMAC(chain_key, 0x01) -> message key seed
CHAIN_KEY_SEED: Final = b"\x02"  # HMAC(chain_key, 0x02) -> next chain key

# -- message authentication -------------------------------------------------------------------
MAC_LEN: Final = 8  # libsignal truncates HMAC-SHA256 to 8 bytes

# -- ratchet limits (libsignal rust/protocol/src/consts.rs) ------------------------------------
# A counter may jump this far ahead; beyond it the sender is broken or malicious (and deriving
# the skipped keys would cost CPU an attacker controls).
MAX_FORWARD_JUMPS: Final = 25_000
# Skipped message keys kept per receiver chain; the oldest are dropped first (bounded storage).
MAX_MESSAGE_KEYS: Final = 2_000
# Receiver chains kept per session: late messages from older ratchet steps still decrypt.
MAX_RECEIVER_CHAINS: Final = 5
# Previous session states kept per address (simultaneous initiation, restarts).
ARCHIVED_STATES_MAX_LENGTH: Final = 40

# -- padding (Signal's transport padding) -----------------------------------------------------
PADDING_BLOCK: Final = 160  # plaintexts are padded to multiples of 160 bytes (minus one)
PADDING_TERMINATOR: Final = 0x80

# -- fingerprints (safety numbers) ------------------------------------------------------------
FINGERPRINT_ITERATIONS: Final = 5200  # what Signal's apps use
FINGERPRINT_HASH_VERSION: Final = 0  # the 2-byte version prefix inside the iterated hash
SCANNABLE_FINGERPRINT_VERSION: Final = 2  # the version Signal's apps put into the QR code

# -- prekey lifecycle ---------------------------------------------------------------------
MAX_PREKEY_ID: Final = 0xFFFFFF  # libsignal's Medium.MAX_VALUE; ids wrap to 1 (never 0)
PREKEY_BATCH: Final = 100  # one-time prekeys generated per refill
PREKEY_MIN_SERVER_COUNT: Final = 10  # refill when the server holds fewer than this
SIGNED_PREKEY_ROTATION_SECONDS: Final = 2 * 24 * 3600  # rotate the signed prekey every 2 days
# Keep superseded signed/last-resort prekeys this long: delayed PreKey messages still decrypt.
SIGNED_PREKEY_GRACE_SECONDS: Final = 30 * 24 * 3600
MAX_REGISTRATION_ID: Final = 0x3FFF  # 14 bits, as libsignal's keyhelper generates

# -- resource bounds on untrusted input ----------------------------------------------------
MAX_CIPHERTEXT_LEN: Final = 1 << 20  # refuse absurd messages before parsing
