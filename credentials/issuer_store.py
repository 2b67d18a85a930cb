"""The issuer's storage: keys, accounts and per-account issuance counters.

A thin adapter over :class:`service_kit.database.Database` (SQLite by default, PostgreSQL
for several issuer instances). Private keys live in the database (PKCS#8 PEM) or, with
``key_dir``, in 0600 files named by key id; they are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import consts
from credentials.errors import IssuanceRateLimited, KeyStoreError
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


def _credential_hash(credential: str) -> bytes:
    return hashlib.sha256(b"token-issuer account credential\x00" + credential.encode()).digest()


class IssuerStore:
    """Keys, accounts and issuance counters of one issuer."""

    def __init__(self, db_url: str, *, key_dir: str | None = None) -> None:
        self.db = Database(db_url)
        self.key_dir = Path(key_dir) if key_dir else None
        create_schema_retrying(self.db, SCHEMA)

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
            stored_pem: bytes | None = pem
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
        pem = bytes(row[0]) if row[0] is not None else None
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
        self.db.execute("INSERT INTO issuer_accounts (name, credential_hash, created_at) "
                        "VALUES (?, ?, ?)", (name, _credential_hash(credential),
                                             int(time.time())))
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

