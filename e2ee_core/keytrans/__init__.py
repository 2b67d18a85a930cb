"""Key transparency (issue #16): a sans-I/O core wire-compatible with facebook/akd's WhatsApp v1
configuration.

- :mod:`.ecvrf`: ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381) prove / verify.
- :mod:`.node_label`, :mod:`.hashing`: AKD node labels and the WhatsApp v1 hashes (BLAKE3).
- :mod:`.proofs`: the AKD protobuf proof messages, decoded into typed, validated dataclasses.
- :mod:`.verify`: membership / non-membership checks; :mod:`.lookup`, :mod:`.history`: the
  client verifiers ``lookup_verify`` and ``key_history_verify``.
- :mod:`.tree`: the AZKS Patricia tree, its proofs, append-only proofs and ``audit_verify``.
- :mod:`.directory`: epochs and proof generation over a :mod:`.storage` Protocol (in memory;
  SQLite / PostgreSQL in :mod:`.sql_storage`).

Every failure is a :class:`~e2ee_core.keytrans.errors.KeyTransparencyError`.
"""
