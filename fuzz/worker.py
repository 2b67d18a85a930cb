"""One fuzz target under atheris: ``python -m fuzz.worker TARGET [libFuzzer flags] [dirs]``.

The target module (and through it the decoders) is imported under atheris' instrumentation so
libFuzzer sees the decoders' branch coverage. :mod:`fuzz.run` starts one worker per target.
"""

from __future__ import annotations

import importlib
import shlex
import sys

import atheris

# The packages whose code is instrumented: the decoders and the wire helpers they share.
INSTRUMENTED = ["ohttp_relay", "credentials", "e2ee_core", "service_kit", "sticker_search"]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m fuzz.worker TARGET [libFuzzer flags] [corpus dirs]")
    name, flags = argv[1], argv[2:]
    with atheris.instrument_imports(include=INSTRUMENTED):
        module = importlib.import_module(f"fuzz.targets.{name}")
    if not any(flag.startswith("-max_len=") for flag in flags):
        flags.append(f"-max_len={module.MAX_LEN}")
    # libFuzzer re-runs argv[0] through the shell for -merge (and -fork): make it a command
    # that starts this worker again, not the path of this (non-executable) module file.
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "fuzz.worker", name))
    atheris.Setup([command, *flags], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
