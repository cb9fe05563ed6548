"""Benchmarks, run by `./run bench` (never by `./run test`): see __main__.py."""
