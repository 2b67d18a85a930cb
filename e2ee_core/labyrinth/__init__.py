"""Sans-I/O core of Labyrinth, Messenger's encrypted message storage protocol (whitepaper v1).

One module per concept: ``sodium`` (HChaCha20 binding), ``primitives`` (kdf, mac,
AES-GCM-Extended), ``padding``, ``hpke`` (Labyrinth HPKE), ``orf`` (oblivious revocable
function), ``epochs``, ``recovery_codes`` and ``mailbox`` (message records). Limits live in
``consts``, errors in ``errors``. Nothing here does I/O. See docs/labyrinth.md.
"""
