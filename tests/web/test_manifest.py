"""The signed manifest, sans-I/O: signing, verification, and every kind of difference that
``verify-web`` reports."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sticker_search.errors import ManifestError
from sticker_search.web import INTEGRITY_POLICY, content_security_policy
from sticker_search.webmanifest import (
    KEYS_PATH,
    Manifest,
    Served,
    b64url,
    compare,
    open_envelope,
    sign,
    sri,
    strict_policy_problems,
    unb64url,
)

APP = b"console.log('stickers')"
STYLE = b"body{}"
KEYS = bytes(range(41))
CSP = content_security_policy("http://relay.test", "http://issuer.test")


def index(app_integrity: str = sri(APP), extra: str = "") -> bytes:
    return (f'<html><head><link rel="stylesheet" href="style.css" integrity="{sri(STYLE)}">'
            f'<script type="module" src="app.js" integrity="{app_integrity}"></script>{extra}'
            "</head></html>").encode()


def manifest() -> Manifest:
    return Manifest({"/": sri(index()), "/app.js": sri(APP), "/style.css": sri(STYLE)},
                    {"content-security-policy": CSP, "integrity-policy": INTEGRITY_POLICY},
                    {"relay": "http://relay.test"}, KEYS)


def served(**changes: bytes) -> dict[str, Served]:
    headers = {"content-security-policy": CSP, "integrity-policy": INTEGRITY_POLICY}
    bodies = {"/": index(), "/app.js": APP, "/style.css": STYLE, KEYS_PATH: KEYS}
    bodies.update({("/" + k.replace("_", ".")).replace("/index", "/"): v
                   for k, v in changes.items()})
    return {path: Served(200, body, headers) for path, body in bodies.items()}


def test_signed_manifest_round_trip_and_pinning() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign(manifest(), key)
    opened, signer = open_envelope(envelope)
    assert opened == manifest()
    assert signer == key.public_key().public_bytes_raw()
    assert open_envelope(envelope, signer)[0] == manifest()
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(ManifestError, match="pinned"):
        open_envelope(envelope, other)


def test_a_changed_manifest_or_signature_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = json.loads(sign(manifest(), key))
    forged = Manifest({**manifest().files, "/app.js": sri(b"evil")}, manifest().headers,
                      manifest().endpoints, KEYS)
    envelope["manifest"] = b64url(forged.to_json())
    with pytest.raises(ManifestError, match="signature"):
        open_envelope(json.dumps(envelope).encode())
    # The attacker's own key makes a valid envelope, which only pinning refuses.
    attacker = sign(forged, Ed25519PrivateKey.generate())
    with pytest.raises(ManifestError, match="pinned"):
        open_envelope(attacker, key.public_key().public_bytes_raw())
    for broken in (b"", b"{}", b"[1]", json.dumps({**envelope, "format": "x"}).encode(),
                   json.dumps({**envelope, "signature": "!!"}).encode()):
        with pytest.raises(ManifestError):
            open_envelope(broken)


def test_identical_page_has_no_difference() -> None:
    assert compare(manifest(), served(), relay_keys=KEYS) == []


def test_a_tampered_script_is_flagged() -> None:
    problems = compare(manifest(), served(app_js=APP + b";steal()"))
    assert "/app.js: content differs from the manifest" in problems
    assert "/: app.js as served does not match its integrity attribute" in problems


def test_a_page_pointing_at_another_script_is_flagged() -> None:
    evil = b"steal()"
    problems = compare(manifest(), served(index=index(sri(evil)), app_js=evil))
    assert "/: content differs from the manifest" in problems
    assert "/: integrity of app.js differs from the manifest" in problems


def test_scripts_without_integrity_or_inline_are_flagged() -> None:
    page = index(extra='<script src="https://cdn.test/x.js"></script><script>alert(1)</script>')
    problems = compare(manifest(), served(index=page))
    assert "/: script https://cdn.test/x.js has no integrity attribute" in problems
    assert "/: 1 inline script(s)" in problems


def test_weakened_headers_and_other_keys_are_flagged() -> None:
    pages = served()
    pages["/app.js"] = Served(200, APP, {"content-security-policy": CSP + "; script-src *"})
    pages[KEYS_PATH] = Served(200, KEYS[::-1], {})
    problems = compare(manifest(), pages, relay_keys=b"other")
    assert "/app.js: content-security-policy header differs from the manifest" in problems
    assert "/app.js: integrity-policy header differs from the manifest" in problems
    assert f"{KEYS_PATH}: key configuration differs from the manifest" in problems
    assert "the relay's gateway keys differ from the manifest's" in problems


def test_missing_files_and_local_build_differences_are_flagged() -> None:
    pages = served()
    del pages["/style.css"]
    problems = compare(manifest(), pages, local={"/app.js": b"rebuilt"})
    assert "/style.css: not served (HTTP none)" in problems
    assert "/app.js: differs from the local build" in problems


def test_the_page_policy_is_strict_and_weak_ones_are_named() -> None:
    assert strict_policy_problems(CSP) == []
    assert strict_policy_problems("default-src 'self'; script-src 'self' 'unsafe-inline'") == [
        "default-src is not 'none'", "script-src allows 'unsafe-inline'",
        "require-trusted-types-for is missing"]


def test_key_configuration_must_match_its_digest() -> None:
    doc = json.loads(manifest().to_json())
    doc["ohttp_keys"]["config"] = b64url(b"other keys")
    with pytest.raises(ManifestError, match="digest"):
        Manifest.from_json(json.dumps(doc).encode())
    with pytest.raises(ManifestError):
        unb64url("@@@")
