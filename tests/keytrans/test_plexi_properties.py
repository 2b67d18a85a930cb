"""Auditor signature messages and responses are untrusted input: the decoders raise only
AuditorSignatureError on arbitrary or mutated input, and what decodes re-encodes to the same
bytes; encode/decode round-trips for every valid message. The same for the log's answers the
auditor decodes (epoch heads and epoch roots: only LogUnavailable)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.keytrans import auditor, consts, plexi
from e2ee_core.keytrans.errors import AuditorSignatureError, LogUnavailable

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
KEY = bytes(range(32))

messages = st.builds(
    plexi.SignatureMessage,
    ciphersuite=st.sampled_from(plexi.CIPHERSUITES),
    namespace=st.text(min_size=1, max_size=40),
    timestamp=st.integers(0, consts.MAX_U64), epoch=st.integers(0, consts.MAX_U64),
    digest=st.binary(max_size=consts.MAX_DIGEST_BYTES))


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at]
    return bytes(data)


@SETTINGS
@given(messages)
def test_round_trip(msg: plexi.SignatureMessage) -> None:
    assert plexi.SignatureMessage.from_bytes(msg.to_bytes(), msg.ciphersuite) == msg


@SETTINGS
@given(st.sampled_from(plexi.CIPHERSUITES), st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_the_typed_error(suite: int, data: bytes) -> None:
    try:
        msg = plexi.SignatureMessage.from_bytes(data, suite)
    except AuditorSignatureError:
        return
    assert msg.to_bytes() == data


@SETTINGS
@given(st.data())
def test_mutated_messages(data: st.DataObject) -> None:
    msg = data.draw(messages)
    raw = data.draw(mutated(msg.to_bytes()))
    try:
        again = plexi.SignatureMessage.from_bytes(raw, msg.ciphersuite)
    except AuditorSignatureError:
        return
    assert again.to_bytes() == raw


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3), max_leaves=8)


@SETTINGS
@given(messages, st.sampled_from(["version", "ciphersuite", "namespace", "timestamp", "epoch",
                                  "digest", "signature", "key_id", "serialized_message"]),
       JSON_VALUES)
def test_responses_with_a_replaced_field(msg: plexi.SignatureMessage, name: str,
                                         value: object) -> None:
    body = plexi.signature_response(KEY, msg).to_json()
    body[name] = value
    try:
        response = plexi.SignatureResponse.from_json(json.dumps(body))
    except AuditorSignatureError:
        return
    try:
        response.verify(plexi.public_key(KEY))
    except AuditorSignatureError:
        pass


@SETTINGS
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_arbitrary_response_bytes(data: bytes) -> None:
    try:
        plexi.SignatureResponse.from_json(data)
    except AuditorSignatureError:
        pass


# -- the log's answers the auditor decodes (e2ee_core.keytrans.auditor) -----------------------

HEADS = st.fixed_dictionaries({
    "epoch": st.integers(0, consts.MAX_U64), "root_hash": st.binary(min_size=32, max_size=32),
    "vrf_public_key": st.binary(min_size=32, max_size=32)})


@SETTINGS
@given(HEADS)
def test_heads_round_trip(head: dict[str, object]) -> None:
    body = json.dumps({k: v.hex() if isinstance(v, bytes) else v for k, v in head.items()})
    decoded = auditor.decode_head(body.encode())
    assert (decoded.epoch, decoded.root_hash, decoded.vrf_public_key) == (
        head["epoch"], head["root_hash"], head["vrf_public_key"])
    epoch_body = json.dumps({"epoch": head["epoch"], "root_hash": decoded.root_hash.hex()})
    assert auditor.decode_epoch_root(epoch_body.encode(), decoded.epoch) == decoded.root_hash


@SETTINGS
@given(st.sampled_from(["epoch", "root_hash", "vrf_public_key"]), JSON_VALUES)
def test_heads_with_a_replaced_field(name: str, value: object) -> None:
    body = {"epoch": 3, "root_hash": "ab" * 32, "vrf_public_key": "cd" * 32, name: value}
    try:
        auditor.decode_head(json.dumps(body).encode())
    except LogUnavailable:
        pass
    try:
        auditor.decode_epoch_root(json.dumps(body).encode(), 3)
    except LogUnavailable:
        pass


@SETTINGS
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_arbitrary_head_bytes(data: bytes) -> None:
    for decode in (auditor.decode_head, lambda b: auditor.decode_epoch_root(b, 1)):
        try:
            decode(data)
        except LogUnavailable:
            pass
