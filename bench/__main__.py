"""``python -m bench NAME [args]`` runs bench/bench_NAME.py; ``list`` and ``all`` too."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m bench NAME [args] | all | list")
        print("benchmarks:", ", ".join(available()))
        return 0
    # `faults` restarts the shared PostgreSQL server: it runs only when named.
    names = [n for n in available() if n != "faults"] if argv[0] == "all" else [argv[0]]
    for name in names:
        if name not in available():
            print(f"unknown benchmark {name!r}; have: {', '.join(available())}")
            return 2
        module = importlib.import_module(f"bench.bench_{name}")
        module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
