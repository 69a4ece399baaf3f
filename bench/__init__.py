"""Benchmarks, run by `make bench`; each writes JSON to bench/results/."""
