"""The multi-device Messenger client (issue #7, section 2).

``Messenger`` registers or links a device, keeps its prekeys on the server, sends every content
type to all devices of a contact and of its own account (client fanout over pairwise Signal
sessions), handles the server's 409 device-set answers, receives and deduplicates, keeps a local
message store with disappearing messages, attachments and Sender-Key groups, and gives control
over endpoints (device lists, safety numbers, verification, change notices, device removal).
See docs/e2ee-messenger.md.
"""

from e2ee_core.client.context import Clock
from e2ee_core.client.errors import (
    AccountBlocked,
    AttachmentTooLarge,
    ClientError,
    ContactChanged,
    DeviceRemoved,
    DirectoryKeyChanged,
    EpochNotAudited,
    EpochRollback,
    ForkedView,
    KeyNotInDirectory,
    SafetyNumberMismatch,
    SendFailed,
    StateError,
    TransparencyError,
    UnknownGroup,
    UnknownMessage,
)
from e2ee_core.client.messenger import Messenger
from e2ee_core.client.models import (
    ChatSummary,
    ContactDevices,
    DeviceSafety,
    Message,
    group_conversation,
)
from e2ee_core.client.safety import combined_safety_number, device_safety_number
from e2ee_core.client.store import Notice

__all__ = [
    "AccountBlocked",
    "AttachmentTooLarge",
    "ChatSummary",
    "ClientError",
    "Clock",
    "ContactChanged",
    "ContactDevices",
    "DeviceRemoved",
    "DeviceSafety",
    "DirectoryKeyChanged",
    "EpochNotAudited",
    "EpochRollback",
    "ForkedView",
    "KeyNotInDirectory",
    "Message",
    "Messenger",
    "Notice",
    "SafetyNumberMismatch",
    "SendFailed",
    "StateError",
    "TransparencyError",
    "UnknownGroup",
    "UnknownMessage",
    "combined_safety_number",
    "device_safety_number",
    "group_conversation",
]
