"""ohttp_relay: Oblivious HTTP (RFC 9458) over Binary HTTP (RFC 9292), relay and gateway."""

__version__ = "0.1.0"
