"""Limits of the serving stack, each with its reason. Every service inherits them; a service
may lower a limit (or raise the body limit) in its own settings."""

from __future__ import annotations

from typing import Final

#: Seconds a client has to send a whole request head, from the connection's first byte (or
#: the next request's first byte on a kept-alive connection). A connection that sends nothing,
#: or a partial head and nothing more, is closed after this: it holds a few KiB of the event
#: loop's memory meanwhile, never a thread. nginx's client_header_timeout is 60 s; our requests
#: are machine-made and small.
HEADER_READ_TIMEOUT: Final = 10.0
#: Seconds a client has to send a whole request body, from the end of its head. The body is
#: read by the event loop before the application runs, so a slow body holds no thread either.
BODY_READ_TIMEOUT: Final = 30.0
#: Seconds an idle kept-alive connection stays open between requests (uvicorn's default).
KEEPALIVE_TIMEOUT: Final = 5
#: Seconds in-flight requests get to finish after SIGTERM before their connections close.
GRACEFUL_TIMEOUT: Final = 5

#: Bytes of the request target (414 beyond). gunicorn allows 4,094 by default; URLs here are
#: short API paths, and the largest query the sticker search sends is well under 1 KiB.
MAX_REQUEST_TARGET: Final = 8 * 1024
#: Bytes of one field line, name and value (431 beyond): gunicorn's 8,190, rounded.
MAX_FIELD_SIZE: Final = 8 * 1024
#: Field lines in one request head (431 beyond): gunicorn's limit_request_fields.
MAX_FIELDS: Final = 100
#: Bytes of the whole head (431 beyond), so MAX_FIELDS x MAX_FIELD_SIZE cannot be reached.
MAX_HEAD: Final = 64 * 1024
#: Request body bytes when the application states no limit of its own (Flask's
#: ``MAX_CONTENT_LENGTH`` is the service's limit when it sets one): 413 beyond.
DEFAULT_MAX_BODY: Final = 1024 * 1024

#: Bytes of one WebSocket message a client may send (acknowledgements are small; uvicorn's
#: default is 16 MiB).
WEBSOCKET_MAX_MESSAGE: Final = 1024 * 1024

#: Threads that run the WSGI application per worker process. They run only complete requests
#: (heads and bodies are read by the event loop), so idle or slow clients never hold one.
DEFAULT_THREADS: Final = 8
