"""Benchmarks beside the library, each printing ratios measured side by side in one run
(``python experiments/benchmark.py bench=<name>``)."""
