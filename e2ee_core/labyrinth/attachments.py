"""Attachment references (Protocol: Attachments): ORF-indexed, with an ORF-keyed deletion MAC.

Attachments stay stored as transmitted (encrypted under their own key, on the media store).
The mailbox keeps, per attachment, a small *reference* holding what a device needs to fetch
and decrypt it again (the pointer the message carried), indexed by the ORF of the attachment
id, so that:

- the server cannot link an attachment across mailboxes (each account's ORF differs) nor learn
  its id (the ORF input never reaches it);
- a revoked device, whose ORF share the server deleted, cannot compute the index or keys of an
  attachment saved after its revocation (attachment unlinkability and post-revocation secrecy);
- the reference carries a MAC over the (thread, message) that references it, keyed by the ORF
  output, so deleting that message deletes the reference: a device presents the MAC, and a
  reference whose MAC does not match the message being deleted is left alone.

With ``output`` the ORF output of the attachment id (domain ``attachment_ref``)::

    (index, refKey, macKey) = kdf(output, null, "attachment_reference_v1", 32, 32, 32)
    reference = 0x01 || encrypt(refKey, aad = 0x01 || index, pad(pointer))
    mac       = mac(u16be(len thread) || thread || message id, macKey)

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
    THREAD_ID_MAX_LEN,
)
from .errors import DecryptionFailed, InvalidAttachmentReference, InvalidLabel, InvalidPadding
from .padding import pad, padded_size, unpad
from .primitives import decrypt, encrypt_with_nonce, kdf, mac, mac_equal

#: The ORF domain (client side: the HMAC key; the server's is its own prefix + this).
CLIENT_DOMAIN = b"attachment_ref"
SERVER_DOMAIN = "attachment_ref"
KEYS_LABEL = b"attachment_reference_v1"
_MAX_REFERENCE_LEN = 1 + EXTENDED_NONCE_LEN + padded_size(ATTACHMENT_SECRET_MAX_LEN) + \
    GCM_TAG_LEN


@dataclass(frozen=True, slots=True)
class ReferenceKeys:
    """What the ORF output of one attachment id gives: the server-side index and two keys."""

    index: bytes
    reference_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)


def _check_id(attachment_id: bytes) -> None:
    if not 1 <= len(attachment_id) <= ATTACHMENT_ID_MAX_LEN:
        raise InvalidAttachmentReference("attachment id must be 1..256 bytes")


def blind(state: orf.ClientState, attachment_id: bytes) -> bytes:
    """The blinded point to send to the server's ORF evaluation for ``attachment_id``."""
    _check_id(attachment_id)
    return orf.client_map(state, CLIENT_DOMAIN, attachment_id)


def reference_keys(output: bytes) -> ReferenceKeys:
    """Index, reference key and MAC key from the ORF output."""
    if len(output) != ORF_OUTPUT_LEN:
        raise InvalidAttachmentReference("ORF output must be 32 bytes")
    index, reference_key, mac_key = kdf(output, None, KEYS_LABEL, KEY_LEN, KEY_LEN, KEY_LEN)
    return ReferenceKeys(index, reference_key, mac_key)


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
    """The ORF-keyed MAC over the (thread, message) that references the attachment."""
    return mac(_message_label(thread_id, message_id), keys.mac_key)


def matches(keys: ReferenceKeys, stored_mac: bytes, thread_id: str, message_id: str) -> bool:
    """Whether a stored reference belongs to the message (thread, message id): constant time."""
    return len(stored_mac) == KEY_LEN and mac_equal(
        deletion_mac(keys, thread_id, message_id), stored_mac)


def _aad(keys: ReferenceKeys) -> bytes:
    return bytes([ATTACHMENT_REF_VERSION]) + keys.index


def seal(keys: ReferenceKeys, pointer: bytes, *, thread_id: str, message_id: str,
         nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(reference, mac) to store under ``keys.index``; ``nonce`` is fresh unless given
    (vectors only)."""
    if not 1 <= len(pointer) <= ATTACHMENT_SECRET_MAX_LEN:
        raise InvalidAttachmentReference("attachment pointer must be 1..1024 bytes")
    sealed = encrypt_with_nonce(keys.reference_key,
                                os.urandom(EXTENDED_NONCE_LEN) if nonce is None else nonce,
                                _aad(keys), pad(pointer))
    return (bytes([ATTACHMENT_REF_VERSION]) + sealed,
            deletion_mac(keys, thread_id, message_id))


def open_reference(keys: ReferenceKeys, reference: bytes) -> bytes:
    """The pointer in ``reference``: strict, :class:`InvalidAttachmentReference` otherwise."""
    if not isinstance(reference, bytes) or not 1 < len(reference) <= _MAX_REFERENCE_LEN:
        raise InvalidAttachmentReference("attachment reference has the wrong length")
    if reference[0] != ATTACHMENT_REF_VERSION:
        raise InvalidAttachmentReference("unknown attachment reference version")
    try:
        pointer = unpad(decrypt(keys.reference_key, _aad(keys), reference[1:]))
    except (DecryptionFailed, InvalidPadding):
        raise InvalidAttachmentReference("attachment reference does not open") from None
    if not 1 <= len(pointer) <= ATTACHMENT_SECRET_MAX_LEN:
        raise InvalidAttachmentReference("attachment pointer has the wrong length")
    return pointer
