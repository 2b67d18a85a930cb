"""One fuzz target under atheris: ``python -m fuzz.worker TARGET [libFuzzer flags] [dirs]``.

The target module (and through it the decoders) is imported under atheris' instrumentation so
libFuzzer sees the decoders' branch coverage. :mod:`fuzz.run` starts one worker per target.
"""

from __future__ import annotations

import importlib
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
    atheris.Setup([argv[0], *flags], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
