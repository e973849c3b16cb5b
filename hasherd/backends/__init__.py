"""Evaluator backends: the registry of evaluator names, the evaluators that need I/O
(``asic``, ``rpc``), and the benchmark.

This package sits above ``hasherd.kernel`` (pure) and ``hasherd.devices`` (chip drivers):
see docs/architecture.md.
"""

from hasherd.backends.registry import available, create, kinds

__all__ = ["available", "create", "kinds"]
