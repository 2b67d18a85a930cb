"""``make demo``: the product's main job.

The private sticker search stack (issuer, relay, gateway, sticker service) is not built yet;
until it is, this says so plainly instead of pretending.
"""

from __future__ import annotations

import sys

NOT_BUILT = (
    "credentials (Privacy Pass issuer and redemption)",
    "ohttp_relay (relay and gateway)",
    "sticker_search (catalog, service, client)",
)


def main() -> int:
    print("Private sticker search demo")
    print("Not built yet, so there is nothing private to search:")
    for part in NOT_BUILT:
        print(f"  - {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
