"""``sticker-search verify-web URL``: check what a server serves against the page's signed
manifest (the Code Verify analogue).

    sticker-search verify-web URL [--public-key KEY] [--dist DIR] [--no-relay-check]

It fetches the manifest envelope and verifies its Ed25519 signature (against ``--public-key``,
the publisher's key in base64url, when given), then every file the manifest names, the page's
``/ohttp-keys`` and the relay's keys, and compares digests, the Subresource Integrity attributes
of ``index.html``, the security headers and, with ``--dist``, a local build. It prints each
difference and exits 0 only when there is none.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from sticker_search.errors import ManifestError
from sticker_search.webmanifest import (
    KEYS_PATH,
    MANIFEST_PATH,
    Served,
    canonical_headers,
    compare,
    fingerprint,
    open_envelope,
    unb64url,
)

EXIT_VERIFIED = 0
EXIT_DIFFERS = 7
FETCH_TIMEOUT = 10.0


@dataclass
class Verdict:
    """The outcome: ``problems`` is empty when the server serves exactly the manifest."""

    signer: str
    pinned: bool
    files: int
    problems: list[str] = field(default_factory=list)


def _fetch(session: requests.Session, url: str) -> Served:
    try:
        # requests decodes a gzip Content-Encoding, so digests are over the page's own bytes.
        response = session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
    except requests.RequestException:
        return Served(0, b"", {})
    return Served(response.status_code, response.content, canonical_headers(response.headers))


def local_build(dist: Path) -> dict[str, bytes]:
    """Served path -> bytes of a local ``web/dist`` build."""
    out = {f"/{p.name}": p.read_bytes() for p in sorted(dist.iterdir()) if p.is_file()}
    if "/index.html" in out:
        out["/"] = out.pop("/index.html")
    return out


def verify(url: str, *, public_key: bytes | None = None, local: Mapping[str, bytes] | None = None,
           relay_check: bool = True, session: requests.Session | None = None) -> Verdict:
    """Compare the page at ``url`` with its signed manifest."""
    session = session or requests.Session()
    session.trust_env = False
    base = url.rstrip("/")
    envelope = _fetch(session, base + MANIFEST_PATH)
    if envelope.status != 200:
        raise ManifestError(f"no manifest at {MANIFEST_PATH} (HTTP {envelope.status})")
    manifest, signer = open_envelope(envelope.body, public_key)
    served = {path: _fetch(session, base + path)
              for path in [*manifest.files, KEYS_PATH]}
    relay_keys = None
    if relay_check:
        relay = manifest.endpoints.get("relay", "")
        answer = _fetch(session, relay + KEYS_PATH) if relay else Served(0, b"", {})
        relay_keys = answer.body if answer.status == 200 else b""
    problems = compare(manifest, served, local, relay_keys)
    return Verdict(fingerprint(signer), public_key is not None, len(manifest.files), problems)


def run(args: argparse.Namespace) -> int:
    """Run ``verify-web``; 0 when the server serves exactly the manifest, 7 otherwise."""
    local = local_build(args.dist) if args.dist else None
    try:
        pinned = unb64url(args.public_key) if args.public_key else None
        verdict = verify(args.url, public_key=pinned, local=local,
                         relay_check=not args.no_relay_check)
    except ManifestError as exc:
        print(f"verify-web: FAILED: {exc}")
        return EXIT_DIFFERS
    how = "the pinned key" if verdict.pinned else "the key it names (pin it with --public-key)"
    print(f"manifest signed by {verdict.signer}, verified with {how}")
    if verdict.problems:
        for problem in verdict.problems:
            print(f"  DIFFERS {problem}")
        print(f"verify-web: FAILED: {len(verdict.problems)} difference(s)")
        return EXIT_DIFFERS
    print(f"verify-web: OK: {verdict.files} files, security headers and OHTTP keys as signed")
    return EXIT_VERIFIED
