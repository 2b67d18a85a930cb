"""Attachment references (Protocol: Attachments): ORF-indexed, keyed by an epoch secret too.

Attachments stay stored as transmitted (encrypted under their own key, on the media store).
The mailbox keeps, per attachment, a small *reference* holding what a device needs to fetch
and decrypt it again (the pointer the message carried), indexed by the ORF of the attachment
id, so that:

- the server cannot link an attachment across mailboxes (each account's ORF differs) nor learn
  its id (the ORF input never reaches it);
- the server cannot open a reference although it computes every ORF output (the server map
  ends with its HMAC and the output is returned to the device): only the *index* comes from
  the output alone; the keys also need a secret derived from the root key of the mailbox epoch
  current when the reference was sealed, which the server never sees;
- a revoked device, whose ORF share the server deleted and which lacks the roots of the epochs
  opened after its revocation, cannot open a reference sealed after it, even when handed the
  ORF output (attachment unlinkability and post-revocation secrecy);
- the reference carries a MAC over the (thread, message) that references it, so deleting that
  message deletes the reference: a device presents the MAC, and a reference whose MAC does not
  match the message being deleted is left alone.

With ``output`` the ORF output of the attachment id (domain ``attachment_ref``) and ``epoch``
(``seq``, ``root``) the mailbox epoch current at sealing::

    index            = kdf(output, null, "attachment_reference_index_v2")
    secret           = kdf(root, null, "attachment_reference_secret_<seq>")  (seq in decimal)
    (refKey, macKey) = kdf(output, salt = secret, "attachment_reference_v2", 32, 32)
    header           = 0x02 || u64be(seq)
    reference        = header || encrypt(refKey, aad = header || index, pad(pointer))
    mac              = mac(u16be(len thread) || thread || message id, macKey)

The sequence id travels in clear (the server knows which epoch is current anyway) so that a
device finds the root to use; it is authenticated as aad. A restored or linked device holds
every earlier epoch's root (backward chaining), so it opens every reference. Version 1 (keys
from the ORF output alone, which the server could open) is no longer produced nor read:
:class:`UnsupportedAttachmentReference`.

(The whitepaper names the parts; this layout and these labels are ours, with vectors.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import orf
from .consts import (
    ATTACHMENT_ID_MAX_LEN,
    ATTACHMENT_REF_VERSION,
    ATTACHMENT_SECRET_MAX_LEN,
    EXTENDED_NONCE_LEN,
    GCM_TAG_LEN,
    KEY_LEN,
    MESSAGE_ID_MAX_LEN,
    ORF_OUTPUT_LEN,
    PAD_LENGTH_PREFIX_LEN,
    SEQUENCE_FIELD_LEN,
    THREAD_ID_MAX_LEN,
)
from .epochs import Epoch
from .errors import (
    DecryptionFailed,
    InvalidAttachmentReference,
    InvalidLabel,
    InvalidPadding,
    UnsupportedAttachmentReference,
)
from .padding import pad, padded_size, unpad
from .primitives import decrypt, encrypt_with_nonce, kdf, kdf_key, mac, mac_equal

#: The ORF domain (client side: the HMAC key; the server's is its own prefix + this).
CLIENT_DOMAIN = b"attachment_ref"
SERVER_DOMAIN = "attachment_ref"
INDEX_LABEL = b"attachment_reference_index_v2"
KEYS_LABEL = b"attachment_reference_v2"
EPOCH_LABEL_PREFIX = "attachment_reference_secret_"  # + the decimal sequence id
_HEADER_LEN = 1 + SEQUENCE_FIELD_LEN
# header, nonce, the padded pointer (with its length prefix) and the tag
_MIN_REFERENCE_LEN = _HEADER_LEN + EXTENDED_NONCE_LEN + PAD_LENGTH_PREFIX_LEN + \
    padded_size(1) + GCM_TAG_LEN
_MAX_REFERENCE_LEN = _HEADER_LEN + EXTENDED_NONCE_LEN + PAD_LENGTH_PREFIX_LEN + \
    padded_size(ATTACHMENT_SECRET_MAX_LEN) + GCM_TAG_LEN


@dataclass(frozen=True, slots=True)
class ReferenceKeys:
    """The keys of one attachment's reference in one epoch: the server-side index (from the
    ORF output alone), the epoch's sequence id and two keys (that also need the epoch root)."""

    index: bytes
    sequence_id: int
    reference_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)


def _check_id(attachment_id: bytes) -> None:
    if not 1 <= len(attachment_id) <= ATTACHMENT_ID_MAX_LEN:
        raise InvalidAttachmentReference("attachment id must be 1..256 bytes")


def _check_output(output: bytes) -> None:
    if not isinstance(output, bytes) or len(output) != ORF_OUTPUT_LEN:
        raise InvalidAttachmentReference("ORF output must be 32 bytes")


def blind(state: orf.ClientState, attachment_id: bytes) -> bytes:
    """The blinded point to send to the server's ORF evaluation for ``attachment_id``."""
    _check_id(attachment_id)
    return orf.client_map(state, CLIENT_DOMAIN, attachment_id)


def reference_index(output: bytes) -> bytes:
    """Where the reference of the attachment with this ORF output is stored (the server can
    compute it too: it stores references by it)."""
    _check_output(output)
    return kdf_key(output, None, INDEX_LABEL)


def epoch_secret(epoch: Epoch) -> bytes:
    """The per-epoch secret every reference key of ``epoch`` needs (never sent anywhere)."""
    label = f"{EPOCH_LABEL_PREFIX}{epoch.sequence_id}".encode("ascii")
    return kdf_key(epoch.root_key, None, label)


def reference_keys(output: bytes, epoch: Epoch) -> ReferenceKeys:
    """Index, and the reference and MAC keys in ``epoch``, from the ORF output."""
    index = reference_index(output)
    reference_key, mac_key = kdf(output, epoch_secret(epoch), KEYS_LABEL, KEY_LEN, KEY_LEN)
    return ReferenceKeys(index, epoch.sequence_id, reference_key, mac_key)


def reference_sequence_id(reference: bytes) -> int:
    """The sequence id of the epoch a reference was sealed in (clear, authenticated at
    opening): which epoch root to derive its keys from. Strict:
    :class:`UnsupportedAttachmentReference` for another version (1 included),
    :class:`InvalidAttachmentReference` for a malformed one."""
    if not isinstance(reference, bytes) or not reference:
        raise InvalidAttachmentReference("attachment reference has the wrong length")
    if reference[0] != ATTACHMENT_REF_VERSION:
        raise UnsupportedAttachmentReference("unknown attachment reference version")
    if not _MIN_REFERENCE_LEN <= len(reference) <= _MAX_REFERENCE_LEN:
        raise InvalidAttachmentReference("attachment reference has the wrong length")
    return int.from_bytes(reference[1:_HEADER_LEN], "big")


def _message_label(thread_id: str, message_id: str) -> bytes:
    if (not 1 <= len(thread_id) <= THREAD_ID_MAX_LEN or not thread_id.isprintable()
            or not 1 <= len(message_id) <= MESSAGE_ID_MAX_LEN or not message_id.isprintable()):
        raise InvalidLabel("thread and message ids must be 1..128 printable characters")
    try:
        thread, message = thread_id.encode("utf-8"), message_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidLabel("thread and message ids must be valid UTF-8") from None
    return len(thread).to_bytes(2, "big") + thread + message


def deletion_mac(keys: ReferenceKeys, thread_id: str, message_id: str) -> bytes:
    """The MAC over the (thread, message) that references the attachment."""
    return mac(_message_label(thread_id, message_id), keys.mac_key)


def matches(keys: ReferenceKeys, stored_mac: bytes, thread_id: str, message_id: str) -> bool:
    """Whether a stored reference belongs to the message (thread, message id): constant time."""
    return len(stored_mac) == KEY_LEN and mac_equal(
        deletion_mac(keys, thread_id, message_id), stored_mac)


def _header(keys: ReferenceKeys) -> bytes:
    return bytes([ATTACHMENT_REF_VERSION]) + keys.sequence_id.to_bytes(SEQUENCE_FIELD_LEN, "big")


def seal(keys: ReferenceKeys, pointer: bytes, *, thread_id: str, message_id: str,
         nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(reference, mac) to store under ``keys.index``; ``nonce`` is fresh unless given
    (vectors only)."""
    if not 1 <= len(pointer) <= ATTACHMENT_SECRET_MAX_LEN:
        raise InvalidAttachmentReference("attachment pointer must be 1..1024 bytes")
    header = _header(keys)
    sealed = encrypt_with_nonce(keys.reference_key,
                                os.urandom(EXTENDED_NONCE_LEN) if nonce is None else nonce,
                                header + keys.index, pad(pointer))
    return header + sealed, deletion_mac(keys, thread_id, message_id)


def open_reference(keys: ReferenceKeys, reference: bytes) -> bytes:
    """The pointer in ``reference``: strict, :class:`InvalidAttachmentReference` otherwise
    (:class:`UnsupportedAttachmentReference` for another version, 1 included)."""
    if reference_sequence_id(reference) != keys.sequence_id:
        raise InvalidAttachmentReference("attachment reference of another epoch")
    try:
        pointer = unpad(decrypt(keys.reference_key, reference[:_HEADER_LEN] + keys.index,
                                reference[_HEADER_LEN:]))
    except (DecryptionFailed, InvalidPadding):
        raise InvalidAttachmentReference("attachment reference does not open") from None
    if not 1 <= len(pointer) <= ATTACHMENT_SECRET_MAX_LEN:
        raise InvalidAttachmentReference("attachment pointer has the wrong length")
    return pointer
