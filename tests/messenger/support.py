"""Helpers of the Messenger tests: accounts of several devices on a real server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import requests

from e2ee_core.client import Messenger
from tests.server.support import PASSWORD, unique_name

__all__ = ["PASSWORD", "Account", "drain", "seen_once", "unique_name"]


class Account:
    """One account's devices (``devices[0]`` registered, the others linked)."""

    def __init__(self, url: str, devices: int, *, state_dir: Path | None = None,
                 session: requests.Session | None = None, name: str | None = None,
                 **options: object) -> None:
        self.name = name or unique_name()
        self.url, self.session, self.state_dir, self.options = url, session, state_dir, options
        self.devices: list[Messenger] = []
        for _ in range(devices):
            self.add_device()

    def add_device(self) -> Messenger:
        state = None
        if self.state_dir is not None:
            state = self.state_dir / f"{self.name}-{len(self.devices) + 1}.db"
        enrol = Messenger.link if self.devices else Messenger.register
        device = enrol(self.url, self.name, PASSWORD, state=state, session=self.session,
                       prekeys=8, kem_prekeys=2, **self.options)  # type: ignore[arg-type]
        self.devices.append(device)
        return device


def drain(devices: Iterable[Messenger], rounds: int = 3) -> None:
    """Let every device receive until nothing more arrives (group joins cascade)."""
    devices = list(devices)
    for _ in range(rounds):
        for device in devices:
            device.receive()


def seen_once(device: Messenger, conversation: str | None = None) -> Counter[bytes]:
    """Message ids stored on a device, with how often each is stored."""
    return Counter(m.message_id for m in device.messages(conversation))
