"""Tests of selection, cluster and combine (RFC 5905 section 11.2, appendix A.5.5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntpauto.ntp.constants import MAXDIST, MAXSTRAT, MINDISP, NOSYNC, PHI
from ntpauto.ntp.select import Candidate, fit, root_distance, select

NOW = 1000.0


def cand(key: object, offset: float, *, stratum: int = 2, dispersion: float = 0.001,
         jitter: float = 0.0005, delay: float = 0.01, root_delay: float = 0.01,
         root_dispersion: float = 0.005, **kw: object) -> Candidate:
    """A healthy candidate updated at NOW with the given offset."""
    return Candidate(key=key, offset=offset, delay=delay, dispersion=dispersion,
                     jitter=jitter, root_delay=root_delay, root_dispersion=root_dispersion,
                     stratum=stratum, epoch=NOW, **kw)


def keys(cs: list[Candidate]) -> set[object]:
    """The keys of a candidate list."""
    return {c.key for c in cs}


def test_root_distance_formula() -> None:
    """lambda = max(MINDISP, rootdelay + delay)/2 + rootdisp + disp + PHI*age + jitter."""
    c = Candidate("a", 0.0, delay=0.02, dispersion=0.003, jitter=0.001, root_delay=0.04,
                  root_dispersion=0.01, stratum=2, epoch=900.0)
    assert root_distance(c, NOW) == pytest.approx(0.03 + 0.01 + 0.003 + PHI * 100 + 0.001)
    tiny = Candidate("b", 0.0, delay=0.0, dispersion=0.0, jitter=0.0, root_delay=0.0,
                     root_dispersion=0.0, stratum=1, epoch=NOW)
    assert root_distance(tiny, NOW) == pytest.approx(MINDISP / 2)


def test_fit_rejects_stratum_leap_distance_and_unreachable() -> None:
    """fit() refuses stratum 16, leap 3, excessive distance and reach 0."""
    assert fit(cand("ok", 0.0), NOW)
    assert not fit(cand("s16", 0.0, stratum=MAXSTRAT), NOW)
    assert not fit(cand("leap", 0.0, leap=NOSYNC), NOW)
    assert not fit(cand("far", 0.0, root_dispersion=MAXDIST + 0.1), NOW)
    assert not fit(cand("deaf", 0.0, reach=0), NOW)
    # The threshold allows PHI times one poll interval on top of MAXDIST.
    edge = MAXDIST + PHI * 2.0**6 - (root_distance(cand("x", 0.0), NOW) - 0.005)
    assert fit(cand("edge", 0.0, root_dispersion=edge - 1e-9), NOW)
    assert not fit(cand("edge", 0.0, root_dispersion=edge + 1e-6), NOW)


def test_outlier_is_falseticker_and_combined_offset_follows_majority() -> None:
    """Three agree within 1 ms, one is 0.5 s off: it is a falseticker, THETA stays near 0."""
    cs = [cand("a", 0.0), cand("b", 0.0005), cand("c", -0.0004), cand("bad", 0.5)]
    sel = select(cs, NOW)
    assert keys(sel.falsetickers) == {"bad"}
    assert keys(sel.truechimers) == {"a", "b", "c"}
    assert sel.system_peer is not None and sel.system_peer.key in {"a", "b", "c"}
    assert keys(sel.survivors) == {"a", "b", "c"}
    assert abs(sel.offset - 0.0) < 0.001
    assert 0.0 < sel.jitter < 0.002


def test_majority_survives_two_falsetickers() -> None:
    """Five candidates, two wild in opposite directions: the three agreeing ones win."""
    cs = [cand("a", 0.010), cand("b", 0.011), cand("c", 0.0095), cand("hi", 0.4),
          cand("lo", -0.7)]
    sel = select(cs, NOW)
    assert keys(sel.falsetickers) == {"hi", "lo"}
    assert sel.system_peer is not None
    assert abs(sel.offset - 0.010) < 0.001


def test_two_of_four_disagreeing_leaves_no_majority() -> None:
    """Four candidates, only two agree: 2 of 4 is no majority, so no system peer."""
    cs = [cand("a", 0.0), cand("b", 0.0002), cand("hi", 0.5), cand("lo", -0.5)]
    sel = select(cs, NOW)
    assert sel.system_peer is None
    assert sel.survivors == []
    assert keys(sel.falsetickers) == {"a", "b", "hi", "lo"}


def test_three_of_four_overlapping_is_a_majority() -> None:
    """Four candidates where a wide interval bridges: three overlapping still succeed."""
    cs = [cand("a", 0.0), cand("b", 0.0003), cand("wide", 0.05, dispersion=0.06),
          cand("bad", -0.6)]
    sel = select(cs, NOW)
    assert sel.system_peer is not None
    assert keys(sel.truechimers) == {"a", "b", "wide"}
    assert keys(sel.falsetickers) == {"bad"}


def test_no_majority_between_two_far_apart() -> None:
    """Two candidates with disjoint intervals: no majority clique, no system peer."""
    sel = select([cand("a", 0.0), cand("b", 0.5)], NOW)
    assert sel.system_peer is None
    assert sel.truechimers == []
    assert sel.interval is None
    assert sel.offset == 0.0


def test_single_candidate_is_a_majority_of_one() -> None:
    """A lone server (or the local refclock) is selected and its offset used."""
    only = cand("solo", 0.0123, stratum=1)
    sel = select([only], NOW)
    assert sel.system_peer == only
    assert sel.survivors == [only]
    assert sel.offset == pytest.approx(0.0123)
    assert sel.jitter == pytest.approx(only.jitter)


def test_prefer_peer_wins_and_its_offset_is_used() -> None:
    """A surviving prefer peer becomes the system peer even when ranked last."""
    cs = [cand("a", 0.0, stratum=1), cand("b", 0.0004, stratum=1),
          cand("p", 0.0008, stratum=3, prefer=True)]
    sel = select(cs, NOW)
    assert sel.survivors[0].key in {"a", "b"}
    assert sel.system_peer is not None and sel.system_peer.key == "p"
    assert sel.offset == pytest.approx(0.0008)


def test_prefer_falseticker_is_not_chosen() -> None:
    """A prefer peer that is a falseticker is not used."""
    cs = [cand("a", 0.0), cand("b", 0.0004), cand("c", 0.0001), cand("p", 0.9, prefer=True)]
    sel = select(cs, NOW)
    assert "p" in keys(sel.falsetickers)
    assert sel.system_peer is not None and sel.system_peer.key != "p"


def test_current_peer_kept_to_avoid_clockhop() -> None:
    """The current system peer stays while it survives at the best survivor's stratum."""
    cs = [cand("a", 0.0), cand("b", 0.0003, dispersion=0.004), cand("c", 0.0001)]
    fresh = select(cs, NOW)
    assert fresh.system_peer is not None and fresh.system_peer.key != "b"
    kept = select(cs, NOW, current_peer="b")
    assert kept.system_peer is not None and kept.system_peer.key == "b"
    # A Candidate is accepted in place of its key.
    assert select(cs, NOW, current_peer=cs[1]).system_peer == cs[1]


def test_current_peer_dropped_when_a_better_stratum_survives() -> None:
    """The RFC keeps the old peer only at the same stratum as the first survivor."""
    cs = [cand("s1", 0.0, stratum=1), cand("s2", 0.0003, stratum=2), cand("c", 0.0001)]
    sel = select(cs, NOW, current_peer="s2")
    assert sel.system_peer is not None and sel.system_peer.key == "s1"


def test_unfit_candidates_excluded() -> None:
    """Stratum 16, unreachable and distant candidates go to ``unfit`` and nowhere else."""
    good = cand("good", 0.002)
    cs = [good, cand("s16", 0.002, stratum=16), cand("deaf", 0.002, reach=0),
          cand("far", 0.002, root_dispersion=5.0)]
    sel = select(cs, NOW)
    assert keys(sel.unfit) == {"s16", "deaf", "far"}
    assert keys(sel.truechimers) == {"good"}
    assert sel.falsetickers == []
    assert sel.system_peer == good


def test_all_unfit_gives_no_system_peer() -> None:
    """Nothing fit means nothing selected."""
    sel = select([cand("s16", 0.0, stratum=16)], NOW)
    assert sel.system_peer is None and keys(sel.unfit) == {"s16"}


def test_cluster_discards_statistical_outlier() -> None:
    """A truechimer far from the others (wide interval) is clustered out down to NMIN."""
    cs = [cand("a", 0.0), cand("b", 0.001), cand("c", -0.001), cand("d", 0.0005),
          cand("odd", 0.2, dispersion=0.3)]
    sel = select(cs, NOW)
    assert "odd" in keys(sel.truechimers)
    assert "odd" not in keys(sel.survivors)
    assert len(sel.survivors) >= 3
    assert abs(sel.offset) < 0.001


def test_cluster_keeps_min_survivors() -> None:
    """The cluster algorithm never goes below ``min_survivors``."""
    cs = [cand(k, off) for k, off in [("a", 0.0), ("b", 0.004), ("c", -0.004), ("d", 0.008)]]
    assert len(select(cs, NOW).survivors) == 3
    assert len(select(cs, NOW, min_survivors=4).survivors) == 4


def test_combine_weights_by_inverse_root_distance() -> None:
    """THETA is the 1/lambda weighted mean of the survivor offsets (A.5.5.5)."""
    a = cand("a", 0.001)
    b = cand("b", 0.002, dispersion=0.02)
    sel = select([a, b], NOW, min_survivors=2)
    wa, wb = 1 / root_distance(a, NOW), 1 / root_distance(b, NOW)
    assert sel.offset == pytest.approx((0.001 * wa + 0.002 * wb) / (wa + wb))
    assert sel.system_peer == a
    sel_jitter = ((0.002 - 0.001) ** 2 * wb / (wa + wb)) ** 0.5
    assert sel.selection_jitter == pytest.approx(sel_jitter)
    assert sel.jitter == pytest.approx((sel_jitter**2 + a.jitter**2) ** 0.5)


majority_member = st.tuples(
    st.floats(-0.05, 0.05),        # offset
    st.floats(0.0, 0.2),           # extra dispersion beyond |offset|
    st.integers(1, 4),             # stratum
)
minority_member = st.tuples(
    st.floats(10.0, 100.0),        # distance from zero
    st.booleans(),                 # sign
    st.floats(0.0, 0.5),           # dispersion
)


@settings(max_examples=200, deadline=None)
@given(st.lists(majority_member, min_size=1, max_size=8), st.data())
def test_overlapping_strict_majority_are_all_truechimers(majority, data) -> None:
    """When a strict majority shares a point and the rest are elsewhere, all of it chimes."""
    minority = data.draw(st.lists(minority_member, max_size=len(majority) - 1))
    cs = [cand(("m", i), off, dispersion=abs(off) + extra, stratum=s)
          for i, (off, extra, s) in enumerate(majority)]
    cs += [cand(("x", i), dist if up else -dist, dispersion=disp)
           for i, (dist, up, disp) in enumerate(minority)]
    sel = select(cs, NOW)
    majority_keys = {("m", i) for i in range(len(majority))}
    assert majority_keys <= keys(sel.truechimers)
    assert keys(sel.falsetickers) == {("x", i) for i in range(len(minority))}
    assert sel.system_peer is not None and sel.system_peer.key in majority_keys


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1.0, 1.0), st.floats(0.0, 0.4)), min_size=1,
                max_size=10))
def test_selection_invariants(raw) -> None:
    """Any outcome: a strict majority of truechimers, survivors among them, THETA in range."""
    cs = [cand(i, off, dispersion=disp) for i, (off, disp) in enumerate(raw)]
    sel = select(cs, NOW)
    assert len(sel.truechimers) + len(sel.falsetickers) + len(sel.unfit) == len(cs)
    if sel.system_peer is None:
        assert sel.survivors == []
        return
    assert 2 * len(sel.truechimers) > len(cs)
    assert keys(sel.survivors) <= keys(sel.truechimers)
    assert sel.system_peer in sel.survivors
    offsets = [c.offset for c in sel.survivors]
    assert min(offsets) - 1e-12 <= sel.offset <= max(offsets) + 1e-12
