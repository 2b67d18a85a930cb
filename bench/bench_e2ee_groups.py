"""Group send with Sender Keys vs 1:1 fanout, and attachment encryption vs raw AES-GCM.

Comparisons (subject and baseline alternate in one run, bench.harness):

1. group send to N members (default 100): one ``Group.encrypt`` of a ~100-byte text content
   (one sender-key encryption, one signed ciphertext that every member device receives), against
   the 1:1 fanout the same message costs without sender keys: N ``Device.encrypt`` calls over
   established Signal sessions (e2ee_core.device, in-memory store), same content bytes.
2. group receive: one ``Group.decrypt`` at a member against one ``Device.decrypt`` of a 1:1
   message of the same content (pre-encrypted, in order; per-call latency interleaved call by
   call, p50 and p99: the receive cost per recipient).
3. attachment encryption (``encrypt_attachment``: fresh key, padding, SHA-256 digest) of S MiB
   (default 8) against raw ``AESGCM.encrypt`` of the same bytes; and attachment decryption
   (digest check, decrypt, padding check) against raw ``AESGCM.decrypt``; encryption also
   against raw AES-GCM plus SHA-256 of the ciphertext, the floor any digest-carrying scheme
   pays. Reported in MB/s.

    .venv/bin/python -m bench e2ee_groups [--members N] [--mib S] [--rounds R]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.harness import Case, Comparison, compare, header, latencies, latency_line
from e2ee_core.attachments import decrypt_attachment, encrypt_attachment
from e2ee_core.content import Content, Text
from e2ee_core.device import Ciphertext, Device
from e2ee_core.groups import Group, InMemorySenderKeyStore, Outgoing, SenderAddress

TEXT = "x" * 100


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _group(members: int) -> tuple[Group, dict[str, Group], _Clock]:
    """A group of ``members`` accounts (one device each) with every sender key distributed."""
    clock = _Clock()
    names = [f"member{i:03d}" for i in range(members)]
    stores = {name: InMemorySenderKeyStore() for name in names}
    sender, outgoing = Group.create(SenderAddress(names[0], 1), names[1:], stores[names[0]],
                                    clock=clock)
    groups: dict[str, Group] = {names[0]: sender}
    queue: list[tuple[str, Outgoing]] = [(names[0], item) for item in outgoing]
    while queue:
        origin, item = queue.pop(0)
        wire = item.content.encode()
        for name in sorted(item.recipients - {origin}):
            content = Content.decode(wire)
            if name not in groups:
                groups[name], more = Group.join(SenderAddress(name, 1),
                                                SenderAddress(origin, 1), content, stores[name],
                                                clock=clock)
                queue.extend((name, m) for m in more)
            else:
                queue.extend((name, m) for m in groups[name].handle(SenderAddress(origin, 1),
                                                                    content))
    return sender, groups, clock


def _sessions(members: int) -> tuple[Device, list[tuple[tuple[str, int], Device]]]:
    """A sender with established (both directions used) sessions to ``members - 1`` devices."""
    alice = Device.create()
    peers: list[tuple[tuple[str, int], Device]] = []
    for i in range(1, members):
        bob = Device.create()
        address = (f"member{i:03d}", 1)
        alice.start_session(address, bob.prekey_bundle(device_id=1))
        first = alice.encrypt(address, b"hello")
        bob.decrypt(("member000", 1), Ciphertext.from_bytes(first.to_bytes()))
        alice.decrypt(address, bob.encrypt(("member000", 1), b"hi"))
        peers.append((address, bob))
    return alice, peers


def _mb(result: Comparison) -> Comparison:
    return dataclasses.replace(result, subject_rate=result.subject_rate / 1e6,
                               baseline_rate=result.baseline_rate / 1e6, unit="MB/s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench e2ee_groups")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    members = args.members

    header(f"e2ee groups: send to {members} members, sender keys vs 1:1 fanout")
    started = time.perf_counter()
    sender, groups, clock = _group(members)
    alice, peers = _sessions(members)
    print(f"   setup: {members}-member group and {members - 1} sessions in "
          f"{time.perf_counter() - started:.1f} s")
    content = Content.new(Text(TEXT), sent_at_ms=clock(), group_id=sender.group_id)
    plaintext = content.encode()

    def fanout() -> None:
        for address, _ in peers:
            alice.encrypt(address, plaintext)

    result = compare(
        Case(f"group send, 1 sender-key encrypt ({members} members)",
             lambda: sender.encrypt(content)),
        Case(f"1:1 fanout, {members - 1} session encrypts", fanout),
        rounds=args.rounds)
    print(result.line().replace("ops/s", "sends/s"))
    print(f"   per group send: {1000 / result.subject_rate:.3f} ms; per 1:1 fanout: "
          f"{1000 / result.baseline_rate:.3f} ms; speed-up {result.ratio:.1f}x; "
          f"one ciphertext of {len(sender.encrypt(content))} B vs {members - 1} ciphertexts")

    # Receive side: one recipient decrypting pre-encrypted messages from a sender whose chain
    # it is in step with (the send benchmark above advanced member000's chains by thousands).
    group_sender, receiver = groups["member001"], groups["member002"]
    carol, dave = Device.create(), Device.create()
    carol.start_session(("dave", 1), dave.prekey_bundle(device_id=1))
    dave.decrypt(("carol", 1), carol.encrypt(("dave", 1), b"hello"))
    carol.decrypt(("dave", 1), dave.encrypt(("carol", 1), b"hi"))
    batch = 2000
    group_wires = [group_sender.encrypt(content) for _ in range(batch)]
    session_wires = [Ciphertext.from_bytes(carol.encrypt(("dave", 1), plaintext).to_bytes())
                     for _ in range(batch)]
    state = {"g": 0, "s": 0}

    def group_receive() -> None:
        i = state["g"]
        if i == batch:
            raise RuntimeError("increase the batch")
        receiver.decrypt(SenderAddress("member001", 1), group_wires[i])
        state["g"] = i + 1

    def session_receive() -> None:
        i = state["s"]
        if i == batch:
            raise RuntimeError("increase the batch")
        dave.decrypt(("carol", 1), session_wires[i])
        state["s"] = i + 1

    subject, baseline = latencies(Case("group receive, 1 sender-key decrypt", group_receive),
                                  Case("1:1 receive, 1 session decrypt", session_receive),
                                  samples=batch - 50, warmup=20)
    print(latency_line(subject, baseline))

    size = args.mib * 1024 * 1024
    header(f"e2ee attachments: {args.mib} MiB, encrypt_attachment vs raw AES-256-GCM")
    data = os.urandom(size)
    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
    aead = AESGCM(key)
    result = compare(
        Case("encrypt_attachment (pad, GCM, SHA-256)",
             lambda: encrypt_attachment(data, content_type="video/mp4"), ops=size),
        Case("raw AESGCM.encrypt, same bytes", lambda: aead.encrypt(nonce, data, None),
             ops=size),
        rounds=args.rounds, min_time=0.5)
    print(_mb(result).line())
    result = compare(
        Case("encrypt_attachment (pad, GCM, SHA-256)",
             lambda: encrypt_attachment(data, content_type="video/mp4"), ops=size),
        Case("raw AESGCM.encrypt + SHA-256 (digest floor)",
             lambda: hashlib.sha256(aead.encrypt(nonce, data, None)).digest(), ops=size),
        rounds=args.rounds, min_time=0.5)
    print(_mb(result).line())
    blob, pointer = encrypt_attachment(data, content_type="video/mp4")
    sealed = aead.encrypt(nonce, data, None)
    result = compare(
        Case("decrypt_attachment (digest, GCM, padding)",
             lambda: decrypt_attachment(blob, pointer), ops=size),
        Case("raw AESGCM.decrypt, same bytes", lambda: aead.decrypt(nonce, sealed, None),
             ops=size),
        rounds=args.rounds, min_time=0.5)
    print(_mb(result).line())
