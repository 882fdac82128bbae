"""Benchmarks of Floorwatch (not part of the installed package). Run `python -m bench.ingest`."""
