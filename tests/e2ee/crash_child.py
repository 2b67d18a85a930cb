"""Child process for the kill -9 test: decrypts or encrypts in a loop, one line per result.

    python -m tests.e2ee.crash_child decrypt DB INFILE    # prints "ok I" / "dup I"
    python -m tests.e2ee.crash_child encrypt DB N         # prints each ciphertext (hex)
"""

from __future__ import annotations

import sys

from e2ee_core.device import Ciphertext, Device
from e2ee_core.errors import DuplicateMessage

PEER = ("alice", 1)


def main(argv: list[str]) -> int:
    mode, db = argv[0], argv[1]
    device = Device.open(db)
    print("ready", flush=True)
    if mode == "decrypt":
        with open(argv[2]) as handle:
            lines = handle.read().split()
        for index, line in enumerate(lines):
            try:
                device.decrypt(PEER, Ciphertext.from_bytes(bytes.fromhex(line)))
            except DuplicateMessage:
                print(f"dup {index}", flush=True)
                continue
            print(f"ok {index}", flush=True)
    else:
        for index in range(int(argv[2])):
            print(device.encrypt(PEER, b"crash %d" % index).to_bytes().hex(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
