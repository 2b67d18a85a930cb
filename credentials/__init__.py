"""credentials: anonymous credentials (RFC 9474 blind RSA, Privacy Pass RFC 9576/9577/9578)."""

__version__ = "0.1.0"
