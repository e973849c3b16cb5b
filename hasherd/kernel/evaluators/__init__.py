"""In-process evaluators of the kernel: the reference oracle, numba on the CPU, CUDA.

The names users type (``numba:2``, ``asic:PATH``, ...) are resolved by the registry in
``hasherd.backends``, which also holds the evaluators that need I/O.
"""

from hasherd.kernel.evaluators.base import MAX_BATCH, EvalRequest, EvalResult, Evaluator, Trace

__all__ = ["MAX_BATCH", "EvalRequest", "EvalResult", "Evaluator", "Trace"]
