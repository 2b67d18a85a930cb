"""Inputs the coverage-guided fuzzer (fuzz/, `make fuzz`) found, each decoded to a typed
error or a value now; the crashing inputs themselves sit in fuzz/corpus/<target>/crash-*."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials.errors import DecodeError
from credentials.headers import b64url_encode, parse_www_authenticate
from credentials.issuance import DirectoryKey, IssuerDirectory, public_keys
from credentials.tokens import decode_token_key, encode_token_key

RSASSA_PSS_OID = bytes.fromhex("2a864886f70d01010a")  # 1.2.840.113549.1.1.10
UNKNOWN_OID = bytes.fromhex("2a864886f70d01012f")  # 1.2.840.113549.1.1.47: no such key type


@pytest.fixture(scope="module")
def token_key() -> bytes:
    return encode_token_key(rsa.generate_private_key(65537, 2048).public_key())


def test_a_token_key_with_an_unknown_algorithm_is_a_decode_error(token_key: bytes) -> None:
    # fuzz target "tokens": cryptography's UnsupportedAlgorithm escaped decode_token_key.
    spki = token_key.replace(RSASSA_PSS_OID, UNKNOWN_OID, 1)
    assert spki != token_key
    with pytest.raises(DecodeError):
        decode_token_key(spki)


def test_a_directory_listing_such_a_key_skips_it(token_key: bytes) -> None:
    bad = token_key.replace(RSASSA_PSS_OID, UNKNOWN_OID, 1)
    directory = IssuerDirectory("https://issuer.example/token-request",
                                (DirectoryKey(2, bad), DirectoryKey(2, token_key)))
    keys = public_keys(IssuerDirectory.from_json(directory.to_json()).blind_rsa_keys())
    assert list(keys) == [DirectoryKey(2, token_key).key_id]


@pytest.mark.parametrize("max_age", ["²", "1¹1", "٣"])
def test_a_max_age_of_non_ascii_digits_is_ignored(max_age: str) -> None:
    # fuzz target "headers": str.isdigit() accepted "¹", then int() raised ValueError.
    challenge_b64 = b64url_encode(b"\x00\x02abc")
    value = (f'PrivateToken challenge="{challenge_b64}", '
             f'token-key="{b64url_encode(b"key")}", max-age="{max_age}"')
    [challenge] = parse_www_authenticate(value)
    assert challenge.max_age is None
    assert challenge.token_key == b"key"


def test_a_deeply_nested_issuer_directory_is_a_decode_error() -> None:
    # json.loads raises RecursionError (not a ValueError) past the interpreter's nesting limit.
    with pytest.raises(DecodeError):
        IssuerDirectory.from_json(b"[" * 100_000)


def test_a_retry_after_of_superscript_digits_is_not_a_crash() -> None:
    """``'²'.isdigit()`` is true but ``int('²')`` raises ValueError: an issuer (or anything
    between) answering 429 with ``Retry-After: ²`` crashed the client. Now the default wait."""
    import requests

    from credentials.client import IssuerClient
    from credentials.errors import IssuanceRateLimited

    class Answering(requests.Session):
        def post(self, url: str | bytes, *args: object, **kwargs: object) -> requests.Response:
            response = requests.Response()
            response.status_code = 429
            response.headers["Retry-After"] = "\u00b2"
            return response

    client = IssuerClient("https://issuer.example", "credential", session=Answering())
    try:
        client._post("https://issuer.example/token-request", b"", "a/b", "c/d")
    except IssuanceRateLimited as exc:
        assert exc.retry_after >= 1
    else:
        raise AssertionError("a 429 must raise IssuanceRateLimited")
