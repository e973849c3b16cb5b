"""HASHER kernel v1: the one function every evaluator computes (docs/kernel.md).

Pure code: ``spec`` (the text as executable Python), ``memory`` (the jitter memory and its
indices), ``reward`` (rewards and the GRPO advantage), ``evaluators`` (batch evaluators
behind one interface). Nothing here imports asyncio.
"""

from hasherd.kernel.memory import JitterMemory
from hasherd.kernel.spec import SPEC

__all__ = ["SPEC", "JitterMemory"]
