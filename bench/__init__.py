"""Benchmarks: a multi-process WebSocket load generator, two baselines and the harness that runs them."""
