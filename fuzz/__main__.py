"""``python -m fuzz``: run every target (or the named ones) for a bounded time or run count."""

from fuzz.run import main

raise SystemExit(main())
