"""Compute Labyrinth test vectors from their inputs (shared by the generator and the tests).

Every ``compute_<kind>(case)`` takes the JSON inputs of one case (bytes as lowercase hex) and
returns its outputs; tests/labyrinth/vectors/<kind>.json holds both, generated once by
``python -m tests.labyrinth.generate_vectors`` and checked byte for byte by test_vectors.py.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rbcl

from e2ee_core.labyrinth import (
    attachments,
    epoch_chain,
    epochs,
    hpke,
    orf,
    padding,
    primitives,
    recovery_codes,
    sodium,
    virtual_devices,
)
from e2ee_core.labyrinth.mailbox import message_aad, message_key

Case = dict[str, Any]


def _b(value: str) -> bytes:
    return bytes.fromhex(value)


def seed(label: str, length: int = 32) -> bytes:
    """Fixed generator input: SHA-512("labyrinth-vectors/" + label) truncated."""
    return hashlib.sha512(b"labyrinth-vectors/" + label.encode()).digest()[:length]


def seed_scalar(label: str) -> bytes:
    """A fixed Ristretto255 scalar: SHA-512 of the label reduced modulo the group order."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(
        hashlib.sha512(b"labyrinth-vectors/" + label.encode()).digest()))


def compute_aes_gcm_extended(case: Case) -> Case:
    key, nonce = _b(case["key"]), _b(case["nonce"])
    return {
        "subkey": sodium.hchacha20(key, nonce[:16]).hex(),
        "ciphertext": primitives.encrypt_with_nonce(key, nonce, _b(case["aad"]),
                                                    _b(case["plaintext"])).hex(),
    }


def compute_padding(case: Case) -> Case:
    plaintext = _b(case["plaintext"])
    return {"padded_size": padding.padded_size(len(plaintext)),
            "padded": padding.pad(plaintext).hex()}


def compute_hpke(case: Case) -> Case:
    recipient_pub = hpke.public_key(_b(case["recipient_enc_priv"]))
    sender_pub = hpke.public_key(_b(case["sender_auth_priv"]))
    return {
        "recipient_enc_pub": recipient_pub.hex(),
        "sender_auth_pub": sender_pub.hex(),
        "ephemeral_pub": hpke.public_key(_b(case["ephemeral_priv"])).hex(),
        "ciphertext": hpke.encrypt_with_ephemeral(
            recipient_pub, sender_pub, _b(case["sender_auth_priv"]), psk=_b(case["psk"]),
            aad=_b(case["aad"]), plaintext=_b(case["plaintext"]),
            ephemeral_priv=_b(case["ephemeral_priv"])).hex(),
    }


def compute_orf(case: Case) -> Case:
    client = orf.Scalar(_b(case["client_state"]))
    server = orf.Scalar(_b(case["server_state"]))
    token = orf.Scalar(_b(case["rotation_token"]))
    client_domain, server_domain = _b(case["client_domain"]), _b(case["server_domain"])
    data = _b(case["input"])
    blinded = orf.client_map(client, client_domain, data)
    evolved_client, _ = orf.client_evolve(client, token)
    evolved_server = orf.server_evolve(server, token)
    evolved_blinded = orf.client_map(evolved_client, client_domain, data)
    return {
        "hash_to_curve": orf.hash_to_curve(primitives.mac(data, client_domain)).hex(),
        "blinded": blinded.hex(),
        "output": orf.server_map(server, server_domain, blinded).hex(),
        "evolved_client_state": evolved_client.value.hex(),
        "evolved_server_state": evolved_server.value.hex(),
        "evolved_blinded": evolved_blinded.hex(),
        "evolved_output": orf.server_map(evolved_server, server_domain, evolved_blinded).hex(),
    }


def compute_epochs(case: Case) -> Case:
    previous = epochs.Epoch(case["previous_sequence_id"], case["previous_epoch_id"],
                            _b(case["previous_root_key"]))
    chaining, psk = epochs.chaining_keys(previous)
    nxt = epochs.next_epoch(previous, _b(case["new_entropy"]))
    device_pub = _b(case["device_key_pub"])
    return {
        "chaining_label": f"epoch_chaining_{previous.sequence_id}_{previous.epoch_id}",
        "epoch_chaining_key": chaining.hex(),
        "epoch_distribution_psk": psk.hex(),
        "sequence_id": nxt.sequence_id,
        "epoch_root_key": nxt.root_key.hex(),
        "b64_sequence_id": epochs.b64_sequence(nxt.sequence_id),
        "epoch_data_storage_key": epochs.data_storage_key(nxt.root_key, nxt.sequence_id).hex(),
        "epoch_device_mac_key": epochs.device_mac_key(nxt.root_key, nxt.sequence_id).hex(),
        "epoch_device_mac": epochs.membership_mac(nxt.root_key, nxt.sequence_id,
                                                  device_pub).hex(),
        "entropy_aad": epochs.entropy_aad(nxt.sequence_id).decode(),
    }


def compute_recovery_codes(case: Case) -> Case:
    code = recovery_codes.RecoveryCode.from_entropy(case["entropy"])
    secrets = code.derive(case["user_id"])
    return {
        "check_characters": recovery_codes.check_characters(case["entropy"]),
        "code": code.text,
        "kdf_info": f"BackupRecoveryCode_v{code.text[0]}_{code.text[1]}_{case['user_id']}",
        "vdevice_id": secrets.vdevice_id.hex(),
        "vdevice_decryption_key": secrets.decryption_key.hex(),
    }


def compute_mailbox(case: Case) -> Case:
    epoch = epochs.Epoch(case["sequence_id"], case["epoch_id"], _b(case["epoch_root_key"]))
    key = message_key(epoch, case["thread_id"])
    aad = message_aad(case["thread_id"])
    padded = padding.pad(case["message"].encode())
    return {
        "message_key_label": (f"message_key_in_epoch_{epoch.sequence_id}_cipher_version_3"
                              f"_thread_{case['thread_id']}"),
        "message_key": key.hex(),
        "aad": aad.decode(),
        "padded": padded.hex(),
        "blob": primitives.encrypt_with_nonce(key, _b(case["nonce"]), aad, padded).hex(),
    }


def compute_epoch_chain(case: Case) -> Case:
    opener_priv = _b(case["opener_device_key_priv"])
    previous: epoch_chain.EpochHead | None = None
    heads: list[Case] = []
    for sequence, (root, random) in enumerate(zip(case["root_keys"], case["signature_randoms"],
                                                  strict=True)):
        head = epoch_chain.make_head(sequence_id=sequence, root_key=_b(root), previous=previous,
                                     opener_device_key_priv=opener_priv,
                                     opener_device_key_pub=hpke.public_key(opener_priv),
                                     random=_b(random))
        heads.append({"root_commitment": head.commitment.hex(), "body": head.body().hex(),
                      "head": head.encode().hex(), "head_hash": head.hash().hex()})
        previous = head
    return {"opener_device_key_pub": hpke.public_key(opener_priv).hex(), "heads": heads}


def compute_virtual_devices(case: Case) -> Case:
    secrets = recovery_codes.RecoveryCode.from_entropy(case["code_entropy"]).derive(
        case["user_id"])
    keys = virtual_devices.DeviceKeys.from_private(_b(case["device_key_priv"]),
                                                   _b(case["storage_key_priv"]))
    epoch = epochs.Epoch(case["sequence_id"], case["epoch_id"], _b(case["epoch_root_key"]))
    created = virtual_devices.create(
        secrets, epoch=epoch, head_hash=_b(case["head_hash"]),
        orf_state=orf.Scalar(_b(case["orf_client_state"])), keys=keys, salt=_b(case["salt"]),
        token=orf.Scalar(_b(case["orf_token"])), nonce=_b(case["nonce"]),
        random=_b(case["signature_random"]))
    return {
        "vdevice_id": secrets.vdevice_id.hex(),
        "wrap_key": primitives.kdf_key(secrets.decryption_key, _b(case["salt"]),
                                       virtual_devices.WRAP_KEY_LABEL).hex(),
        "evolved_orf_client_state": orf.client_evolve(
            orf.Scalar(_b(case["orf_client_state"])), orf.Scalar(_b(case["orf_token"])))[0]
        .value.hex(),
        "membership_mac": created.membership_mac.hex(),
        "bundle": created.bundle.encode().hex(),
    }


def compute_attachments(case: Case) -> Case:
    client = orf.Scalar(_b(case["client_state"]))
    server = orf.Scalar(_b(case["server_state"]))
    blinded = attachments.blind(client, _b(case["attachment_id"]))
    output = orf.server_map(server, _b(case["server_domain"]), blinded)
    epoch = epochs.Epoch(case["sequence_id"], case["epoch_id"], _b(case["epoch_root_key"]))
    keys = attachments.reference_keys(output, epoch)
    reference, mac = attachments.seal(keys, _b(case["pointer"]), thread_id=case["thread_id"],
                                      message_id=case["message_id"], nonce=_b(case["nonce"]))
    return {"blinded": blinded.hex(), "orf_output": output.hex(), "index": keys.index.hex(),
            "epoch_secret": attachments.epoch_secret(epoch).hex(),
            "reference_key": keys.reference_key.hex(), "mac_key": keys.mac_key.hex(),
            "reference": reference.hex(), "mac": mac.hex()}


COMPUTE = {
    "aes_gcm_extended": compute_aes_gcm_extended,
    "padding": compute_padding,
    "hpke": compute_hpke,
    "orf": compute_orf,
    "epochs": compute_epochs,
    "recovery_codes": compute_recovery_codes,
    "mailbox": compute_mailbox,
    "epoch_chain": compute_epoch_chain,
    "virtual_devices": compute_virtual_devices,
    "attachments": compute_attachments,
}
