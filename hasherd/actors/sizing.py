"""How much of a batch an actor takes: the measured rates decide, not the kind of device.

When an actor has room, the pool offers it the front of a batch's waiting requests, and
``portion`` says how many it takes:

* its proportional part: were the requests shared between it and every other working
  actor that serves them in proportion to their rates, all would finish together; it takes
  the requests that fit in that time (rounded to the nearest request), so a device a
  thousand times slower takes nothing from a batch a faster one finishes in a blink;
* the whole lot when that finishes within a quarter, or within ``GAIN_FLOOR`` seconds, of
  the shared time (a cut costs a result reassembly and the ``post`` step's move off the
  actor's thread);
* never more than ``bound`` seconds of work (``devices.max_batch_seconds``), at least one
  request, except that a device on which even one request takes longer than the bound
  takes none while a faster actor can serve it.

The fastest actor always takes at least one request, so work never waits for nobody.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

GAIN_FLOOR = 0.02  # seconds: a cut that saves less is not worth it
GAIN_RATIO = 1.25  # nor one that saves less than this factor


def portion(mine: Sequence[float], others: Sequence[float], bound: float) -> int:
    """Requests (from the front) an actor takes, 0..len(mine).

    ``mine``: its estimated seconds for each request; ``others``: each other working
    actor's estimated seconds for all of them; ``bound``: the most seconds it may hold.
    """
    if not mine:
        return 0
    total = sum(mine)
    fastest_other = min(others, default=math.inf)
    if mine[0] > bound and fastest_other < total:
        return 0  # a slower device would hold even one request past the bound
    together = 1.0 / (1.0 / max(total, 1e-12) + sum(1.0 / max(o, 1e-12) for o in others))
    alone = total <= GAIN_RATIO * together or total - together < GAIN_FLOOR
    share = total if alone else together
    n = _fitting(mine, share, nearest=True)
    if n == 0 and total <= fastest_other:
        n = 1  # the fastest actor never leaves work for nobody
    return min(n, max(1, _fitting(mine, bound, nearest=False))) if n else 0


def _fitting(costs: Sequence[float], budget: float, *, nearest: bool) -> int:
    """How many requests from the front fit in ``budget`` seconds; with ``nearest``, a
    request counts when at least half of it fits."""
    spent = 0.0
    for i, cost in enumerate(costs):
        reach = spent + (cost / 2 if nearest else cost)
        if reach > budget:
            return i
        spent += cost
    return len(costs)
