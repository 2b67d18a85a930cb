"""Safety numbers for multi-device accounts. Sans I/O.

* **Per-device safety number**: libsignal's 60-digit number between this device's identity key
  and one device of the contact (:func:`e2ee_core.protocol.fingerprint.safety_number`).
* **Combined safety number** (one number per pair of accounts, what two people compare): the
  same libsignal fingerprint construction (5,200 iterations of SHA-512 over version, key and
  account name, 30 digits per side, the two halves sorted), where each side's "key" is the
  concatenation of **all current device identity keys of that account, sorted bytewise**
  (33 bytes each). Both users compute the same number; it changes when either account adds,
  removes or replaces a device, so comparing it once covers every device that receives the
  conversation.
"""

from __future__ import annotations

from collections.abc import Iterable

from e2ee_core.protocol.fingerprint import fingerprint, safety_number


def device_safety_number(local_name: str, local_identity_key: bytes, remote_name: str,
                         remote_identity_key: bytes) -> str:
    """libsignal's 60-digit number between two devices."""
    return safety_number(local_name, local_identity_key, remote_name, remote_identity_key)


def account_key(identity_keys: Iterable[bytes]) -> bytes:
    """The bytes standing for an account's device set: its identity keys, sorted, joined."""
    return b"".join(sorted(identity_keys))


def combined_safety_number(local_name: str, local_keys: Iterable[bytes], remote_name: str,
                           remote_keys: Iterable[bytes]) -> str:
    """60 digits over both accounts' full device sets (see the module docstring)."""
    return safety_number(local_name, account_key(local_keys), remote_name,
                         account_key(remote_keys))


def combined_scannable(local_name: str, local_keys: Iterable[bytes], remote_name: str,
                       remote_keys: Iterable[bytes]) -> bytes:
    """The scannable (QR) form of :func:`combined_safety_number`."""
    return fingerprint(local_name, account_key(local_keys), remote_name,
                       account_key(remote_keys)).scannable


def format_number(number: str) -> str:
    """Twelve groups of five digits, as Signal shows them."""
    return " ".join(number[i:i + 5] for i in range(0, len(number), 5))
