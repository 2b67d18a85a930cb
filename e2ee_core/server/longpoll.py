"""``GET /v1/messages?wait=N`` served without holding a thread while it waits.

The Flask app answers the receive (authentication, validation, the queue read, the JSON); only
the *waiting* moves out of it. In front of the WSGI stack, on the event loop, this endpoint
registers the device with the process's :class:`~e2ee_core.server.push.PushHub` (the wake-ups
the push channel uses, PostgreSQL ``LISTEN/NOTIFY`` included), looks at the queue once (a short
call on a worker thread), and, while it is empty, awaits a wake-up or the deadline. It then
hands the request to the Flask app with ``wait=0``: an answer, at once, in the same format as
ever. So a thousand waiting devices hold a thousand small coroutines, not a thousand threads.

Anything this endpoint cannot read with certainty (no or a wrong credential, a malformed or too
long ``wait``, several ``wait`` parameters) goes to the Flask app untouched, which refuses it
as before without waiting.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from e2ee_core.server.hub import EventWaiter, size_executor
from e2ee_core.server.wire import bearer_credential

if TYPE_CHECKING:
    from e2ee_core.server.service import DeliveryService

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]

_WAIT_RE = re.compile(r"\d{1,3}(\.\d{1,3})?")  # the app's own rule (app.py)


class LongPoll:
    """Wraps the HTTP stack (``http``) for the receive path (see the module docstring)."""

    def __init__(self, service: DeliveryService, http: ASGIApp, *,
                 poll_seconds: float | None = None) -> None:
        self.service = service
        self.http = http
        #: Several workers on SQLite cannot wake each other: re-check the queue this often.
        self.poll_seconds = poll_seconds

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("method") == "GET":
            wait = self._wait_of(scope)
            if wait:
                await self._wait(scope, wait)
                scope = dict(scope, query_string=self._without_wait(scope))
        await self.http(scope, receive, send)

    def _wait_of(self, scope: Scope) -> float:
        try:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                              keep_blank_values=True, strict_parsing=False)
        except ValueError:
            return 0.0
        waits = [v for k, v in query if k == "wait"]
        if len(waits) != 1 or not _WAIT_RE.fullmatch(waits[0]):
            return 0.0
        wait = float(waits[0])
        return wait if wait <= self.service.settings.long_poll_max_seconds else 0.0

    @staticmethod
    def _without_wait(scope: Scope) -> bytes:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        return urlencode([(k, "0" if k == "wait" else v) for k, v in query]).encode("latin-1")

    async def _wait(self, scope: Scope, wait: float) -> None:
        service = self.service
        size_executor(asyncio.get_running_loop(), service.loop_db_threads)
        token = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                token = bearer_credential(value.decode("latin-1"))
        try:
            who = await asyncio.to_thread(service.authenticate, token)
        except Exception:  # a refusal, or the database failing: the app answers it at once
            return
        loop = asyncio.get_running_loop()
        address = (who.username, who.device_id)
        waiter = EventWaiter(loop)
        wake = waiter.event
        deadline = loop.time() + wait
        service.push.register(address, waiter)  # before looking: no wake-up is missed
        try:
            while True:
                wake.clear()
                try:
                    if await asyncio.to_thread(service.queued, who, 1):
                        return
                except Exception:  # the database failing: the app answers (503) at once
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                if self.poll_seconds is not None:
                    remaining = min(remaining, self.poll_seconds)
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    if loop.time() >= deadline:
                        return
        finally:
            service.push.unregister(address, waiter)
