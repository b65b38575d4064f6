"""Benchmarks and the paper table."""
