"""The issuer's storage: keys, accounts and per-account issuance counters.

A thin adapter over :class:`service_kit.database.Database` (SQLite by default, PostgreSQL
for several issuer instances; SQLite files are created 0600). Private keys (PKCS#8 PEM) live:

- in the database, in clear (the default: whoever reads the store can mint tokens);
- in the database wrapped with AES-256-GCM under a key-encryption key that only the issuer's
  environment holds (``key_encryption_key``, see :func:`load_kek`): a stolen store or backup
  is useless without it;
- or, with ``key_dir``, in 0600 files named by key id in a 0700 folder, outside the database.

They are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credentials import consts
from credentials.errors import AccountExists, IssuanceRateLimited, KeyStoreError
from credentials.spent_store import create_schema_retrying
from credentials.tokens import encode_token_key, token_key_id
from service_kit.database import Database
from service_kit.keyfiles import read_secret_file, write_secret_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS issuer_keys (
    key_id {blob} PRIMARY KEY,
    truncated_id INTEGER NOT NULL,
    token_key {blob} NOT NULL,
    private_pem {blob},
    not_before {bigint} NOT NULL,
    created_at {bigint} NOT NULL, -- microseconds since the epoch (orders same-second keys)
    retired_at {bigint}
);
CREATE UNIQUE INDEX IF NOT EXISTS issuer_keys_live_truncated
    ON issuer_keys (truncated_id) WHERE retired_at IS NULL;
CREATE TABLE IF NOT EXISTS issuer_meta (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS issuer_accounts (
    name TEXT PRIMARY KEY,
    credential_hash {blob} NOT NULL UNIQUE,
    created_at {bigint} NOT NULL
);
CREATE TABLE IF NOT EXISTS issuer_counters (
    account TEXT NOT NULL,
    window_start {bigint} NOT NULL,
    issued {bigint} NOT NULL,
    PRIMARY KEY (account, window_start)
)
"""


@dataclass(frozen=True)
class StoredKey:
    """The public part of a stored issuer key and its life cycle."""

    key_id: bytes
    token_key: bytes
    not_before: int
    created_at: int
    retired_at: int | None

    def state(self, now: int) -> str:
        """``published`` (not-before ahead), ``active`` or ``retired``."""
        if self.retired_at is not None:
            return "retired"
        return "active" if self.not_before <= now else "published"


CREDENTIAL_PREFIX = "ppc_"
# Marks a private key wrapped under the key-encryption key: magic || nonce(12) || AES-GCM.
_WRAPPED = b"ppkek1:"
_KEK_LENGTH = 32


def load_kek(env_name: str | None) -> bytes | None:
    """The key-encryption key from the environment variable ``env_name`` (base64url of 32
    bytes, e.g. from ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``)."""
    if not env_name:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise KeyStoreError(f"key-encryption key variable {env_name} is empty or unset")
    try:
        kek = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"{env_name} is not base64url") from None
    if len(kek) != _KEK_LENGTH:
        raise KeyStoreError(f"{env_name} must hold {_KEK_LENGTH} bytes (base64url)")
    return kek


def _aad(key_id: bytes) -> bytes:
    # Binds a wrapped key to its id: a wrapped blob moved to another row does not unwrap.
    return b"token-issuer private key\x00" + key_id


def _credential_hash(credential: str) -> bytes:
    return hashlib.sha256(b"token-issuer account credential\x00" + credential.encode()).digest()


class IssuerStore:
    """Keys, accounts and issuance counters of one issuer."""

    def __init__(self, db_url: str, *, key_dir: str | None = None,
                 key_encryption_key: bytes | None = None) -> None:
        if key_encryption_key is not None and len(key_encryption_key) != _KEK_LENGTH:
            raise KeyStoreError(f"the key-encryption key must be {_KEK_LENGTH} bytes")
        self._kek = AESGCM(key_encryption_key) if key_encryption_key is not None else None
        self.db = Database(db_url)
        self.key_dir = Path(key_dir) if key_dir else None
        if self.key_dir is not None:
            self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_schema_retrying(self.db, SCHEMA)

    def _seal(self, key_id: bytes, pem: bytes) -> bytes:
        if self._kek is None:
            return pem
        nonce = os.urandom(12)
        return _WRAPPED + nonce + self._kek.encrypt(nonce, pem, _aad(key_id))

    def _unseal(self, key_id: bytes, stored: bytes) -> bytes:
        if not stored.startswith(_WRAPPED):
            return stored
        if self._kek is None:
            raise KeyStoreError("private keys are wrapped; the key-encryption key is not set")
        body = stored[len(_WRAPPED):]
        try:
            return self._kek.decrypt(body[:12], body[12:], _aad(key_id))
        except InvalidTag:
            raise KeyStoreError("the key-encryption key does not unwrap this key") from None

    def wrap_keys(self) -> int:
        """Wrap every live private key still stored in clear; return how many were wrapped."""
        if self._kek is None:
            raise KeyStoreError("no key-encryption key given")
        rows = self.db.fetchall("SELECT key_id, private_pem FROM issuer_keys WHERE "
                                "retired_at IS NULL AND private_pem IS NOT NULL")
        wrapped = 0
        for row in rows:
            key_id, pem = bytes(row[0]), bytes(row[1])
            if pem.startswith(_WRAPPED):
                continue
            self.db.execute("UPDATE issuer_keys SET private_pem = ? WHERE key_id = ? AND "
                            "private_pem = ?", (self._seal(key_id, pem), key_id, pem))
            wrapped += 1
        return wrapped

    # -- keys ------------------------------------------------------------------------------
    def list_keys(self, *, include_retired: bool = False) -> list[StoredKey]:
        """Keys ordered by not-before, then creation (oldest first)."""
        sql = "SELECT key_id, token_key, not_before, created_at, retired_at FROM issuer_keys"
        if not include_retired:
            sql += " WHERE retired_at IS NULL"
        rows = self.db.fetchall(sql + " ORDER BY not_before, created_at")
        return [StoredKey(bytes(r[0]), bytes(r[1]), int(r[2]), int(r[3]),
                          None if r[4] is None else int(r[4])) for r in rows]

    def live_key_ids(self) -> list[bytes]:
        """Ids of the keys not retired (one cheap query, made per issuance request)."""
        rows = self.db.fetchall("SELECT key_id FROM issuer_keys WHERE retired_at IS NULL "
                                "ORDER BY key_id")
        return [bytes(r[0]) for r in rows]

    def generate_key(self, *, not_before: int | None = None, now: int | None = None) -> StoredKey:
        """A new 2048-bit key, its truncated id distinct from every live key's."""
        now = int(time.time()) if now is None else now
        not_before = now if not_before is None else not_before
        # Microseconds: keys made in the same second still have a definite order.
        created_us = time.time_ns() // 1000
        while True:
            taken = {k.key_id[-1] for k in self.list_keys()}
            if len(taken) >= 256:
                raise KeyStoreError("every truncated key id is in use; retire a key first")
            sk = rsa.generate_private_key(consts.RSA_PUBLIC_EXPONENT, consts.RSA_KEY_BITS)
            spki = encode_token_key(sk.public_key())
            key_id = token_key_id(spki)
            if key_id[-1] in taken:
                continue
            pem = sk.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
            stored_pem: bytes | None = self._seal(key_id, pem)
            if self.key_dir is not None:
                write_secret_file(self.key_dir / f"{key_id.hex()}.pem", pem)
                stored_pem = None
            # The partial unique index on live truncated ids settles a race with another
            # generator (another process or host): the loser tries again with a new key.
            cursor = self.db.execute(
                "INSERT INTO issuer_keys (key_id, truncated_id, token_key, private_pem, "
                "not_before, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                (key_id, key_id[-1], spki, stored_pem, not_before, created_us))
            if cursor.rowcount == 1:
                return StoredKey(key_id, spki, not_before, created_us, None)
            if self.key_dir is not None:
                (self.key_dir / f"{key_id.hex()}.pem").unlink(missing_ok=True)

    def private_key(self, key_id: bytes) -> rsa.RSAPrivateKey:
        """The private half of a live key, from the database or the 0600 key file."""
        row = self.db.fetchone("SELECT private_pem FROM issuer_keys WHERE key_id = ? AND "
                               "retired_at IS NULL", (key_id,))
        if row is None:
            raise KeyStoreError("unknown or retired key")
        pem = self._unseal(key_id, bytes(row[0])) if row[0] is not None else None
        if pem is None:
            if self.key_dir is None:
                raise KeyStoreError("key is stored in a key directory; none configured")
            try:
                pem = read_secret_file(self.key_dir / f"{key_id.hex()}.pem")
            except OSError as exc:
                raise KeyStoreError("key file missing or readable by others") from exc
        sk = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(sk, rsa.RSAPrivateKey):
            raise KeyStoreError("stored key is not RSA")
        return sk

    def find_key(self, prefix: str) -> StoredKey:
        """The one key whose hex id starts with ``prefix``."""
        matches = [k for k in self.list_keys(include_retired=True) if k.key_id.hex().startswith(
            prefix.lower())]
        if len(matches) != 1 or not prefix:
            raise KeyStoreError("key id prefix matches no key or several keys")
        return matches[0]

    def retire_key(self, key_id: bytes, *, now: int | None = None) -> None:
        """Withdraw a key from the directory and destroy its private half."""
        now = int(time.time()) if now is None else now
        self.db.execute("UPDATE issuer_keys SET retired_at = ?, private_pem = NULL "
                        "WHERE key_id = ? AND retired_at IS NULL", (now, key_id))
        if self.key_dir is not None:
            (self.key_dir / f"{key_id.hex()}.pem").unlink(missing_ok=True)

    def ensure_key(self) -> None:
        """Generate a key when the store has no live one (first start).

        Several workers or instances starting together create exactly one: a marker row
        named after the number of keys ever made is claimed first, and only its winner
        generates.
        """
        if self.list_keys():
            return
        made = len(self.list_keys(include_retired=True))
        cursor = self.db.execute("INSERT INTO issuer_meta (name) VALUES (?) ON CONFLICT "
                                 "DO NOTHING", (f"auto-key-{made}",))
        if cursor.rowcount == 1:
            self.generate_key()
            return
        for _ in range(300):  # another process won: wait for its key (RSA keygen takes ~0.1 s)
            if self.list_keys():
                return
            time.sleep(0.1)
        raise KeyStoreError("no issuer key appeared; another instance failed to create one")

    # -- accounts --------------------------------------------------------------------------
    def add_account(self, name: str) -> str:
        """Create an account; return its bearer credential (shown once, stored hashed)."""
        if not name or len(name) > 200:
            raise KeyStoreError("account name must be 1..200 characters")
        # A fixed prefix: a credential never starts with "-" (command lines would take it for
        # an option) and secret scanners can recognise it.
        credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        cursor = self.db.execute(
            "INSERT INTO issuer_accounts (name, credential_hash, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING", (name, _credential_hash(credential), int(time.time())))
        if cursor.rowcount != 1:
            raise AccountExists("an account of that name exists already")
        return credential

    def accounts(self) -> list[str]:
        """Account names, sorted."""
        return [r[0] for r in self.db.fetchall("SELECT name FROM issuer_accounts ORDER BY name")]

    def authenticate(self, credential: str) -> str | None:
        """The account a bearer credential belongs to, or None."""
        if not credential or len(credential) > 200:
            return None
        digest = _credential_hash(credential)
        row = self.db.fetchone("SELECT name, credential_hash FROM issuer_accounts WHERE "
                               "credential_hash = ?", (digest,))
        if row is None or not hmac.compare_digest(bytes(row[1]), digest):
            return None
        return str(row[0])

    # -- rate limiting ---------------------------------------------------------------------
    def reserve(self, account: str, wanted: int, *, limit: int, window: int,
                now: int | None = None) -> int:
        """Atomically take up to ``wanted`` issuances from this window's allowance.

        Returns how many were granted (>= 1); raises IssuanceRateLimited when none are left.
        """
        now = int(time.time()) if now is None else now
        start = now - now % window
        with self.db.transaction() as tx:
            # The upsert takes the row lock first (PostgreSQL) / the write lock (SQLite), so
            # concurrent issuers of one account serialise here and never over-grant.
            row = tx.fetchone("INSERT INTO issuer_counters (account, window_start, issued) "
                              "VALUES (?, ?, ?) ON CONFLICT (account, window_start) DO UPDATE "
                              "SET issued = issuer_counters.issued + excluded.issued "
                              "RETURNING issued", (account, start, wanted))
            total = int(row[0])
            granted = max(0, min(wanted, limit - (total - wanted)))
            if granted == 0:
                raise IssuanceRateLimited(max(1, start + window - now))  # rolls back
            if granted < wanted:
                tx.execute("UPDATE issuer_counters SET issued = issued - ? WHERE account = ? "
                           "AND window_start = ?", (wanted - granted, account, start))
            if total == wanted:  # first use of this window by this account: drop old ones
                tx.execute("DELETE FROM issuer_counters WHERE account = ? AND window_start < ?",
                           (account, start))
        return granted

    def refund(self, account: str, count: int, *, window: int, now: int | None = None) -> None:
        """Give back allowance for requests that were reserved but not signed."""
        if count <= 0:
            return
        now = int(time.time()) if now is None else now
        start = now - now % window
        self.db.execute("UPDATE issuer_counters SET issued = issued - ? WHERE account = ? AND "
                        "window_start = ? AND issued >= ?", (count, account, start, count))

