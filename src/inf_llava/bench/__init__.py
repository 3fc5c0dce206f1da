"""Benchmarks that run both sides in one process and report ratios (``inf-llava bench``, ``make bench``)."""
