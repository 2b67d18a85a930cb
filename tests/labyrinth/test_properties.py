"""Property tests: every Labyrinth decoder raises only LabyrinthError, whatever its input."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.labyrinth import epochs, hpke, mailbox, orf, padding, primitives, recovery_codes
from e2ee_core.labyrinth.consts import RECOVERY_ALPHABET
from e2ee_core.labyrinth.errors import LabyrinthError

EPOCH = epochs.Epoch(3, 9, bytes(range(32)))
KEYS = hpke.generate_keypair()
blobs = st.binary(max_size=200)
keys = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


def _only_typed(call: Callable[[], object]) -> None:
    try:
        call()
    except LabyrinthError:
        pass


@given(keys, blobs, blobs)
def test_aes_gcm_extended_decrypt(key: bytes, aad: bytes, ciphertext: bytes) -> None:
    _only_typed(lambda: primitives.decrypt(key, aad, ciphertext))


@given(blobs)
def test_unpad(data: bytes) -> None:
    _only_typed(lambda: padding.unpad(data))


@given(st.binary(max_size=8).map(lambda prefix: prefix[:4]), blobs)
def test_unpad_with_plausible_prefix(prefix: bytes, body: bytes) -> None:
    _only_typed(lambda: padding.unpad(prefix.rjust(4, b"\x00") + body))


@given(keys, keys, keys, st.binary(max_size=40), blobs, blobs)
def test_hpke_decrypt(recipient_pub: bytes, recipient_priv: bytes, sender_pub: bytes,
                      psk: bytes, aad: bytes, ciphertext: bytes) -> None:
    _only_typed(lambda: hpke.decrypt(recipient_pub, recipient_priv, sender_pub, psk=psk,
                                     aad=aad, ciphertext=ciphertext))


@given(st.binary(max_size=40), st.binary(max_size=300), keys)
def test_orf_server_map(scalar: bytes, domain: bytes, point: bytes) -> None:
    _only_typed(lambda: orf.server_map(orf.Scalar(scalar), domain, point))
    _only_typed(lambda: orf.server_map(orf.server_init(), domain, point))


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_orf_evolve(client: bytes, token: bytes) -> None:
    _only_typed(lambda: orf.client_evolve(orf.Scalar(client), orf.Scalar(token)))
    _only_typed(lambda: orf.server_evolve(orf.server_init(), orf.Scalar(token)))


@given(blobs, blobs, st.integers())
def test_open_previous_epoch(sequence: bytes, root: bytes, previous_id: int) -> None:
    data = epochs.PreviousEpochData(sequence, root)
    _only_typed(lambda: epochs.open_previous_epoch(EPOCH, data, previous_id))


@given(st.integers(), st.integers(), keys)
def test_epoch_fields(sequence: int, epoch_id: int, root: bytes) -> None:
    _only_typed(lambda: epochs.Epoch(sequence, epoch_id, root))


@given(blobs, keys, keys, keys, keys, st.binary(max_size=70))
def test_receive_epoch_entropy(message: bytes, storage_pub: bytes, storage_priv: bytes,
                               device_pub: bytes, auth_pub: bytes, auth_sig: bytes) -> None:
    _only_typed(lambda: epochs.receive_epoch_entropy(
        EPOCH, message, storage_pub=storage_pub, storage_priv=storage_priv,
        sender_device_key_pub=device_pub, sender_auth_pub=auth_pub, sender_auth_sig=auth_sig))
    _only_typed(lambda: epochs.receive_epoch_entropy(
        EPOCH, message, storage_pub=KEYS[1], storage_priv=KEYS[0],
        sender_device_key_pub=device_pub, sender_auth_pub=auth_pub, sender_auth_sig=auth_sig))


@given(keys, st.binary(max_size=70))
def test_membership_and_signatures(device_pub: bytes, claimed: bytes) -> None:
    _only_typed(lambda: epochs.check_membership(EPOCH.root_key, 3, device_pub, claimed))
    assert primitives.verify(device_pub, claimed, 0x30, b"x") in (True, False)


@given(st.text(max_size=150))
def test_recovery_code_parse(text: str) -> None:
    _only_typed(lambda: recovery_codes.RecoveryCode.parse(text))
    _only_typed(lambda: recovery_codes.normalize(text))


@settings(max_examples=10, deadline=None)
@given(st.text(alphabet=RECOVERY_ALPHABET + "BGIO- ", min_size=38, max_size=44))
def test_recovery_code_correction(text: str) -> None:
    _only_typed(lambda: recovery_codes.correct("20" + text, "user", lambda _: False))


@given(st.text(max_size=130), st.text(max_size=130), st.text(max_size=130), st.integers(),
       st.integers(), st.integers(), blobs)
def test_mailbox_record(inbox: str, thread: str, message_id: str, timestamp: int,
                        epoch_id: int, version: int, blob: bytes) -> None:
    def decode() -> bytes:
        record = mailbox.MailboxRecord(inbox, thread, message_id, timestamp, epoch_id,
                                       version, blob)
        return mailbox.open_record(EPOCH, record)
    _only_typed(decode)


@given(st.text(max_size=130), blobs)
def test_mailbox_record_of_the_right_epoch(thread: str, blob: bytes) -> None:
    def decode() -> bytes:
        record = mailbox.MailboxRecord("inbox", thread, "m", 0, EPOCH.epoch_id, 3, blob)
        return mailbox.open_record(EPOCH, record)
    _only_typed(decode)
