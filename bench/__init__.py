"""Benchmark of CallBridge against a bare-handler floor: `make bench` runs bench/benchmark.py."""
