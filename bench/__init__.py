"""Benchmarks: ``python -m bench NAME``. Each measures its baseline in the same run."""
