"""The fuzz runner: ``python -m fuzz [TARGET ...] (--seconds N | --runs N)``.

Each target runs in its own process (:mod:`fuzz.worker`) with libFuzzer's ``-rss_limit_mb``
(memory) and ``-timeout`` (hangs) set. The committed corpus ``fuzz/corpus/<target>/`` is read,
never written: new inputs go to a scratch directory (``--merge`` adds the ones that raise
coverage to the committed corpus). A crash, hang or memory blow-up leaves the input under
``--artifacts`` and makes the run exit 1. ``--seed`` (re)writes the seed corpora from the
targets' ``seeds()`` and the official vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from fuzz.targets import TARGETS

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
DICT_DIR = FUZZ_DIR / "dicts"

# Defaults: enough memory for the interpreter, cryptography and protobuf (about 100 MB) with a
# wide margin, yet far below what the services are allowed; a decoder input that takes 10 s is
# a hang (the slowest legitimate one, a 2048-bit BlindSign, takes milliseconds).
DEFAULT_RSS_LIMIT_MB = 1024
DEFAULT_TIMEOUT_S = 10

_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")


@dataclass
class Result:
    """What one target's run measured."""

    target: str
    outcome: str  # "ok", "crash", "timeout", "oom" or "error"
    executions: int
    cov: int
    ft: int
    corpus: int
    seconds: float
    peak_rss_mb: int
    artifact: str | None = None


def _outcome(returncode: int, log: str) -> str:
    if returncode == 0:
        return "ok"
    if "libFuzzer: timeout" in log:
        return "timeout"
    if "libFuzzer: out-of-memory" in log or "malloc limit" in log:
        return "oom"
    if "Uncaught Python exception" in log or "deadly signal" in log or "Test unit written" in log:
        return "crash"
    return "error"


def parse_log(target: str, returncode: int, log: str, seconds: float) -> Result:
    """The figures of one libFuzzer log: the final (or last seen) cov/ft line and its stats."""
    match = _DONE.findall(log) or _PROGRESS.findall(log)
    runs, cov, ft, corpus = (int(v) for v in match[-1]) if match else (0, 0, 0, 0)
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    artifact = re.search(r"Test unit written to (\S+)", log)
    return Result(target, _outcome(returncode, log),
                  stats.get("number_of_executed_units", runs), cov, ft, corpus,
                  round(seconds, 1), stats.get("peak_rss_mb", 0),
                  artifact.group(1) if artifact else None)


def run_target(target: str, args: argparse.Namespace, artifacts: Path) -> Result:
    corpus = CORPUS_DIR / target
    corpus.mkdir(parents=True, exist_ok=True)
    flags = [f"-rss_limit_mb={args.rss_limit_mb}", f"-timeout={args.timeout}",
             "-print_final_stats=1", f"-artifact_prefix={artifacts}/{target}-"]
    flags.append(f"-runs={args.runs}" if args.runs is not None
                 else f"-max_total_time={args.seconds}")
    dictionary = DICT_DIR / f"{target}.dict"
    if dictionary.exists():
        flags.append(f"-dict={dictionary}")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
        cmd = [sys.executable, "-m", "fuzz.worker", target, *flags, scratch, str(corpus)]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              cwd=FUZZ_DIR.parent, check=False)
        seconds = time.monotonic() - started
        log = proc.stderr + proc.stdout
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            (args.log_dir / f"{target}.log").write_text(log)
        result = parse_log(target, proc.returncode, log, seconds)
        if result.outcome != "ok":
            sys.stderr.write(log[-6000:])
        elif args.merge:
            subprocess.run([sys.executable, "-m", "fuzz.worker", target, "-merge=1",
                            str(corpus), scratch], capture_output=True, cwd=FUZZ_DIR.parent,
                           check=False)
    return result


def write_seeds(targets: list[str]) -> None:
    """Write every target's seeds into its corpus directory (named by content hash)."""
    for target in targets:
        module = importlib.import_module(f"fuzz.targets.{target}")
        directory = CORPUS_DIR / target
        directory.mkdir(parents=True, exist_ok=True)
        count = 0
        for seed in module.seeds():
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # noqa: S324
            count += 1
        print(f"{target}: {count} seeds")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"targets to run (default: all): {', '.join(TARGETS)}")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, default=30,
                        help="fuzzing time per target in seconds (default: 30)")
    budget.add_argument("--runs", type=int, help="executions per target instead of a time")
    parser.add_argument("--rss-limit-mb", type=int, default=DEFAULT_RSS_LIMIT_MB,
                        help=f"memory limit per target (default: {DEFAULT_RSS_LIMIT_MB})")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds one input may take (default: {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--artifacts", type=Path,
                        default=Path(tempfile.gettempdir()) / "e2ee-fuzz-findings",
                        help="where crashing inputs go (default: %(default)s)")
    parser.add_argument("--log-dir", type=Path, help="keep each target's libFuzzer log here")
    parser.add_argument("--json", type=Path, help="append the results as JSON lines here")
    parser.add_argument("--jobs", type=int, default=1,
                        help="targets run at once (default: 1; CI's smoke pass uses 2)")
    parser.add_argument("--merge", action="store_true",
                        help="add new inputs that raise coverage to the committed corpus")
    parser.add_argument("--seed", action="store_true",
                        help="write the seed corpora and exit (needs ../shared/vectors)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    targets = args.targets or list(TARGETS)
    if args.seed:
        write_seeds(targets)
        return 0
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failed = 0
    print(f"{'target':<18}{'outcome':<9}{'execs':>11}{'cov':>7}{'ft':>7}{'corpus':>8}"
          f"{'secs':>8}{'rss MB':>8}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # Results come back in target order, each as soon as it and those before it are done.
        for result in pool.map(lambda t: run_target(t, args, args.artifacts), targets):
            failed += result.outcome != "ok"
            print(f"{result.target:<18}{result.outcome:<9}{result.executions:>11}"
                  f"{result.cov:>7}{result.ft:>7}{result.corpus:>8}{result.seconds:>8}"
                  f"{result.peak_rss_mb:>8}"
                  + (f"  input: {result.artifact}" if result.artifact else ""), flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(asdict(result)) + "\n")
    return 1 if failed else 0
