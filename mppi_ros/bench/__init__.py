"""Benchmarks behind `mppi-ros bench ...`; each returns one JSON-serialisable dict."""
