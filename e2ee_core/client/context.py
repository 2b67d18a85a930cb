"""What every part of a :class:`~e2ee_core.client.Messenger` shares: the local store, the
server link, the Signal device, the clock, who this device is, and the queue of group
content waiting to go out pairwise.

The parts (:mod:`.devices`, :mod:`.fanout`, :mod:`.group_chats`, :mod:`.conversations`,
:mod:`.inbox`, :mod:`.enrolment`) each hold one :class:`DeviceContext` and talk to the server
only through :meth:`DeviceContext.call`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from e2ee_core.client.errors import DeviceRemoved
from e2ee_core.client.store import ClientStore
from e2ee_core.device import Device
from e2ee_core.disappearing import ExpiryStart
from e2ee_core.groups import Outgoing
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import DeviceWasRemoved
from e2ee_core.server.push_client import PushConnection

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch (injectable: tests move time by hand)."""

Address = tuple[str, int]
"""An account name and one of its device ids."""

_P = ParamSpec("_P")
_T = TypeVar("_T")

_REMOVED = "removed"


def wall_clock() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class DeviceContext:
    """The state shared by the Messenger's parts (one per device, used from one thread)."""

    store: ClientStore
    server: ServerClient
    device: Device
    clock: Clock
    username: str
    device_id: int
    expiry_start: ExpiryStart = ExpiryStart.READ
    # Group content (membership, sender keys) to send pairwise once the current step is done.
    outbox: list[tuple[bytes, Outgoing]] = field(default_factory=list)
    # The push channel while Messenger.listen holds one: sends go over it (no HTTP request).
    channel: PushConnection | None = None

    @property
    def address(self) -> Address:
        return self.username, self.device_id

    def call(self, request: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a server request. Only the server's explicit ``device-removed`` answer (the right
        credential of a removed device) marks this device removed; any other authentication
        failure (a wrong server on the same address, a proxy) is raised and changes nothing."""
        self.check_not_removed()
        try:
            return request(*args, **kwargs)
        except DeviceWasRemoved:
            self.mark_removed()
            raise DeviceRemoved("this device was removed from its account") from None

    def check_not_removed(self) -> None:
        if self.store.get_meta(_REMOVED) is not None:
            raise DeviceRemoved("this device was removed from its account")

    def mark_removed(self) -> None:
        self.store.set_meta(_REMOVED, "1")
