"""Coverage-guided fuzzing (atheris/libFuzzer) of every decoder of untrusted input.

One target per decoder lives in :mod:`fuzz.targets`; each feeds the fuzzer's bytes to the
decoder and lets only that package's typed errors through. Any other exception, a hang
(``-timeout``) or memory growth past ``-rss_limit_mb`` is a finding. Seed corpora are committed
under ``fuzz/corpus/<target>/``; ``python -m fuzz --help`` runs them (see docs/DEVELOPING.md).
"""
