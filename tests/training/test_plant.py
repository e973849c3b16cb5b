"""``RecordSearch.plant``: a given seed joins a fresh search's first generation."""

from __future__ import annotations

import numpy as np
import pytest

from hasherd.kernel import spec
from hasherd.training.search import RecordSearch, SearchParams

SEED = bytes(range(32))


def _search() -> RecordSearch:
    slots = np.arange(spec.N_SLOTS, dtype=np.uint32)
    return RecordSearch(slots, 5, SearchParams(population=16), key=3)


def test_a_planted_seed_is_the_first_member_evaluated() -> None:
    search = _search()
    others = search.seeds[1:].copy()
    search.plant(SEED)
    assert search.pending()[0].tobytes() == SEED
    assert np.array_equal(search.seeds[1:], others)  # the rest of the draw is unchanged
    search.plant(SEED)  # already held: nothing changes
    assert [bytes(s) for s in search.seeds].count(SEED) == 1


def test_plant_refuses_a_bad_seed_or_a_search_with_history() -> None:
    with pytest.raises(ValueError, match="seed"):
        _search().plant(b"short")
    seen = np.arange(1, 5, dtype=np.uint64)
    search = RecordSearch(np.zeros(spec.N_SLOTS, np.uint32), 5, SearchParams(16), 3, seen)
    with pytest.raises(ValueError, match="fresh search"):
        search.plant(SEED)
