"""e2ee_core: the end-to-end encrypted messaging core apps import."""

__version__ = "0.1.0"
