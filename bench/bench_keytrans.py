"""keytrans: lookup verification, VRF vs Ed25519, a large directory, append-only proof sizes.

    .venv/bin/python -m bench keytrans [--quick] [--entries N] [--skip-directory]

1. ``lookup_verify`` per core, on AKD's vector proof and on proofs from our own directory
   (every call a different label, so nothing is served from a cache), against ``cryptography``'s
   Ed25519 verify in the same run. Goal (#16): >= 2,000 lookup verifications/s.
2. ECVRF (RFC 9381) prove and verify per second against Ed25519 sign and verify (OpenSSL
   through ``cryptography``): the ratios.
3. A directory of ``--entries`` labels (default 20,000 for a smoke run; the #16 figure is
   1,000,000, generated in bulk: epochs of ``--bulk`` new labels through ``publish``): then one
   epoch of 1,000 updates of existing labels (goal <= 5 s), a lookup proof's size (goal
   <= 2 KiB), that epoch's append-only proof size and the time to audit it.
4. Append-only proof size against the number of updates in the epoch (AKD's format grows with
   the insertions between audits).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import Case, compare, header
from e2ee_core.keytrans import ecvrf, tree
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from fuzz.vectors import vectors

VRF_KEY = bytes(range(32))


def _ed25519_cases() -> tuple[Case, Case]:
    sk = Ed25519PrivateKey.generate()
    pk = sk.public_key()
    msg = os.urandom(64)
    sig = sk.sign(msg)
    return (Case("Ed25519 sign (cryptography/OpenSSL)", lambda: sk.sign(msg)),
            Case("Ed25519 verify (cryptography/OpenSSL)", lambda: pk.verify(sig, msg)))


def bench_lookup(quick: bool) -> None:
    found = vectors("akd_whatsapp_v1")  # ../shared/vectors beside the repository
    if not found:
        raise SystemExit("bench keytrans needs ../shared/vectors/akd_whatsapp_v1.json")
    vector = found[0]
    pk = bytes.fromhex(vector["vrf_public_key"])
    root = bytes.fromhex(vector["epoch_hash"])
    label = bytes.fromhex(vector["label"])
    proof = bytes.fromhex(vector["lookup_proof"])
    _, ed_verify = _ed25519_cases()
    rounds = 3 if quick else 7
    result = compare(Case("lookup_verify (AKD vector, 2,130 B)",
                          lambda: lookup_verify(pk, root, vector["epoch"], label, proof)),
                     ed_verify, rounds=rounds)
    print(result.line())

    # The floor libsodium's API sets: the nine variable-base and three base-point scalar
    # multiplications of three VRF verifications, nothing else.
    from nacl import bindings as sodium

    scalar = ecvrf.secret_scalar(VRF_KEY)[0]
    point = ecvrf.public_key(VRF_KEY)

    def multiplications() -> None:
        for _ in range(3):
            sodium.crypto_scalarmult_ed25519_base_noclamp(scalar)
            for _ in range(3):
                sodium.crypto_scalarmult_ed25519_noclamp(scalar, point)

    result = compare(Case("lookup_verify (AKD vector)",
                          lambda: lookup_verify(pk, root, vector["epoch"], label, proof)),
                     Case("its 12 libsodium scalar multiplications alone", multiplications),
                     rounds=rounds)
    print(result.line())

    # Our own directory: 300 labels, each lookup a different label (no repeated proof).
    directory = Directory(MemoryDirectoryStorage(), vrf_secret_key=VRF_KEY)
    labels = [f"user{i}/1".encode() for i in range(300)]
    directory.publish({lab: os.urandom(33) for lab in labels})
    directory.publish({lab: os.urandom(33) for lab in labels[::3]})  # some at version 2
    proofs = []
    for lab in labels:
        head, lookup = directory.lookup(lab)
        proofs.append((lab, lookup.to_bytes()))
    vrf_pk = directory.vrf_public_key
    state = {"i": 0}

    def one() -> None:
        lab, raw = proofs[state["i"] % len(proofs)]
        state["i"] += 1
        lookup_verify(vrf_pk, head.root_hash, head.epoch, lab, raw)

    result = compare(Case("lookup_verify (our directory, 300 labels)", one), ed_verify,
                     rounds=rounds)
    print(result.line())
    sizes = sorted(len(raw) for _, raw in proofs)
    print(f"   lookup proof sizes in that directory: median {sizes[len(sizes) // 2]} B, "
          f"max {sizes[-1]} B")


def bench_vrf(quick: bool) -> None:
    ed_sign, ed_verify = _ed25519_cases()
    pk = ecvrf.public_key(VRF_KEY)
    alphas = [os.urandom(32) for _ in range(64)]
    pis = [ecvrf.prove(VRF_KEY, a) for a in alphas]
    state = {"p": 0, "v": 0}

    def prove() -> None:
        state["p"] += 1
        ecvrf.prove(VRF_KEY, alphas[state["p"] % 64])

    def verify() -> None:
        state["v"] += 1
        i = state["v"] % 64
        ecvrf.verify(pk, alphas[i], pis[i])

    rounds = 3 if quick else 7
    print(compare(Case("ECVRF prove (RFC 9381, libsodium)", prove), ed_sign,
                  rounds=rounds).line())
    print(compare(Case("ECVRF verify (RFC 9381, libsodium)", verify), ed_verify,
                  rounds=rounds).line())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_directory(entries: int, bulk: int) -> None:
    directory = Directory(MemoryDirectoryStorage(), vrf_secret_key=VRF_KEY)
    start = time.perf_counter()
    done = 0
    while done < entries:
        n = min(bulk, entries - done)
        directory.publish({f"user{done + i}/1".encode(): os.urandom(33) for i in range(n)})
        done += n
    gen = time.perf_counter() - start
    print(f"   generated {entries:,} labels in {done // bulk + (done % bulk > 0)} epochs of "
          f"<= {bulk:,}: {gen:.1f} s ({entries / gen:,.0f} labels/s), peak RSS {_rss_mb():,.0f} MB")

    before = directory.current()
    updates = {f"user{i * (entries // 1000)}/1".encode(): os.urandom(33)
               for i in range(min(1000, entries))}
    start = time.perf_counter()
    head = directory.publish(updates)
    publish_s = time.perf_counter() - start
    print(f"   publish one epoch of {len(updates):,} updates over {entries:,} labels: "
          f"{publish_s:.2f} s (goal <= 5 s)")

    sizes = []
    for lab in list(updates)[:50]:
        _, lookup = directory.lookup(lab)
        sizes.append(len(lookup.to_bytes()))
    sizes.sort()
    print(f"   lookup proof size: median {sizes[len(sizes) // 2]:,} B, max {sizes[-1]:,} B "
          f"(goal <= 2,048 B)")

    start = time.perf_counter()
    proof = directory.append_only_proof(before.epoch, head.epoch)
    make_s = time.perf_counter() - start
    raw = proof.to_bytes()
    step = proof.proofs[0]
    start = time.perf_counter()
    tree.audit_verify([before.root_hash, head.root_hash], proof)
    audit_s = time.perf_counter() - start
    print(f"   append-only proof for that epoch: {len(raw):,} B ({len(step.inserted):,} "
          f"inserted leaves, {len(step.unchanged_nodes):,} unchanged subtrees); made in "
          f"{make_s:.2f} s, audited in {audit_s:.2f} s")


def bench_append_only_growth(entries: int) -> None:
    """Append-only proof size against updates per epoch, over a directory of ``entries``."""
    directory = Directory(MemoryDirectoryStorage(), vrf_secret_key=VRF_KEY)
    directory.publish({f"user{i}/1".encode(): os.urandom(33) for i in range(entries)})
    for count in (1, 10, 100, 1000):
        before = directory.current()
        head = directory.publish({f"user{i * (entries // count)}/1".encode(): os.urandom(33)
                                  for i in range(count)})
        raw = directory.append_only_proof(before.epoch, head.epoch).to_bytes()
        print(f"   {count:>5} updates/epoch over {entries:,} labels: append-only proof "
              f"{len(raw):>9,} B ({len(raw) / count:,.0f} B per update)")
    # several epochs between audits: the proof is the sum of the steps
    before = directory.current()
    for _ in range(10):
        directory.publish({f"user{i * (entries // 100)}/1".encode(): os.urandom(33)
                           for i in range(100)})
    raw = directory.append_only_proof(before.epoch, directory.current().epoch).to_bytes()
    print(f"   10 epochs of 100 updates between two audits: {len(raw):,} B")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench keytrans")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--entries", type=int, default=20_000,
                        help="labels in the large directory (#16's figure: 1000000)")
    parser.add_argument("--bulk", type=int, default=50_000,
                        help="new labels per epoch while generating the directory")
    parser.add_argument("--skip-directory", action="store_true",
                        help="only the verification and VRF figures")
    args = parser.parse_args(argv)
    header("keytrans: lookup verification per core (goal >= 2,000/s)")
    bench_lookup(args.quick)
    header("keytrans: ECVRF vs Ed25519 (same run)")
    bench_vrf(args.quick)
    if args.skip_directory:
        return
    header(f"keytrans: a directory of {args.entries:,} labels")
    bench_directory(args.entries, args.bulk)
    header("keytrans: append-only proof size vs insertions")
    bench_append_only_growth(min(args.entries, 20_000))
