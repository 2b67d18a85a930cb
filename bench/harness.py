"""A tiny benchmark harness: subject and baseline alternate in one process run.

Alternating rounds (subject, baseline, subject, ...) spread drift in CPU frequency and load over
both sides; the figures reported are medians of the per-round rates, and the ratio is
subject / baseline. Nothing here asserts a time: benchmarks report, tests decide correctness.
"""

from __future__ import annotations

import platform
import secrets
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """``fn`` performs ``ops`` operations per call."""

    name: str
    fn: Callable[[], object]
    ops: int = 1


@dataclass(frozen=True)
class Comparison:
    subject: str
    baseline: str
    subject_rate: float
    baseline_rate: float
    unit: str = "ops/s"

    @property
    def ratio(self) -> float:
        return self.subject_rate / self.baseline_rate if self.baseline_rate else float("nan")

    def line(self) -> str:
        return (f"{self.subject:<44} {self.subject_rate:>12,.0f} {self.unit}   "
                f"baseline {self.baseline:<36} {self.baseline_rate:>12,.0f} {self.unit}   "
                f"ratio {self.ratio:5.2f}x")


def _calibrate(case: Case, min_time: float) -> int:
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            case.fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 4 or calls >= 1 << 24:
            return max(1, int(calls * min_time / max(elapsed, 1e-9)))
        calls *= 2


def _round(case: Case, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        case.fn()
    elapsed = time.perf_counter() - start
    return calls * case.ops / elapsed


def compare(subject: Case, baseline: Case, *, rounds: int = 7, min_time: float = 0.3) -> Comparison:
    """Median rate of each case over ``rounds`` alternating rounds of about ``min_time`` s."""
    s_calls, b_calls = _calibrate(subject, min_time), _calibrate(baseline, min_time)
    s_rates: list[float] = []
    b_rates: list[float] = []
    for _ in range(rounds):
        s_rates.append(_round(subject, s_calls))
        b_rates.append(_round(baseline, b_calls))
    return Comparison(subject.name, baseline.name, statistics.median(s_rates),
                      statistics.median(b_rates))


@dataclass(frozen=True)
class Latency:
    name: str
    samples_ms: Sequence[float]

    def percentile(self, p: float) -> float:
        data = sorted(self.samples_ms)
        index = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[index]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


def latencies(subject: Case, baseline: Case, *, samples: int = 500,
              warmup: int = 20) -> tuple[Latency, Latency]:
    """Per-call latency of both cases, interleaved call by call."""
    for _ in range(warmup):
        subject.fn()
        baseline.fn()
    s: list[float] = []
    b: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter()
        subject.fn()
        t1 = time.perf_counter()
        baseline.fn()
        t2 = time.perf_counter()
        s.append((t1 - t0) * 1000)
        b.append((t2 - t1) * 1000)
    return Latency(subject.name, s), Latency(baseline.name, b)


def latency_line(subject: Latency, baseline: Latency) -> str:
    return (f"{subject.name:<44} p50 {subject.p50:7.3f} ms  p99 {subject.p99:7.3f} ms   "
            f"baseline {baseline.name}: p50 {baseline.p50:7.3f} ms  p99 {baseline.p99:7.3f} ms   "
            f"p50 ratio {subject.p50 / baseline.p50:5.2f}x")


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   machine: {machine()}")


@contextmanager
def temporary_pg_database(dsn: str) -> Iterator[str | None]:
    """A throw-away PostgreSQL database beside ``dsn``'s (None when the server is unreachable)."""
    try:
        import psycopg

        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except Exception:
        yield None
        return
    name = f"bench_{secrets.token_hex(5)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn.rpartition("/")[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
