"""Benchmark scripts (run as `python benchmarks/<name>.py`); each prints a Markdown summary and writes JSON."""
