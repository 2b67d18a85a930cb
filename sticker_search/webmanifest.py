"""The web page's signed manifest (a Code Verify analogue), sans-I/O.

The manifest names every file of the page with its SHA-384 digest (the digest Subresource
Integrity uses), the security headers the page is served with, the endpoints the page talks to
and the OHTTP key configuration it seals searches to. It is signed with Ed25519 and published at
:data:`MANIFEST_PATH` as a JSON envelope::

    {"format": "sticker-web-manifest/1",
     "manifest": base64url(canonical JSON of the manifest),
     "signature": base64url(Ed25519 signature over those exact bytes),
     "public_key": base64url(raw 32-byte Ed25519 public key)}

The key configuration matters as much as the code: a server that gave one person a key of
their own could pick that person's searches out at the gateway; publishing the one key every
page uses lets anyone check they got the same as everybody else.

:func:`compare` checks what a server serves against a verified manifest and lists every
difference; :mod:`sticker_search.webverify` does the fetching.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sticker_search.errors import ManifestError

FORMAT = "sticker-web-manifest/1"
MANIFEST_PATH = "/.well-known/sticker-web-manifest"
#: The path the page reads its gateway key configuration from.
KEYS_PATH = "/ohttp-keys"
#: Response fields every file of the page is served with, and the manifest fixes.
SECURITY_HEADERS = ("content-security-policy", "integrity-policy")
#: Sources a strict policy never allows for scripts.
_UNSAFE_SOURCES = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "data:", "*",
                   "http:", "https:", "blob:")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError("bad base64url in the manifest") from None


def sri(data: bytes) -> str:
    """The Subresource Integrity value of ``data`` (``sha384-<base64>``)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


@dataclass(frozen=True)
class Manifest:
    """What the page is: ``files`` maps a served path to its SRI digest."""

    files: Mapping[str, str]
    headers: Mapping[str, str]
    endpoints: Mapping[str, str]
    ohttp_keys: bytes

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8): the bytes that are signed."""
        doc = {"files": dict(self.files), "headers": dict(self.headers),
               "endpoints": dict(self.endpoints),
               "ohttp_keys": {"config": b64url(self.ohttp_keys),
                              "digest": sri(self.ohttp_keys)}}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            files = {str(k): str(v) for k, v in doc["files"].items()}
            headers = {str(k): str(v) for k, v in doc["headers"].items()}
            endpoints = {str(k): str(v) for k, v in doc["endpoints"].items()}
            keys = unb64url(str(doc["ohttp_keys"]["config"]))
            digest = str(doc["ohttp_keys"]["digest"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ManifestError("malformed manifest") from None
        if sri(keys) != digest:
            raise ManifestError("manifest key configuration does not match its digest")
        return cls(files, headers, endpoints, keys)


def sign(manifest: Manifest, key: Ed25519PrivateKey) -> bytes:
    """The signed envelope (JSON bytes) served at :data:`MANIFEST_PATH`."""
    payload = manifest.to_json()
    public = key.public_key().public_bytes_raw()
    envelope = {"format": FORMAT, "manifest": b64url(payload),
                "signature": b64url(key.sign(payload)), "public_key": b64url(public)}
    return json.dumps(envelope, sort_keys=True, indent=1).encode()


def open_envelope(data: bytes, pinned: bytes | None = None) -> tuple[Manifest, bytes]:
    """Verify an envelope; return the manifest and the raw public key that signed it.

    With ``pinned`` (a raw Ed25519 public key) the envelope must be signed by that key;
    without, by the key it names (which only proves the manifest is self-consistent).
    """
    try:
        envelope = json.loads(data)
        if envelope["format"] != FORMAT:
            raise ManifestError("unknown manifest format")
        payload = unb64url(str(envelope["manifest"]))
        signature = unb64url(str(envelope["signature"]))
        public = unb64url(str(envelope["public_key"]))
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: deep nesting
        raise ManifestError("malformed manifest envelope") from None
    if pinned is not None and public != pinned:
        raise ManifestError("manifest is signed by another key than the pinned one")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, payload)
    except (InvalidSignature, ValueError):
        raise ManifestError("manifest signature does not verify") from None
    return Manifest.from_json(payload), public


def fingerprint(public_key: bytes) -> str:
    """A short printable name of a signing key (base64url of its raw bytes)."""
    return b64url(public_key)


def strict_policy_problems(policy: str) -> list[str]:
    """Why a Content-Security-Policy value is not strict enough for the page (empty if it is)."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), words[1:])
    problems = []
    if directives.get("default-src") != ["'none'"]:
        problems.append("default-src is not 'none'")
    scripts = directives.get("script-src", directives.get("default-src", []))
    unsafe = [s for s in scripts if s.lower() in _UNSAFE_SOURCES]
    if unsafe:
        problems.append(f"script-src allows {' '.join(unsafe)}")
    for name in ("base-uri", "object-src", "frame-ancestors"):
        if name in directives and directives[name] != ["'none'"]:
            problems.append(f"{name} is not 'none'")
    if "require-trusted-types-for" not in directives:
        problems.append("require-trusted-types-for is missing")
    return problems


@dataclass
class _Subresources(HTMLParser):
    """Every script and style sheet a page loads, with its integrity attribute."""

    found: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    inline_scripts: int = 0

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.found.append(("script", values["src"], values.get("integrity")))
            else:
                self.inline_scripts += 1
        elif tag == "link" and (values.get("rel") or "").lower() in ("stylesheet",
                                                                     "modulepreload"):
            self.found.append(("link", values.get("href"), values.get("integrity")))


def subresources(page: bytes) -> tuple[list[tuple[str, str | None, str | None]], int]:
    """``([(tag, url, integrity)], inline script count)`` of an HTML page."""
    parser = _Subresources()
    parser.feed(page.decode("utf-8", errors="replace"))
    parser.close()
    return parser.found, parser.inline_scripts


@dataclass(frozen=True)
class Served:
    """One resource as a server served it (the body decoded)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def compare(manifest: Manifest, served: Mapping[str, Served],
            local: Mapping[str, bytes] | None = None,
            relay_keys: bytes | None = None) -> list[str]:
    """Every difference between ``manifest`` and what was served (empty list: identical).

    ``served`` maps each path of the manifest (and :data:`KEYS_PATH`) to what the server
    answered; ``local`` optionally maps paths to the bytes of a local build, which the manifest
    must name too; ``relay_keys`` is what the relay in the manifest serves as its gateway's keys.
    """
    problems: list[str] = []
    for path, digest in sorted(manifest.files.items()):
        got = served.get(path)
        if got is None or got.status != 200:
            problems.append(f"{path}: not served (HTTP {got.status if got else 'none'})")
            continue
        if sri(got.body) != digest:
            problems.append(f"{path}: content differs from the manifest")
        for name in SECURITY_HEADERS:
            expected = manifest.headers.get(name)
            if expected is None:
                problems.append(f"manifest names no {name}")
            elif got.headers.get(name) != expected:
                problems.append(f"{path}: {name} header differs from the manifest")
    policy = manifest.headers.get("content-security-policy", "")
    problems.extend(f"content-security-policy: {p}" for p in strict_policy_problems(policy))

    index = served.get("/")
    if index is not None and index.status == 200:
        found, inline = subresources(index.body)
        if inline:
            problems.append(f"/: {inline} inline script(s)")
        for tag, url, integrity in found:
            path = "/" + (url or "").lstrip("./")
            if tag == "script" and not integrity:
                problems.append(f"/: script {url} has no integrity attribute")
                continue
            if integrity and path in manifest.files and integrity != manifest.files[path]:
                problems.append(f"/: integrity of {url} differs from the manifest")
            if integrity and path not in manifest.files:
                problems.append(f"/: {url} is not in the manifest")
            got = served.get(path)
            if integrity and got is not None and sri(got.body) != integrity:
                problems.append(f"/: {url} as served does not match its integrity attribute")

    keys = served.get(KEYS_PATH)
    if keys is None or keys.status != 200 or keys.body != manifest.ohttp_keys:
        problems.append(f"{KEYS_PATH}: key configuration differs from the manifest")
    if relay_keys is not None and relay_keys != manifest.ohttp_keys:
        problems.append("the relay's gateway keys differ from the manifest's")

    for path, data in sorted((local or {}).items()):
        if manifest.files.get(path) != sri(data):
            problems.append(f"{path}: differs from the local build")
    return problems


def canonical_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased field names (what :class:`Served` holds)."""
    return {str(k).lower(): str(v) for k, v in headers.items()}
