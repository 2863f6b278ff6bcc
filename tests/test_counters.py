"""The engine's counters behave as a collections.Counter for everything that reads them."""

from collections import Counter

import pytest

from ntpauto.counters import Counters


def test_counts_as_a_counter_does():
    counts = Counters()
    counts["received"] += 1
    counts["received"] += 1
    counts["served"] += 1
    assert counts["never"] == 0 and "never" not in counts
    assert counts == Counter(received=2, served=1)
    assert counts - Counters(received=1) == Counter(received=1, served=1)
    assert counts.copy() == counts and isinstance(counts.copy(), Counters)
    assert counts.most_common(1) == [("received", 2)]
    del counts["served"]
    assert dict(counts) == {"received": 2}


def test_deleting_a_name_not_counted_raises():
    with pytest.raises(KeyError):
        del Counters()["never"]
