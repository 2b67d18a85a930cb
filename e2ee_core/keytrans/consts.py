"""Every key-transparency constant and limit in one place, with the reason beside each."""

from __future__ import annotations

from typing import Final

# -- ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381 Section 5.5) --------------------------------------
SUITE_STRING: Final = b"\x03"  # RFC 9381 5.5: ECVRF-EDWARDS25519-SHA512-TAI
ENCODE_TO_CURVE_DOMAIN_SEPARATOR_FRONT: Final = b"\x01"  # RFC 9381 5.4.1.1
CHALLENGE_GENERATION_DOMAIN_SEPARATOR_FRONT: Final = b"\x02"  # RFC 9381 5.4.3
PROOF_TO_HASH_DOMAIN_SEPARATOR_FRONT: Final = b"\x03"  # RFC 9381 5.2
DOMAIN_SEPARATOR_BACK: Final = b"\x00"  # RFC 9381: every hash above ends with 0x00
POINT_LEN: Final = 32  # ptLen: RFC 8032 point encoding
SCALAR_LEN: Final = 32  # qLen
CHALLENGE_LEN: Final = 16  # cLen
PROOF_LEN: Final = POINT_LEN + CHALLENGE_LEN + SCALAR_LEN  # pi = Gamma || c || s (80 bytes)
OUTPUT_LEN: Final = 64  # beta is a full SHA-512 digest
SECRET_KEY_LEN: Final = 32  # RFC 8032 secret key (seed)
COFACTOR: Final = 8
# q, the prime order of the edwards25519 base point (RFC 8032 Section 5.1). Used only to reject a
# proof's s >= q (RFC 9381 5.3 step 6); the group arithmetic itself is libsodium's.
GROUP_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
# p, the field prime: only compared against, to reject non-canonical point encodings (y >= p).
FIELD_PRIME: Final = 2**255 - 19
# try_and_increment writes ctr as one byte (I2OSP(ctr, 1)): at most 256 attempts. Each fails with
# probability about 1/2, so running out means a broken hash, not bad luck.
MAX_ENCODE_TO_CURVE_ATTEMPTS: Final = 256

# -- AKD WhatsApp v1 configuration (akd_core/src/configuration/whatsapp_v1.rs) ------------------
DIGEST_LEN: Final = 32  # BLAKE3 default output; every tree hash and node value
NODE_LABEL_LEN: Final = 32  # label_val bytes (a VRF output truncated to 32 bytes)
NODE_LABEL_BITS: Final = 256  # label_len ranges over 0..256
EMPTY_VALUE: Final = b"\x00"  # hashed to stand for an absent value (stale leaf, empty root)
FRESH: Final = b"\x01"  # VersionFreshness::Fresh
STALE: Final = b"\x00"  # VersionFreshness::Stale

# -- decoding limits (proofs are untrusted input) ---------------------------------------------
# A proof must not make us allocate or loop without bound before a hash check can fail.
MAX_PROOF_BYTES: Final = 1 << 20  # 1 MiB; AKD's history proof for 3 versions is under 5 KB
# A Merkle path in a 256-bit-label Patricia tree has at most one step per bit.
MAX_SIBLING_PROOFS: Final = NODE_LABEL_BITS
# A commitment value or nonce larger than this is not a key a directory would publish.
MAX_VALUE_BYTES: Final = 64 * 1024
MAX_AKD_LABEL_BYTES: Final = 4 * 1024  # user/device identifiers are short
# get_marker_versions yields at most ~64 past and ~130 future markers for 64-bit versions;
# a proof claiming more marker proofs than that is refused before any VRF work.
MAX_MARKER_PROOFS: Final = 256
# Update proofs in one history proof: each costs two VRF verifications; past this the client
# should ask with HistoryParams.most_recent(n).
MAX_UPDATE_PROOFS: Final = 4096
# Elements in one append-only step: inserted leaves plus unchanged subtree roots, roughly
# (updates in the epoch) x (tree depth). Measured (bench keytrans): an epoch of 1,000 updates
# over 1,000,000 labels is 18,792 elements, 981,108 bytes (about 52 bytes per element), so the
# 1 MiB cap of the other proofs would stop an auditor at about 1,050 updates per epoch.
MAX_APPEND_ONLY_ELEMENTS: Final = 1 << 18
# Append-only proofs are read by the auditor only (one process, one proof at a time): room for
# MAX_APPEND_ONLY_ELEMENTS elements, about 13 MiB, with a margin.
MAX_APPEND_ONLY_PROOF_BYTES: Final = 16 << 20
MAX_U64: Final = 2**64 - 1

# -- auditor signatures (Cloudflare plexi; plexi_core/src/lib.rs) -----------------------------
PLEXI_PROTOBUF_ED25519: Final = 0x0001  # Ciphersuite::ProtobufEd25519
PLEXI_BINCODE_ED25519: Final = 0x0002  # Ciphersuite::BincodeEd25519 (legacy bincode config)
ED25519_KEY_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64
# A log's name ("whatsapp.key-transparency.v1"): a DNS-like string, never long; a URL path
# segment in the auditor's API.
MAX_NAMESPACE_BYTES: Final = 255
# An epoch digest is a root hash (32 bytes for BLAKE3); SHA-512-sized digests still fit.
MAX_DIGEST_BYTES: Final = 64
# A SignatureResponse is a small JSON object (~500 bytes); anything larger is refused unread.
MAX_SIGNATURE_RESPONSE_BYTES: Final = 16 * 1024
MAX_U32: Final = 2**32 - 1
# The auditor asks for at most this many epochs per append-only proof: each step is about
# 600 bytes per update in the epoch, and the proof must stay under MAX_PROOF_BYTES.
AUDIT_MAX_EPOCHS_PER_PROOF: Final = 64
# Bodies the auditor reads from a log server: an epoch head is ~200 bytes of JSON.
MAX_HEAD_RESPONSE_BYTES: Final = 4 * 1024
# How long the auditor waits for the log's server (and a client for an auditor), in seconds.
AUDIT_HTTP_TIMEOUT: Final = 30.0
