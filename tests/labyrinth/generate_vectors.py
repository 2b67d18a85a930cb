"""Generate tests/labyrinth/vectors/*.json once, from fixed inputs (never in the test run).

Run ``python -m tests.labyrinth.generate_vectors`` only when adding a vector; an existing file
is never rewritten unless ``--force`` is given, so a code change cannot silently move them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.labyrinth.vectors import COMPUTE, Case, seed, seed_scalar

OUT = Path(__file__).parent / "vectors"

DESCRIPTIONS = {
    "aes_gcm_extended": "AES-GCM-Extended: subkey = HChaCha20(key, nonce[0:16]); ciphertext = "
                        "nonce(28) || AES-256-GCM(subkey, nonce[16:28], aad, plaintext) || tag",
    "padding": "Labyrinth padding: u32be(len) || plaintext || zeros to 10 bytes (len < 10) "
               "or the PADME size",
    "hpke": "Labyrinth HPKE over X25519 with HKDF-SHA256 (salt = psk, info = 0x01 || "
            "sender_auth_pub || recipient_enc_pub || ephemeral_pub || aad) and AES-256-GCM "
            "with a zero nonce; ciphertext = 0x01 || ephemeral_pub || gcm",
    "orf": "ORF over Ristretto255: blinded = from_hash(SHA-512(HMAC-SHA256(key=client_domain, "
           "input))) * client_state; output = HMAC-SHA256(key=server_domain, blinded * "
           "server_state); evolution c' = c * t, s' = s / t (scalars little-endian)",
    "epochs": "Epoch chaining: kdf = HKDF-SHA256, outputs split in order; labels as in the "
              "whitepaper, integers decimal, b64 = base64 of the decimal string",
    "recovery_codes": "Recovery codes: version '2', identifier '0', 34 entropy characters, 4 "
                      "GF(32) check characters; (vdevice_id[16], key[32]) = HKDF-SHA256(ikm = "
                      "ASCII entropy characters, salt = none, info = kdf_info)",
    "mailbox": "Mailbox record, cipher version 3: blob = AES-GCM-Extended(message_key, aad, "
               "padded) with the given nonce",
    "epoch_chain": "Epoch heads (ours, beyond the whitepaper): body = 0x01 || u64be(seq) || "
                   "previous_head_hash || root_commitment || opener_device_key_pub; "
                   "root_commitment = HKDF(root, salt = none, 'epoch_head_commitment_' + "
                   "b64(seq)); head = body || XEdDSA(opener, 0x32 || body, random); head_hash "
                   "= SHA-256('labyrinth_epoch_head' || body); the first previous hash is zero",
    "virtual_devices": "Virtual-device bundle (our layout): header = 0x01 || vdevice_id || "
                       "device_key_pub || storage_key_pub || XEdDSA(device_key, 0x30 || "
                       "storage_key_pub, random) || salt; wrap_key = HKDF(vdevice key, salt, "
                       "'virtual_device_bundle_v1'); bundle = header || AES-GCM-Extended("
                       "wrap_key, nonce, aad = header, device_key_priv || storage_key_priv || "
                       "orf_state * token || u64be(seq) || u64be(epoch_id) || root || "
                       "head_hash)",
    "attachments": "Attachment references, version 2 (our layout): blinded = ORF client map "
                   "(client domain 'attachment_ref') of the attachment id; orf_output = ORF "
                   "server map (server domain 'labyrinth_orf_attachment_ref'); index = "
                   "HKDF(orf_output, salt = none, 'attachment_reference_index_v2'); "
                   "epoch_secret = HKDF(epoch_root_key, salt = none, "
                   "'attachment_reference_secret_' + decimal sequence_id); (reference_key, "
                   "mac_key) = HKDF(orf_output, salt = epoch_secret, "
                   "'attachment_reference_v2', 32, 32); header = 0x02 || u64be(sequence_id); "
                   "reference = header || AES-GCM-Extended(reference_key, nonce, aad = header "
                   "|| index, pad(pointer)); mac = HMAC(mac_key, u16be(len thread) || thread "
                   "|| message_id)",
}


def inputs() -> dict[str, list[Case]]:
    return {
        "aes_gcm_extended": [
            {"key": seed("aes/key/0").hex(), "nonce": seed("aes/nonce/0", 28).hex(),
             "aad": "", "plaintext": ""},
            {"key": seed("aes/key/1").hex(), "nonce": seed("aes/nonce/1", 28).hex(),
             "aad": b"message_thread_bob".hex(), "plaintext": b"Hello, Labyrinth!".hex()},
            {"key": bytes(range(32)).hex(), "nonce": bytes(range(28)).hex(),
             "aad": b"epoch_data_metadata".hex(), "plaintext": seed("aes/pt/2", 64).hex()},
        ],
        "padding": [{"plaintext": seed(f"pad/{n}", 64).hex()[: 2 * n] if n <= 64
                     else (b"\x5a" * n).hex()} for n in (0, 1, 9, 10, 11, 17, 64, 100, 1000,
                                                         4097)],
        "hpke": [
            {"recipient_enc_priv": seed("hpke/recipient").hex(),
             "sender_auth_priv": seed("hpke/sender").hex(),
             "ephemeral_priv": seed("hpke/ephemeral/0").hex(),
             "psk": seed("hpke/psk").hex(), "aad": b"epoch__1".hex(),
             "plaintext": seed("hpke/entropy").hex()},
            {"recipient_enc_priv": seed("hpke/recipient").hex(),
             "sender_auth_priv": seed("hpke/sender").hex(),
             "ephemeral_priv": seed("hpke/ephemeral/1").hex(), "psk": "", "aad": "",
             "plaintext": b"x".hex()},
        ],
        "orf": [
            {"client_state": seed_scalar(f"orf/client/{i}").hex(),
             "server_state": seed_scalar(f"orf/server/{i}").hex(),
             "rotation_token": seed_scalar(f"orf/token/{i}").hex(),
             "client_domain": b"attachment_ref_client".hex(),
             "server_domain": b"attachment_ref_server".hex(),
             "input": seed(f"orf/input/{i}", 16).hex()} for i in range(2)
        ],
        "epochs": [
            {"previous_sequence_id": 0, "previous_epoch_id": 1,
             "previous_root_key": seed("epoch/root/0").hex(),
             "new_entropy": seed("epoch/entropy/1").hex(),
             "device_key_pub": seed("epoch/device").hex()},
            {"previous_sequence_id": 41, "previous_epoch_id": 9_007_199_254_740_993,
             "previous_root_key": seed("epoch/root/41").hex(),
             "new_entropy": seed("epoch/entropy/42").hex(),
             "device_key_pub": seed("epoch/device").hex()},
        ],
        "recovery_codes": [
            {"entropy": "A" * 34, "user_id": "100000000000001"},
            {"entropy": "0123456789ACDEFHJKLMNPQRSTUVWXYZ01", "user_id": "100012345678901"},
            {"entropy": "".join("ACDEFHJKLMNPQRSTUVWXYZ0123456789"[b % 32]
                                for b in seed("rc/entropy", 34)), "user_id": "alice"},
        ],
        "mailbox": [
            {"sequence_id": 3, "epoch_id": 77, "epoch_root_key": seed("mailbox/root").hex(),
             "thread_id": "100012345678901", "message": "hi",
             "nonce": seed("mailbox/nonce/0", 28).hex()},
            {"sequence_id": 12, "epoch_id": 78, "epoch_root_key": seed("mailbox/root").hex(),
             "thread_id": "群聊-42", "message": "The quick brown fox jumps over the lazy dog",
             "nonce": seed("mailbox/nonce/1", 28).hex()},
        ],
        "epoch_chain": [
            {"opener_device_key_priv": seed("chain/opener").hex(),
             "root_keys": [seed(f"chain/root/{i}").hex() for i in range(3)],
             "signature_randoms": [seed(f"chain/random/{i}", 64).hex() for i in range(3)]},
        ],
        "virtual_devices": [
            {"code_entropy": "".join("ACDEFHJKLMNPQRSTUVWXYZ0123456789"[b % 32]
                                     for b in seed("vd/entropy", 34)),
             "user_id": "100012345678901",
             "device_key_priv": seed("vd/device").hex(),
             "storage_key_priv": seed("vd/storage").hex(),
             "orf_client_state": seed_scalar("vd/orf/client").hex(),
             "orf_token": seed_scalar("vd/orf/token").hex(),
             "sequence_id": 7, "epoch_id": 1234, "epoch_root_key": seed("vd/root").hex(),
             "head_hash": seed("vd/head").hex(), "salt": seed("vd/salt").hex(),
             "nonce": seed("vd/nonce", 28).hex(),
             "signature_random": seed("vd/random", 64).hex()},
        ],
        "attachments": [
            {"client_state": seed_scalar("att/client").hex(),
             "server_state": seed_scalar("att/server").hex(),
             "server_domain": b"labyrinth_orf_attachment_ref".hex(),
             "attachment_id": b"cdn/blob/0123456789abcdef".hex(),
             "pointer": seed("att/pointer", 80).hex(), "thread_id": "100012345678901",
             "message_id": "3f2a9c", "nonce": seed("att/nonce", 28).hex(),
             "sequence_id": 0, "epoch_id": 1, "epoch_root_key": seed("att/root/0").hex()},
            {"client_state": seed_scalar("att/client").hex(),
             "server_state": seed_scalar("att/server").hex(),
             "server_domain": b"labyrinth_orf_attachment_ref".hex(),
             "attachment_id": b"cdn/blob/fedcba9876543210".hex(),
             "pointer": b"p".hex(), "thread_id": "群聊-42", "message_id": "00ff",
             "nonce": seed("att/nonce/1", 28).hex(), "sequence_id": 12_345_678_901,
             "epoch_id": 9_007_199_254_740_993, "epoch_root_key": seed("att/root/1").hex()},
        ],
    }


def main(argv: list[str]) -> int:
    force = "--force" in argv
    OUT.mkdir(exist_ok=True)
    for kind, cases in inputs().items():
        path = OUT / f"{kind}.json"
        if path.exists() and not force:
            continue
        document: dict[str, Any] = {
            "description": DESCRIPTIONS[kind],
            "cases": [{"inputs": case, "outputs": COMPUTE[kind](case)} for case in cases],
        }
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
