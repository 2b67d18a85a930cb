"""The E2EE delivery server: accounts, device keys, per-device envelope queues, attachments.

The server only routes opaque bytes. Modules: :mod:`.wire` (JSON wire types, sans I/O),
:mod:`.store` (storage interface and its SQLite/PostgreSQL implementation),
:mod:`.memstore` (in-memory implementation), :mod:`.service`
(behaviour), :mod:`.app` (Flask adapter, ``create_app``), :mod:`.client` (typed HTTP client),
:mod:`.cli` (``e2ee-server``), :mod:`.consts` (limits) and :mod:`.errors`.
"""
