"""Our published Labyrinth vectors (tests/labyrinth/vectors/*.json), checked byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2ee_core.labyrinth import (
    attachments,
    epoch_chain,
    epochs,
    hpke,
    mailbox,
    padding,
    primitives,
    recovery_codes,
    virtual_devices,
)
from tests.labyrinth.vectors import COMPUTE

VECTORS = Path(__file__).parent / "vectors"


def _load(kind: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((VECTORS / f"{kind}.json").read_text())["cases"]
    assert cases
    return cases


def test_every_vector_file_is_checked() -> None:
    assert {path.stem for path in VECTORS.glob("*.json")} == set(COMPUTE)


@pytest.mark.parametrize("kind", sorted(COMPUTE))
def test_outputs_match_byte_for_byte(kind: str) -> None:
    for case in _load(kind):
        assert COMPUTE[kind](case["inputs"]) == case["outputs"]


def test_inverse_directions() -> None:
    for case in _load("aes_gcm_extended"):
        i, o = case["inputs"], case["outputs"]
        assert primitives.decrypt(bytes.fromhex(i["key"]), bytes.fromhex(i["aad"]),
                                  bytes.fromhex(o["ciphertext"])).hex() == i["plaintext"]
    for case in _load("padding"):
        assert padding.unpad(bytes.fromhex(case["outputs"]["padded"])).hex() == \
            case["inputs"]["plaintext"]
    for case in _load("hpke"):
        i, o = case["inputs"], case["outputs"]
        assert hpke.decrypt(bytes.fromhex(o["recipient_enc_pub"]),
                            bytes.fromhex(i["recipient_enc_priv"]),
                            bytes.fromhex(o["sender_auth_pub"]), psk=bytes.fromhex(i["psk"]),
                            aad=bytes.fromhex(i["aad"]),
                            ciphertext=bytes.fromhex(o["ciphertext"])).hex() == i["plaintext"]
    for case in _load("orf"):
        assert case["outputs"]["evolved_output"] == case["outputs"]["output"]
        assert case["outputs"]["evolved_blinded"] != case["outputs"]["blinded"]
    for case in _load("recovery_codes"):
        assert recovery_codes.RecoveryCode.parse(case["outputs"]["code"]).entropy == \
            case["inputs"]["entropy"]
    for case in _load("mailbox"):
        i, o = case["inputs"], case["outputs"]
        epoch = epochs.Epoch(i["sequence_id"], i["epoch_id"], bytes.fromhex(i["epoch_root_key"]))
        record = mailbox.MailboxRecord("inbox", i["thread_id"], "m", 0, i["epoch_id"], 3,
                                       bytes.fromhex(o["blob"]))
        assert mailbox.open_record(epoch, record) == i["message"].encode()


def test_epoch_vectors_use_the_documented_labels() -> None:
    for case in _load("epochs"):
        i, o = case["inputs"], case["outputs"]
        chaining, psk = primitives.kdf(bytes.fromhex(i["previous_root_key"]), None,
                                       o["chaining_label"].encode(), 32, 32)
        assert (chaining.hex(), psk.hex()) == (o["epoch_chaining_key"],
                                               o["epoch_distribution_psk"])
        assert o["entropy_aad"] == f"epoch__{i['previous_sequence_id'] + 1}"


def test_epoch_chain_and_virtual_device_vectors_decode() -> None:
    for case in _load("epoch_chain"):
        heads = [epoch_chain.EpochHead.decode(bytes.fromhex(h["head"]))
                 for h in case["outputs"]["heads"]]
        roots = {i: bytes.fromhex(r) for i, r in enumerate(case["inputs"]["root_keys"])}
        assert epoch_chain.verify_chain(heads, roots=roots).hex() == \
            case["outputs"]["heads"][-1]["head_hash"]
    for case in _load("virtual_devices"):
        i, o = case["inputs"], case["outputs"]
        secrets = recovery_codes.RecoveryCode.from_entropy(i["code_entropy"]).derive(i["user_id"])
        state = virtual_devices.open_bundle(
            secrets, virtual_devices.VirtualDeviceBundle.decode(bytes.fromhex(o["bundle"])))
        assert state.epoch == epochs.Epoch(i["sequence_id"], i["epoch_id"],
                                           bytes.fromhex(i["epoch_root_key"]))
        assert state.orf_state.value.hex() == o["evolved_orf_client_state"]
        assert state.keys.device_priv.hex() == i["device_key_priv"]
        assert state.head_hash.hex() == i["head_hash"]
    for case in _load("attachments"):
        i, o = case["inputs"], case["outputs"]
        keys = attachments.reference_keys(bytes.fromhex(o["orf_output"]), epochs.Epoch(
            i["sequence_id"], i["epoch_id"], bytes.fromhex(i["epoch_root_key"])))
        assert attachments.reference_sequence_id(bytes.fromhex(o["reference"])) == \
            i["sequence_id"]
        assert attachments.open_reference(keys, bytes.fromhex(o["reference"])).hex() == \
            i["pointer"]
        assert attachments.matches(keys, bytes.fromhex(o["mac"]), i["thread_id"],
                                   i["message_id"])
