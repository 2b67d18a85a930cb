"""Every size and limit of the Labyrinth core, with the reason beside it.

Section names refer to "The Labyrinth Encrypted Message Storage Protocol", v1, 2023-12-06.
"""

from __future__ import annotations

from typing import Final

# -- AES-GCM-Extended (Cryptographic Primitives, 1) ------------------------------------------
KEY_LEN: Final = 32  # "32-byte key"; also Appendix "Secret sizes": 32-byte symmetric secrets
EXTENDED_NONCE_LEN: Final = 28  # "28-byte nonce": 16 bytes into HChaCha20, 12 into AES-GCM
HCHACHA20_INPUT_LEN: Final = 16  # nonce[0:16], libsodium's crypto_core_hchacha20_INPUTBYTES
HCHACHA20_KEY_LEN: Final = 32  # crypto_core_hchacha20_KEYBYTES
HCHACHA20_OUTPUT_LEN: Final = 32  # the AES-256 subkey
GCM_NONCE_LEN: Final = 12  # nonce[16:28], AES-GCM's native 96-bit nonce
GCM_TAG_LEN: Final = 16  # AES-GCM tag, appended by `cryptography`
# Largest plaintext we encrypt in one call: far above any message or key bundle, and well
# under AES-GCM's 2**36 - 32 byte per-nonce limit (NIST SP 800-38D).
MAX_PLAINTEXT_LEN: Final = 64 * 1024 * 1024

# -- Padding (Cryptographic Primitives, 2) ---------------------------------------------------
PAD_MIN_LEN: Final = 10  # "fewer than 10 characters ... padded to 10 characters"
PAD_LENGTH_PREFIX_LEN: Final = 4  # "4 byte unsigned big-endian integer"
# Half the AEAD limit: PADMÉ adds at most ~12% plus the 4-byte prefix, so a padded message
# always fits in one AES-GCM-Extended encryption.
PAD_MAX_UNPADDED_LEN: Final = MAX_PLAINTEXT_LEN // 2

# -- Labyrinth HPKE (Cryptographic Primitives, 3) --------------------------------------------
HPKE_VERSION: Final = 0x01  # leading byte of the inner aad and of the ciphertext
X25519_LEN: Final = 32  # X25519 public and private keys
HPKE_MAX_PSK_LEN: Final = 32  # "assert(length(psk) <= 32 bytes)"
HPKE_NONCE: Final = bytes(12)  # "nonce := 0x000000000000000000000000": every subkey is fresh
HPKE_OVERHEAD: Final = 1 + X25519_LEN + GCM_TAG_LEN  # version || ephemeral public key || tag

# -- ORF over Ristretto255 (Cryptographic Primitives, 4) -------------------------------------
RISTRETTO_POINT_LEN: Final = 32  # crypto_core_ristretto255_BYTES
RISTRETTO_SCALAR_LEN: Final = 32  # crypto_core_ristretto255_SCALARBYTES
ORF_OUTPUT_LEN: Final = 32  # HMAC-SHA256 of the server's point
# A client or server domain is an HMAC key: 1..255 bytes keeps it a short label, not data.
ORF_MAX_DOMAIN_LEN: Final = 255
# An ORF input (attachment id, thread||message ids): bounded so the server cannot be asked to
# hash unbounded data through a client, and well above any identifier the mailbox uses.
ORF_MAX_INPUT_LEN: Final = 4096

# -- Epochs (Protocol, Epochs and Opening an Epoch) ------------------------------------------
EPOCH_ENTROPY_LEN: Final = 32  # "newEpochEntropy := random(32)"
EPOCH_ROOT_KEY_LEN: Final = 32  # first epoch: "completely random (generated as 32 bytes)"
# "an integer encoded into a decimal string of at most 11 characters"
EPOCH_SEQUENCE_MAX_DIGITS: Final = 11
EPOCH_SEQUENCE_MAX: Final = 10**EPOCH_SEQUENCE_MAX_DIGITS - 1
# epochID is server-assigned; the storage schema types it BIGINT (Saving Messages), so a
# non-negative signed 64-bit integer.
EPOCH_ID_MAX: Final = 2**63 - 1
MEMBERSHIP_MAC_LEN: Final = 32  # HMAC-SHA256
SIGNATURE_USE_EPOCH_STORAGE_KEY: Final = 0x30  # pk_sign(deviceKeyPriv, 0x30, epochStorageKeyPub)
SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY: Final = 0x31  # ... 0x31, epochStorageAuthKeyPub

# -- Recovery codes (Protocol, Recovery Codes) -----------------------------------------------
RECOVERY_ALPHABET: Final = "ACDEFHJKLMNPQRSTUVWXYZ0123456789"  # 32 symbols, no homoglyphs
# "If the characters B, G, I or O are entered, they are internally converted to 8, C, 1 and 0"
RECOVERY_HOMOGLYPHS: Final = {"B": "8", "G": "C", "I": "1", "O": "0"}
RECOVERY_CODE_LEN: Final = 40  # version + identifier + 34 entropy + 4 error-correction
RECOVERY_VERSION: Final = "2"  # "1 character as a version (currently fixed as 2)"
RECOVERY_IDENTIFIER: Final = "0"  # "1 character as an identifier (currently unused and always 0)"
RECOVERY_ENTROPY_CHARS: Final = 34  # 170 bits of entropy
RECOVERY_CHECK_CHARS: Final = 4  # four GF(32) parity symbols
RECOVERY_MAX_CORRECTED: Final = 3  # "Up to three incorrect digits ... can be corrected"
# Longest text accepted before normalisation: 40 symbols plus generous separators (spaces,
# dashes) a person may type; anything longer is refused before any work.
RECOVERY_MAX_INPUT_LEN: Final = 120
VDEVICE_ID_LEN: Final = 16  # "the vdeviceId is 16 bytes long"
VDEVICE_KEY_LEN: Final = 32  # "vdeviceDecryptionKey is 32 bytes long"
# Facebook account IDs are 64-bit integers "encoded into an ASCII string"; we allow any
# printable-ASCII id without "_" (the label separator) of bounded length.
USER_ID_MAX_LEN: Final = 64

# -- Mailbox records (Protocol, Saving Messages; Appendix, Message encryption versions) -------
CIPHER_VERSION: Final = 3  # the whitepaper's illustrated "cipher version 3"
THREAD_ID_MAX_LEN: Final = 128  # a user id or group thread id (Appendix, Thread IDs)
MESSAGE_ID_MAX_LEN: Final = 128  # opaque client-chosen ids of the messaging layer
INBOX_ID_MAX_LEN: Final = 128
TIMESTAMP_MAX: Final = 2**63 - 1  # BIGINT milliseconds

# -- Recovery-code error correction (Recovery Codes, c) --------------------------------------
# GF(32) = GF(2)[x] / (x^5 + x^2 + 1), a primitive polynomial; symbol i is alphabet[i].
GF32_POLYNOMIAL: Final = 0b100101
# The 4x38 parity-check matrix G with G * (entropy || check) = 0 over GF(32). A [38, 34] code
# over GF(32) cannot be MDS (an MDS code over GF(32) has length at most 33), so the
# whitepaper's "any four columns invertible" is impossible; ours guarantees what correcting
# three wrong characters needs: ANY THREE columns are independent (minimum distance 4). The
# columns are the 33 points of the twisted cubic (1, t, t^2, t^3), t in GF(32), and (0,0,0,1)
# (any four of those independent), with t = x^0..x^28 at positions 0-28, then the first five
# vectors in numeric order that keep every three columns independent at positions 29-33, then
# t = x^29, x^30, 0 and (0,0,0,1) for the four check characters (positions 34-37).
RECOVERY_PARITY_CHECK: Final = (
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     0, 0, 0, 0, 0, 1, 1, 1, 0),
    (1, 2, 4, 8, 16, 5, 10, 20, 13, 26, 17, 7, 14, 28, 29, 31, 27, 19, 3, 6, 12, 24, 21, 15,
     30, 25, 23, 11, 22, 0, 1, 1, 1, 1, 9, 18, 0, 0),
    (1, 4, 16, 10, 13, 17, 14, 29, 27, 3, 12, 21, 30, 23, 22, 18, 2, 8, 5, 20, 26, 7, 28, 31,
     19, 6, 24, 15, 25, 1, 0, 1, 2, 3, 11, 9, 0, 0),
    (1, 8, 10, 26, 14, 31, 3, 24, 30, 11, 18, 4, 5, 13, 7, 29, 19, 12, 15, 23, 9, 2, 16, 20,
     17, 28, 27, 6, 21, 0, 0, 2, 1, 4, 25, 22, 0, 1),
)

# -- Virtual devices (Protocol: Virtual Devices, Adding a Device) -----------------------------
VDEVICE_BUNDLE_VERSION: Final = 1  # leading byte of our virtual-device bundle encoding
VDEVICE_SALT_LEN: Final = 32  # fresh per bundle: the wrapping key differs for every bundle
SIGNATURE_LEN: Final = 64  # an XEdDSA signature
SEQUENCE_FIELD_LEN: Final = 8  # sequence and epoch ids as unsigned 64-bit big-endian integers
# The bundle's sealed secrets: device key, storage key, ORF client state (32 each), epoch
# sequence id and epoch id (8 each), epoch root key and the epoch's head hash (32 each).
VDEVICE_SECRETS_LEN: Final = 3 * 32 + 2 * SEQUENCE_FIELD_LEN + 2 * 32
VDEVICE_BUNDLE_HEADER_LEN: Final = 1 + VDEVICE_ID_LEN + 2 * X25519_LEN + SIGNATURE_LEN + \
    VDEVICE_SALT_LEN
VDEVICE_BUNDLE_LEN: Final = VDEVICE_BUNDLE_HEADER_LEN + EXTENDED_NONCE_LEN + \
    VDEVICE_SECRETS_LEN + GCM_TAG_LEN
# Longest backward or forward chain one restore walks: far above any real account's device
# removals, and it bounds the work a server can make a restoring device do.
MAX_CHAIN_STEPS: Final = 100_000

# -- Epoch-chain integrity (beyond the whitepaper; docs/labyrinth.md "Epoch chain") -----------
EPOCH_HEAD_VERSION: Final = 1  # leading byte of an epoch head's encoding
SIGNATURE_USE_EPOCH_HEAD: Final = 0x32  # pk_sign(deviceKeyPriv, 0x32, head body): ours
EPOCH_HEAD_HASH_LEN: Final = 32  # SHA-256
# version, sequence id, previous head hash, root commitment, opener's device key
EPOCH_HEAD_BODY_LEN: Final = 1 + SEQUENCE_FIELD_LEN + EPOCH_HEAD_HASH_LEN + KEY_LEN + X25519_LEN
EPOCH_HEAD_LEN: Final = EPOCH_HEAD_BODY_LEN + SIGNATURE_LEN

# -- Attachments (Protocol: Attachments) ------------------------------------------------------
# Leading byte of an attachment reference's encoding. Version 2 keys the reference with an
# epoch secret too (version 1, keyed by the ORF output alone, which the server computes,
# is neither produced nor read).
ATTACHMENT_REF_VERSION: Final = 2
ATTACHMENT_ID_MAX_LEN: Final = 256  # the transport's media id / CDN handle, an opaque string
# The reference's sealed content: the media key and digest the message carried, bounded so
# a reference stays a small record.
ATTACHMENT_SECRET_MAX_LEN: Final = 1024

# -- Mailbox records ---------------------------------------------------------------------------
# Thread keys one mailbox.EpochKeys keeps: a page of records (at most a few hundred) names
# far fewer threads, and the bound keeps a long-lived one from growing without end.
EPOCH_KEYS_MAX_THREADS: Final = 4096
