"""Plumbing shared by every service in the distribution.

Nothing here knows a protocol. It is the thin layer the Flask adapters of all four packages
stand on: the log redaction filter, RFC 9457 problem responses, serving under gunicorn and the
SQLite/PostgreSQL store connection.
"""
