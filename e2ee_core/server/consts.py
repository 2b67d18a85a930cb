"""Every limit of the delivery server in one place, with the reason beside it."""

from __future__ import annotations

MiB = 1024 * 1024

# Account names are routing identifiers; a small alphabet keeps them unambiguous in the
# credential format ``name.device.secret`` and free of look-alike characters.
USERNAME_PATTERN = r"[a-z0-9_-]{1,32}"

# Passwords are hashed with argon2id; the bound stops a huge body being fed to the KDF.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256

# Messenger caps the number of linked devices; fanout cost grows with it (one envelope each).
MAX_DEVICES_PER_ACCOUNT = 16

# Device ids are small positive integers, assigned by the server and never reused, so a stale
# session can never be delivered to a newer device that happens to get the same number.
MAX_DEVICE_ID = 2**31 - 1
# Registration ids come from the client (libsignal uses 14 bits); any 31-bit value is accepted.
MAX_REGISTRATION_ID = 2**31 - 1
MAX_KEY_ID = 2**31 - 1

# Public keys and signatures are opaque to the server; the bounds fit X25519/Ed25519 (33 and
# 64 bytes with a type byte) and ML-KEM-1024 (1568 + 1 bytes) with room to spare.
MAX_PUBLIC_KEY_BYTES = 2048
MAX_SIGNATURE_BYTES = 256

# One-time prekeys: a client uploads batches (libsignal: 100) and replenishes below a threshold.
MAX_PREKEYS_PER_UPLOAD = 100
MAX_STORED_PREKEYS = 1000

# One envelope is one encrypted message for one device; media travel as attachments instead.
MAX_ENVELOPE_BYTES = 256 * 1024
# A send covers the recipient's devices plus the sender's other devices.
MAX_ENVELOPES_PER_SEND = 2 * MAX_DEVICES_PER_ACCOUNT
# A multi-recipient send (a group message): accounts and envelopes per request, and their
# content bytes (group messages are small: a 100-member group of 16-device accounts stays far
# below). The JSON body limit below covers it.
MAX_RECIPIENTS_PER_MULTI_SEND = 1000
MAX_ENVELOPES_PER_MULTI_SEND = 4000
MAX_MULTI_SEND_CONTENT_BYTES = 6 * 1024 * 1024
# JSON bodies carry base64 (4/3) of at most MAX_ENVELOPES_PER_SEND envelopes, plus framing.
MAX_JSON_BODY_BYTES = MAX_ENVELOPES_PER_SEND * MAX_ENVELOPE_BYTES * 4 // 3 + 64 * 1024

# Attachments: 20 MiB of plaintext (issue #7), padded by the client to Signal's 5 % buckets
# (e2ee_core.attachments) and wrapped by AES-GCM (nonce, tag): at most 21 MiB + 28 bytes, so
# 22 MiB bounds it. Raise ``max_attachment_bytes`` to carry larger attachments.
MAX_ATTACHMENT_PLAINTEXT_BYTES = 20 * MiB
DEFAULT_MAX_ATTACHMENT_BYTES = 22 * MiB

# Undelivered envelopes and unfetched attachments are deleted after this long (Signal: 30 days).
DEFAULT_ENVELOPE_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_ATTACHMENT_TTL_SECONDS = 30 * 24 * 3600

# Long-poll: a receive waits at most this long (below common proxy idle timeouts of 30-60 s).
DEFAULT_LONG_POLL_MAX_SECONDS = 25.0

#: Wrong passwords per account per window before linking a device is refused with 429 until
#: the window ends. Shared by every server process (kept in the store). Ten guesses per 15
#: minutes make an online guess of even a weak password impractical; the cost of the lock-out
#: (an attacker can delay a victim's linking by 15 minutes) is bounded by the window.
DEFAULT_PASSWORD_MAX_FAILURES = 10
DEFAULT_PASSWORD_WINDOW_SECONDS = 900.0
#: Password attempts per client address per window, per server process (spreading guesses
#: over many accounts from one address).
DEFAULT_PASSWORD_ATTEMPTS_PER_ADDRESS = 30
#: Bundle fetches per requesting account per window (a client fetches bundles for first
#: contacts, new devices and 409 corrections: a few a minute at most), then 429.
DEFAULT_BUNDLE_FETCHES_PER_REQUESTER = 120
#: One-time prekeys handed out per target account per window; beyond it, bundles carry the
#: signed and last-resort keys only, so the target's one-time prekeys cannot be drained.
DEFAULT_ONE_TIME_FETCHES_PER_TARGET = 30
DEFAULT_BUNDLE_WINDOW_SECONDS = 3600.0
#: The receive response tells a device to refill when it has fewer one-time (EC or KEM)
#: prekeys than this on the server (the client's own refill threshold).
PREKEY_LOW_HINT = 10
#: Bytes of envelopes queued for one device (a device offline for weeks of ordinary use stays
#: far below; 30 MiB pushed into a victim's queue in 0.6 s showed the need): 429 queue-full.
DEFAULT_MAX_QUEUED_BYTES_PER_DEVICE = 32 * 1024 * 1024
#: Send requests per device per minute: 429 beyond. Generous because a group message is still
#: one request per member (100 a second covers a message a second to a 100-member group);
#: the queue-bytes quota is what protects a recipient.
DEFAULT_SENDS_PER_DEVICE_PER_MINUTE = 6000
#: Attachment bytes one account may upload per hour (five 22 MiB uploads in 1.1 s were
#: accepted before): 429 beyond.
DEFAULT_ATTACHMENT_BYTES_PER_HOUR = 256 * 1024 * 1024
#: argon2 verifications at once per process: each uses argon2_memory_kib (64 MiB by default).
DEFAULT_PASSWORD_CONCURRENCY = 2
# Waiting receivers re-check the store at this interval (other workers' sends are not signalled).
DEFAULT_POLL_INTERVAL_SECONDS = 0.1
# Envelopes returned per receive; the client acknowledges and asks again for more.
MAX_ENVELOPES_PER_RECEIVE = 100
MAX_ACKS_PER_REQUEST = 1000
# The push channel writes the sends and the acknowledgements that arrive on its connections
# while a store transaction runs together, in the next one (one commit, one worker-thread
# crossing for many; e2ee_core.server.push.GroupCommit). Bounded so that one transaction stays
# short: it holds SQLite's write lock, and on PostgreSQL the locks of every account it touches.
MAX_SENDS_PER_TRANSACTION = 64
MAX_ACKS_PER_TRANSACTION = 256

# Attachment ids are 128-bit random (unguessable capability names), hex encoded.
ATTACHMENT_ID_BYTES = 16
# Device credentials are 256-bit random secrets; the server keeps only their SHA-256.
CREDENTIAL_SECRET_BYTES = 32

# Expired rows are purged at most this often, lazily, from request handlers.
PURGE_INTERVAL_SECONDS = 60.0

# Threads that run the push channel's and the long-polls' store calls, per server process (the
# event loop's default executor). PostgreSQL runs statements in its own processes, so more
# calls in flight keep it busy while Python waits on the network; SQLite has one writer at a
# time, so more threads would only queue on its lock.
EVENT_LOOP_DB_THREADS_POSTGRES = 16
EVENT_LOOP_DB_THREADS_SQLITE = 4

# -- Labyrinth mailbox (issue #15; e2ee_core.server.labyrinth_*) -------------------------------
# Ids of the whitepaper's schema (inbox, thread, message): opaque client strings, bounded as in
# e2ee_core.labyrinth.consts (1..128 printable characters).
LABYRINTH_MAX_ID_CHARS = 128
# One saved message: a padded, encrypted text (attachments travel separately), bounded like
# an envelope so that whatever can be sent can be saved.
LABYRINTH_MAX_BLOB_BYTES = MAX_ENVELOPE_BYTES
# Records per save request: a client batches what it received since its last save; 200
# records of the largest size stay under the JSON body limit.
LABYRINTH_MAX_RECORDS_PER_SAVE = 200
# Records per page of a load, and the page's total blob bytes: a restore pages through the
# history in ~1,000-record steps; the byte bound keeps one answer under ~8 MiB of JSON.
LABYRINTH_DEFAULT_PAGE = 200
LABYRINTH_MAX_PAGE = 1000
LABYRINTH_MAX_PAGE_BYTES = 6 * MiB
# A load cursor is our own opaque token (timestamp and ids of the last record returned).
LABYRINTH_MAX_CURSOR_CHARS = 1024
# Epochs per listing page: a restoring device reads the chain in a few requests (an account
# has at most LABYRINTH_MAX_EPOCHS_PER_ACCOUNT; each epoch is ~0.5 KiB of JSON).
LABYRINTH_MAX_EPOCHS_PER_PAGE = 500
# Per account: messages and their bytes (ten years of heavy use, ~300 a day, fit), epochs (one
# per device removal), virtual devices (recovery codes) and attachment references.
LABYRINTH_MAX_MESSAGES_PER_ACCOUNT = 1_000_000
LABYRINTH_MAX_MESSAGE_BYTES_PER_ACCOUNT = 4 * 1024 * MiB
LABYRINTH_MAX_EPOCHS_PER_ACCOUNT = 10_000
LABYRINTH_MAX_VDEVICES_PER_ACCOUNT = 16
LABYRINTH_MAX_ATTACHMENT_REFS_PER_ACCOUNT = 1_000_000
# Epoch members: every device and every virtual device of the account.
LABYRINTH_MAX_MEMBERS_PER_EPOCH = MAX_DEVICES_PER_ACCOUNT + LABYRINTH_MAX_VDEVICES_PER_ACCOUNT
# Opaque client values, bounded with room above their sizes in e2ee_core.labyrinth: public
# keys 32-33 bytes, XEdDSA signatures 64, HMAC-SHA256 MACs 32, an entropy message 81 bytes
# (HPKE: version, ephemeral key, 32 bytes, tag), encrypted previous-epoch values 55 and 76
# bytes (AES-GCM-Extended), a signed epoch head (H4's chain integrity) a hash, ids and a
# signature.
LABYRINTH_MAX_KEY_BYTES = 64
LABYRINTH_MAX_SIGNATURE_BYTES = 128
LABYRINTH_MAC_BYTES = 32
LABYRINTH_MAX_ENTROPY_MESSAGE_BYTES = 256
LABYRINTH_MAX_EPOCH_METADATA_BYTES = 256
LABYRINTH_MAX_EPOCH_HEAD_BYTES = 4096
# A virtual device's bundle: encrypted private keys, evolved ORF state, salt and root key.
LABYRINTH_MAX_VDEVICE_BUNDLE_BYTES = 64 * 1024
# vdeviceId: 16 bytes (whitepaper, Recovery Codes), hex in paths.
LABYRINTH_VDEVICE_ID_BYTES = 16
# Attachment references are indexed by an ORF output (32 bytes, hex in paths); the reference
# object (encrypted key, digest, pointer) and its MAC are opaque.
LABYRINTH_REF_INDEX_BYTES = 32
LABYRINTH_MAX_ATTACHMENT_REF_BYTES = 4096
# ORF: points per evaluation request (a message with many attachments), and the server-side
# domain labels a client may name (the server's HMAC key is b"labyrinth_orf_" + domain).
LABYRINTH_MAX_ORF_POINTS = 64
# ORF points one device may have evaluated per minute (each costs the server a Ristretto255
# multiplication and an HMAC, ~150 us): one per attachment saved or looked up, so 6,000 is far
# above use while bounding the CPU one device can take; 429 beyond.
LABYRINTH_ORF_POINTS_PER_DEVICE_PER_MINUTE = 6000
LABYRINTH_ORF_DOMAIN_PATTERN = r"[a-z0-9_]{1,64}"

# -- key transparency (issue #16, e2ee_core/server/transparency.py) ------------------------------
#: An epoch is published at least this often even when no device changed, so a client can tell
#: a quiet directory from a stale view (the ``kt_epoch_seconds`` setting).
DEFAULT_KT_EPOCH_SECONDS = 60.0
#: Device-list updates published per epoch; more pending changes make several epochs in a row
#: (publishing grows with the updates: one epoch of 1,000 stays within a few seconds).
KT_MAX_UPDATES_PER_EPOCH = 1000
#: A publisher that lost the race for an epoch to another process reloads and tries again this
#: many times before giving up on the request (each retry starts from the winner's epoch).
KT_PUBLISH_ATTEMPTS = 8
#: Epochs one append-only proof may span: AKD's proof holds one step per epoch, each a few
#: KiB to tens of KiB, so an auditor follows a long range in several requests.
KT_MAX_APPEND_ONLY_EPOCHS = 64
#: Lookup proofs kept per process (about 1-4 KiB each, at most 16 MiB): the same account's
#: bundles fetched again within an epoch reuse its proof instead of three VRF proofs.
KT_CACHED_LOOKUP_PROOFS = 4096
#: Versions one history proof may hold when asked for the most recent ones: the proof decoder's
#: limit (keytrans MAX_UPDATE_PROOFS). A device checks only the versions since its last check.
KT_MAX_HISTORY_VERSIONS = 4096

# The database URL that keeps the server's state in memory (tests, demos; one worker only).
MEMORY_DB = "memory:"
