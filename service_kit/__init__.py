"""Plumbing shared by every service in the distribution.

Nothing here knows a protocol. It is the thin layer the Flask adapters of all four packages
stand on: serving (uvicorn and llhttp, with our limits and timeouts, and a2wsgi), typed
settings, the log redaction filter, RFC 9457 problem responses, HTTP dates, key files and the
SQLite/PostgreSQL store connection.
"""
