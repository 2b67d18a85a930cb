"""The wire decoders: every JSON value either decodes to a typed value or raises InvalidRequest
(or PayloadTooLarge) -- never anything else -- and valid values round-trip exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest, PayloadTooLarge
from e2ee_core.server.wire import (
    AccountRequest,
    AckRequest,
    DeviceCredential,
    DeviceInfo,
    DeviceKeys,
    Envelope,
    OutgoingEnvelope,
    PreKey,
    PreKeyBundle,
    PreKeyCount,
    PreKeyUpload,
    SendRequest,
    SignedPreKey,
    decode_bytes,
    encode_bytes,
    format_credential,
    parse_credential,
)

DECODERS: list[Callable[[Any], Any]] = [
    AccountRequest.from_json, DeviceKeys.from_json, PreKeyUpload.from_json, SendRequest.from_json,
    AckRequest.from_json, Envelope.from_json, PreKeyBundle.from_json, DeviceInfo.from_json,
    DeviceCredential.from_json, PreKeyCount.from_json, OutgoingEnvelope.from_json,
    PreKey.from_json, SignedPreKey.from_json,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=15,
)

usernames = st.from_regex(consts.USERNAME_PATTERN, fullmatch=True)
key_ids = st.integers(0, consts.MAX_KEY_ID)
small_bytes = st.binary(min_size=1, max_size=48)
prekeys = st.builds(PreKey, key_ids, small_bytes)
signed = st.builds(SignedPreKey, key_ids, small_bytes, small_bytes)


def _unique(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(keys, max_size=4, unique_by=lambda k: k.key_id).map(tuple)


device_keys = st.builds(DeviceKeys, st.integers(0, consts.MAX_REGISTRATION_ID), small_bytes,
                        signed, signed, _unique(prekeys), _unique(signed))
passwords = st.text(min_size=consts.MIN_PASSWORD_LENGTH, max_size=40).filter(
    lambda p: not any(0xD800 <= ord(c) <= 0xDFFF for c in p))
outgoing = st.builds(OutgoingEnvelope, usernames, st.integers(1, consts.MAX_DEVICE_ID),
                     small_bytes)
sends = st.builds(
    SendRequest, usernames,
    st.lists(outgoing, max_size=4, unique_by=lambda m: (m.username, m.device_id)).map(tuple),
    st.none() | st.integers(0, 2**62))
envelopes = st.one_of(
    st.builds(Envelope, st.integers(1, 2**62), st.just("message"), usernames,
              st.integers(1, 99), st.integers(0, 2**50), st.integers(0, 2**50), small_bytes),
    st.builds(Envelope, st.integers(1, 2**62), st.sampled_from(["device_added", "device_removed"]),
              usernames, st.integers(1, 99), st.integers(0, 2**50), st.integers(0, 2**50),
              st.none()),
)
bundles = st.builds(PreKeyBundle, usernames, st.integers(1, 99), st.integers(0, 9999),
                    small_bytes, signed, signed, st.booleans(), st.none() | prekeys)
examples = st.one_of(
    st.builds(AccountRequest, usernames, passwords, device_keys),
    st.builds(PreKeyUpload, _unique(prekeys), _unique(signed), st.none() | signed,
              st.none() | signed),
    sends, envelopes, bundles,
    st.builds(AckRequest, st.lists(st.integers(1, 2**62), max_size=5).map(tuple)),
    st.builds(DeviceInfo, st.integers(1, 99), st.integers(0, 9999), small_bytes,
              st.integers(0, 2**50)),
    st.builds(PreKeyCount, st.integers(0, 999), st.integers(0, 999)),
)


def _decode_cleanly(decoder: Callable[[Any], Any], value: Any) -> None:
    try:
        decoder(value)
    except (InvalidRequest, PayloadTooLarge):
        pass


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DECODERS), json_values)
def test_every_decoder_is_total_on_arbitrary_json(decoder: Callable[[Any], Any],
                                                  value: Any) -> None:
    _decode_cleanly(decoder, value)


@settings(max_examples=150, deadline=None)
@given(examples)
def test_valid_values_round_trip_through_json_text(value: Any) -> None:
    text = json.dumps(value.to_json())
    assert type(value).from_json(json.loads(text)) == value


def _mutations(obj: Any) -> list[tuple[list[Any], Any]]:
    """Every (path, value) inside a JSON tree, so one field at a time can be replaced."""
    out: list[tuple[list[Any], Any]] = [([], obj)]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += [([k, *p], x) for p, x in _mutations(v)]
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += [([i, *p], x) for p, x in _mutations(v)]
    return out


def _replace(obj: Any, path: list[Any], new: Any) -> Any:
    if not path:
        return new
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[path[0]] = _replace(obj[path[0]], path[1:], new)
    return copy


@settings(max_examples=200, deadline=None)
@given(examples, st.data(), json_values)
def test_one_corrupted_field_still_decodes_cleanly(value: Any, data: st.DataObject,
                                                   replacement: Any) -> None:
    tree = value.to_json()
    path, _old = data.draw(st.sampled_from(_mutations(tree)))
    _decode_cleanly(type(value).from_json, _replace(tree, path, replacement))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_truncated_or_corrupted_base64_is_refused(raw: bytes) -> None:
    text = encode_bytes(raw)
    assert decode_bytes(text, "x", max_len=64) == raw
    for cut in (1, 2, 3):
        with pytest.raises(InvalidRequest):
            decode_bytes(text[:-cut], "x", max_len=64)
    with pytest.raises(InvalidRequest):
        decode_bytes(text + "!", "x", max_len=64)
    with pytest.raises(PayloadTooLarge):
        decode_bytes(encode_bytes(raw + bytes(65)), "x", max_len=64)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=140))
def test_parse_credential_is_total(token: str) -> None:
    try:
        username, device_id, secret = parse_credential(token)
    except InvalidRequest:
        return
    assert format_credential(username, device_id, secret) == token


@settings(max_examples=50, deadline=None)
@given(usernames, st.integers(1, consts.MAX_DEVICE_ID), st.binary(min_size=32, max_size=32))
def test_credentials_round_trip(username: str, device_id: int, raw: bytes) -> None:
    import base64

    secret = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    token = format_credential(username, device_id, secret)
    assert parse_credential(token) == (username, device_id, secret)
    cred = DeviceCredential.from_json({"username": username, "device_id": device_id,
                                       "credential": token})
    assert secret not in repr(cred)


def test_send_refuses_duplicate_destinations_and_bools_as_ints() -> None:
    msg = {"username": "bob", "device_id": 1, "content": encode_bytes(b"x")}
    with pytest.raises(InvalidRequest):
        SendRequest.from_json({"recipient": "bob", "messages": [msg, msg]})
    with pytest.raises(InvalidRequest):
        SendRequest.from_json({"recipient": "bob", "messages": [dict(msg, device_id=True)]})
    with pytest.raises(PayloadTooLarge):
        SendRequest.from_json({"recipient": "bob", "messages": [
            dict(msg, content=encode_bytes(bytes(consts.MAX_ENVELOPE_BYTES + 1)))]})
