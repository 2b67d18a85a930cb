"""Group messages (e2ee_core.groups): SenderKeyMessage and SenderKeyDistributionMessage
decoding, then ``group_decrypt`` by a member holding the sender's key, as a recipient does.
The first input byte picks the decoder."""

from __future__ import annotations

from collections.abc import Iterator

from e2ee_core.groups import (
    GroupError,
    InMemorySenderKeyStore,
    SenderAddress,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

ACCEPTED: tuple[type[Exception], ...] = (GroupError,)
MAX_LEN = 4096

DIST = bytes(range(16))
ALICE = SenderAddress("alice", 1)
_alice_store, _bob_store = InMemorySenderKeyStore(), InMemorySenderKeyStore()
_DISTRIBUTION = create_sender_key_distribution_message(_alice_store, ALICE, DIST)
process_sender_key_distribution_message(_bob_store, ALICE, _DISTRIBUTION)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    try:
        if data[0] & 1:
            message = SenderKeyDistributionMessage.decode(body)
            assert SenderKeyDistributionMessage.decode(message.encode()) == message
        else:
            SenderKeyMessage.decode(body)
            group_decrypt(_bob_store, ALICE, body)
            raise AssertionError("a fuzzed group message decrypted")
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    yield b"\x01" + _DISTRIBUTION.encode()
    store = InMemorySenderKeyStore()
    create_sender_key_distribution_message(store, ALICE, DIST)
    for text in (b"", b"hello group", b"x" * 300):
        yield b"\x00" + group_encrypt(store, ALICE, DIST, text)
