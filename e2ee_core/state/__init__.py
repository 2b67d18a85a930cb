"""Protocol stores: the :mod:`stores` interfaces, an in-memory and an SQLite implementation."""
