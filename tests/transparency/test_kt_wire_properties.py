"""The new decoders of untrusted input (issue #16): device-list values out of proofs, the
key-transparency JSON members and headers, and the client's checks on arbitrary proofs. Each
raises only its typed error on arbitrary or mutated input; encodings round-trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.client.errors import KeyNotInDirectory
from e2ee_core.client.store import ClientStore
from e2ee_core.client.transparency import Transparency
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import MalformedProof
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from e2ee_core.server import consts
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import InvalidRequest, PayloadTooLarge
from e2ee_core.server.kt_wire import (
    KtEpoch,
    KtHead,
    KtLookup,
    decode_device_list,
    device_list_label,
    encode_device_list,
    lookup_member,
)
from tests.keytrans.test_decoders_properties import mutated

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

device_lists = st.dictionaries(st.integers(1, consts.MAX_DEVICE_ID),
                               st.binary(min_size=1, max_size=64), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner,
                                                                 max_size=4), max_leaves=12)

DIRECTORY = Directory(MemoryDirectoryStorage(), vrf_secret_key=bytes(range(32)))
VALUE = encode_device_list({1: b"\x05" + bytes(32), 2: b"\x05" + bytes(range(32))})
DIRECTORY.publish({device_list_label("alice"): VALUE})
HEAD, PROOF = DIRECTORY.lookup(device_list_label("alice"))
PROOF_BYTES = PROOF.to_bytes()


@SETTINGS
@given(device_lists)
def test_device_lists_round_trip(devices: dict[int, bytes]) -> None:
    value = encode_device_list(devices)
    assert decode_device_list(value) == devices
    assert encode_device_list(decode_device_list(value)) == value  # one encoding per list


@SETTINGS
@given(st.binary(max_size=300) | device_lists.map(encode_device_list).flatmap(mutated))
def test_device_list_decoder_raises_only_malformed_proof(data: bytes) -> None:
    try:
        devices = decode_device_list(data)
    except MalformedProof:
        return
    assert encode_device_list(devices) == data  # whatever decodes is canonical


def _only_invalid(call: Any, value: Any) -> None:
    try:
        call(value)
    except (InvalidRequest, PayloadTooLarge):
        pass


@SETTINGS
@given(json_values)
def test_json_members_raise_only_typed_errors(value: Any) -> None:
    for decode in (KtHead.from_json, KtEpoch.from_json, KtLookup.from_json, lookup_member):
        _only_invalid(decode, value)
        _only_invalid(decode, {"transparency": value} if decode is lookup_member else value)


@SETTINGS
@given(st.integers(0, 2**63 - 1), st.binary(min_size=32, max_size=32),
       st.binary(min_size=1, max_size=3000))
def test_json_members_round_trip(epoch: int, root: bytes, proof: bytes) -> None:
    assert KtHead.from_json(json.loads(json.dumps(KtHead(epoch, root, root).to_json()))) == \
        KtHead(epoch, root, root)
    assert KtEpoch.from_json(KtEpoch(epoch, root).to_json()) == KtEpoch(epoch, root)
    lookup = KtLookup(epoch, root, proof)
    assert lookup_member({"transparency": lookup.to_json()}) == lookup
    assert lookup_member({"bundles": []}) is None


def _client(username: str) -> Transparency:
    store = ClientStore(":memory:")
    store.set_meta("kt_vrf_public_key", DIRECTORY.vrf_public_key.hex())
    return Transparency(store, ServerClient("http://unused.test"), clock=lambda: 0,
                        username=username, device_id=1, identity_key=b"\x05" + bytes(32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | mutated(PROOF_BYTES), st.integers(0, 5))
def test_the_client_check_raises_only_key_not_in_directory(proof: bytes, epoch: int) -> None:
    kt = _client("bob")
    try:
        devices = kt.proven_devices("alice", KtLookup(epoch, HEAD.root_hash, proof))
    except KeyNotInDirectory:
        return
    assert devices == decode_device_list(VALUE)  # only a proof of the real value passes


def test_the_real_proof_passes_and_names_the_devices() -> None:
    kt = _client("bob")
    assert kt.proven_devices("alice", KtLookup(HEAD.epoch, HEAD.root_hash, PROOF_BYTES)) == \
        decode_device_list(VALUE)
    assert kt.pinned() == (HEAD.epoch, HEAD.root_hash)
