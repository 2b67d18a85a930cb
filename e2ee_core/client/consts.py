"""Limits and defaults of the Messenger client, each with its reason."""

from __future__ import annotations

# Framing version of the plaintext inside a pairwise session (see frames.py).
FRAME_VERSION = 1

# A send retried after this many 409 mismatched-devices answers in a row gives up: each round
# fixes every device the server named, so more rounds mean the set keeps changing under us.
MAX_SEND_ATTEMPTS = 5

# One-time prekeys uploaded at registration and per refill (Signal uploads 100).
PREKEY_BATCH = 100
# One-time KEM prekeys per upload: each is 1.6 KB public, so fewer than EC ones; the signed
# last-resort KEM prekey covers exhaustion.
KEM_PREKEY_BATCH = 20
# Refill when the server holds fewer than this many (Signal's threshold is 10).
PREKEY_REFILL_THRESHOLD = 10

# The server's default attachment limit (docs/e2ee-server.md: 22 MiB, room for a 20 MiB file
# after padding and AEAD overhead). The client checks it before encrypting and uploading.
SERVER_MAX_ATTACHMENT_BYTES = 22 * 1024 * 1024

# Long-poll wait cap of the server (a longer wait is refused there).
MAX_WAIT_SECONDS = 25.0

# Receive loops stop after this many batches in one call, so one call cannot spin forever.
MAX_BATCHES_PER_RECEIVE = 50

# Group content that arrives before its invitation is kept until the invitation; any contact
# could send such content for made-up groups, so at most this many items are kept in all.
MAX_PENDING_GROUP_CONTENT = 1000

# The push channel (Messenger.listen): the first pause before reconnecting, doubled on each
# failure up to the maximum; how often the receive loop looks at its stop flag.
PUSH_FIRST_BACKOFF_SECONDS = 0.5
PUSH_MAX_BACKOFF_SECONDS = 30.0
PUSH_POLL_STOP_SECONDS = 0.5

# Key transparency (e2ee_core/client/transparency.py): the epochs whose root hashes are kept to
# catch a forked view (a different root for an epoch seen before), and how often a receive also
# checks this account's device-list history in the directory.
KT_REMEMBERED_EPOCHS = 64
KT_MONITOR_INTERVAL_MS = 15 * 60 * 1000
# The server publishes an epoch at least every kt_epoch_seconds (60 s by default) even when
# nothing changed: a head that has not moved for this long is a stale (or frozen) view.
KT_STALE_AFTER_MS = 60 * 60 * 1000
# Monitoring asks for this many of the newest versions of its account's device list (then
# four times as many while they do not reach back to the last version checked; the first check
# asks for the newest only): the proof stays small however long the account's history.
KT_HISTORY_PAGE = 16
KT_MAX_HISTORY_VERSIONS = 4096  # the proof decoder's limit; beyond, the complete history
