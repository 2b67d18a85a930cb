"""sticker_search: private sticker search through OHTTP, paid for with Privacy Pass tokens."""

__version__ = "0.1.0"
