"""credentials: blind signing, HTTP issuance and redemption against OpenSSL baselines.

    .venv/bin/python -m bench credentials [--quick] [--pg DSN]

1. BlindSign (RFC 9474, with the verify-before-release check) per core vs ``cryptography``'s
   RSA-PSS sign on the same 2048-bit key (OpenSSL's private-operation rate): goal >= 0.9x.
2. Tokens issued per second over HTTP (the service stack, one worker) with batches of 1 and
   32, vs the same PSS-sign baseline: goal >= 0.8x with batches of 32.
3. Redemptions per second (parse + verify + atomic spent-store insert) with SQLite and with
   PostgreSQL, vs ``cryptography``'s PSS verify.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.harness import Case, Comparison, compare, header, temporary_pg_database
from credentials import blind_rsa, consts
from credentials.batched import encode_batch_request
from credentials.headers import authorization_header
from credentials.issuance import begin_issuance
from credentials.issuer_store import IssuerStore
from credentials.origin import TokenVerifier
from credentials.tokens import Token, TokenChallenge, token_key_id
from service_kit.serving import CONFIG_ENV

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
REPO = Path(__file__).resolve().parent.parent
IN_FLIGHT = 2


def _pss_sign_case(sk: rsa.RSAPrivateKey) -> Case:
    return Case("cryptography RSA-PSS sign (OpenSSL)", lambda: sk.sign(b"m", PSS, hashes.SHA384()))


def bench_blind_sign(sk: rsa.RSAPrivateKey, quick: bool) -> list[Comparison]:
    blinded, _ = blind_rsa.blind(sk.public_key(), b"message", blind_rsa.Variants.PSS_DETERMINISTIC)
    results = []
    for engine in ("openssl", "gmpy2"):
        signer = blind_rsa.BlindSigner(sk, engine=engine)
        results.append(compare(Case(f"blind_sign ({engine} engine)",
                                    lambda s=signer: s.blind_sign(blinded)),  # type: ignore[misc]
                               _pss_sign_case(sk), rounds=3 if quick else 7))
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


SERVER_PIDS: dict[str, int] = {}


def _pin_to_first_core() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@contextmanager
def issuer_server(db: str) -> Iterator[str]:
    port = _free_port()
    config = {"db": db, "issuer_name": "issuer.bench", "rate_limit": 10**12, "rate_window": 3600}
    env = dict(os.environ, **{CONFIG_ENV: json.dumps(config)})
    env["PYTHONPATH"] = str(REPO)
    # One worker pinned to one core (the per-core figure the goal asks for), with two threads
    # so that it keeps connections alive as `token-issuer serve --threads 2` does.
    proc = subprocess.Popen([sys.executable, "-m", "service_kit.serving",
                             "credentials.issuer_service:create_app", "127.0.0.1", str(port),
                             "1", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_pin_to_first_core)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = proc.pid
    try:
        for _ in range(200):
            try:
                requests.get(url + consts.DIRECTORY_PATH, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_http_issuance(store: IssuerStore, db: str, credential: str,
                        quick: bool) -> list[Comparison]:
    key = store.list_keys()[0]
    sk = store.private_key(key.key_id)
    challenge = TokenChallenge(2, "issuer.bench", b"", ("origin.bench",)).encode()
    pendings = [begin_issuance(challenge, key.token_key) for _ in range(32)]
    single = pendings[0].request.encode()
    batch = encode_batch_request([p.request for p in pendings])
    auth = {"Authorization": f"Bearer {credential}"}
    # Two requests in flight keep the single issuer worker busy while the client reads the
    # previous answer: the figure is the issuer's throughput, not the client's round trip.
    pool = ThreadPoolExecutor(IN_FLIGHT)
    sessions = [requests.Session() for _ in range(IN_FLIGHT)]

    def post(body: bytes, media: str) -> Callable[[], None]:
        def one(session: requests.Session) -> None:
            r = session.post(url + consts.ISSUANCE_PATH, data=body,
                             headers={**auth, "Content-Type": media}, timeout=30)
            if r.status_code != 200:
                raise RuntimeError(f"issuer answered {r.status_code}")

        def call() -> None:
            for future in [pool.submit(one, s) for s in sessions]:
                future.result()
        return call

    results = []
    with issuer_server(db) as url:
        rounds = 3 if quick else 5
        results.append(compare(Case("HTTP issuance, batch 1 (tokens/s)",
                                    post(single, consts.MEDIA_TOKEN_REQUEST), ops=IN_FLIGHT),
                               _pss_sign_case(sk), rounds=rounds))
        results.append(compare(Case("HTTP issuance, batch 32 (tokens/s)",
                                    post(batch, consts.MEDIA_BATCH_REQUEST),
                                    ops=32 * IN_FLIGHT),
                               _pss_sign_case(sk), rounds=rounds))
        results.append(_per_cpu_second(url, post(batch, consts.MEDIA_BATCH_REQUEST),
                                       32 * IN_FLIGHT, sk, 15 if quick else 40))
    pool.shutdown()
    return results


def _per_cpu_second(url: str, call: Callable[[], None], ops: int, sk: rsa.RSAPrivateKey,
                    calls: int) -> Comparison:
    """Tokens per CPU-second of the issuer's processes vs PSS signs per CPU-second here.

    CPU time, unlike wall time, does not count the time a shared machine gives to others, so
    this is the per-core figure; it includes all of the issuer's HTTP work.
    """
    pid = SERVER_PIDS[url]
    s_rates, b_rates = [], []
    for _ in range(3):
        before = _process_tree_cpu(pid)
        for _ in range(calls):
            call()
        s_rates.append(calls * ops / max(_process_tree_cpu(pid) - before, 1e-9))
        t0 = time.process_time()
        for _ in range(calls * ops):
            sk.sign(b"m", PSS, hashes.SHA384())
        b_rates.append(calls * ops / (time.process_time() - t0))
    return Comparison("HTTP issuance, batch 32 (tokens per issuer CPU-s)",
                      "PSS sign per CPU-s", statistics.median(s_rates),
                      statistics.median(b_rates))


def _tokens(sk: rsa.RSAPrivateKey, token_key: bytes, challenge: TokenChallenge,
            n: int) -> list[str]:
    """Valid tokens made directly with the issuer key (a blind signature is a PSS signature)."""
    key_id = token_key_id(token_key)
    digest = challenge.digest()
    out = []
    for _ in range(n):
        t = Token(2, secrets.token_bytes(32), digest, key_id, b"")
        sig = sk.sign(t.token_input(), PSS, hashes.SHA384())
        out.append(authorization_header(Token(2, t.nonce, digest, key_id, sig)))
    return out


def bench_redemption(store: IssuerStore, db: str, spent_db: str, label: str,
                     quick: bool, durable: bool = True) -> Comparison:
    key = store.list_keys()[0]
    sk = store.private_key(key.key_id)
    pk = sk.public_key()
    n = 300 if quick else 1000
    rounds = 3 if quick else 5
    with issuer_server(db) as url:
        verifier = TokenVerifier(issuer_url=url, origin_info=["origin.bench"], spent_db=spent_db,
                                 durable_spent=durable)
        verifier.challenge_header()
        pool = _tokens(sk, key.token_key, verifier.challenge, n * rounds)
        sig = sk.sign(b"m", PSS, hashes.SHA384())
        s_rates, b_rates = [], []
        for r in range(rounds):
            batch = pool[r * n:(r + 1) * n]
            t0 = time.perf_counter()
            for value in batch:
                verifier.redeem(value)
            s_rates.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for _ in range(n):
                pk.verify(sig, b"m", PSS, hashes.SHA384())
            b_rates.append(n / (time.perf_counter() - t0))
    return Comparison(f"redemption, {label} spent store", "cryptography RSA-PSS verify",
                      statistics.median(s_rates), statistics.median(b_rates))




def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench credentials")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg", default=os.environ.get(
        "PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    header("credentials: blind RSA issuance and Privacy Pass redemption (RSA-2048)")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "issuer.db")
        store = IssuerStore(db)
        store.ensure_key()
        credential = store.add_account("bench")
        sk = store.private_key(store.list_keys()[0].key_id)
        for result in bench_blind_sign(sk, args.quick):
            print(result.line())
        for result in bench_http_issuance(store, db, credential, args.quick):
            print(result.line())
        print(bench_redemption(store, db, str(Path(tmp) / "spent.db"), "SQLite",
                               args.quick).line())
        with temporary_pg_database(args.pg) as pg:
            if pg is None:
                print("redemption, PostgreSQL spent store: skipped (PostgreSQL unreachable)")
            else:
                print(bench_redemption(store, db, pg, "PostgreSQL", args.quick).line())
                print(bench_redemption(store, db, pg, "PostgreSQL (durable_spent=False)",
                                       args.quick, durable=False).line())


if __name__ == "__main__":
    main(sys.argv[1:])
