"""The relevance cut-off rules on score distributions with a known relevant tail."""

from __future__ import annotations

import numpy as np
import pytest

from photofind.relevance import (
    DEFAULT_POLICY,
    MODEL_DEFAULTS,
    CutoffPolicy,
    gap_threshold,
    policy_for,
    robust_threshold,
    sample_ids,
)


def background(n_irrelevant, n_relevant, seed=0, *, centre=0.2, spread=0.03, lift=0.12):
    """Scores of a query against a library: a normal bulk plus a lifted relevant minority."""
    rng = np.random.default_rng(seed)
    irrelevant = rng.normal(centre, spread, n_irrelevant)
    relevant = rng.normal(centre + lift, spread / 2, n_relevant)
    return irrelevant, relevant


def test_robust_threshold_separates_a_relevant_tail():
    irrelevant, relevant = background(1900, 100)
    t = robust_threshold(np.concatenate([irrelevant, relevant]), z=2.5)
    assert np.mean(relevant >= t) > 0.95
    assert np.mean(irrelevant < t) > 0.99


def test_robust_threshold_ignores_the_relevant_minority_and_the_scale():
    irrelevant, _ = background(2000, 0)
    base = robust_threshold(irrelevant, 3.0)
    # A relevant minority (5%) moves the median and MAD little: a third of the bulk's
    # deviation. (A broad query, a fifth of the library or more, lifts the rule more.)
    irr, rel = background(1900, 100)
    assert abs(robust_threshold(np.concatenate([irr, rel]), 3.0) - base) < 0.01
    # ...and scores on another scale (an image query) shift the rule with them.
    assert robust_threshold(irrelevant * 3 + 0.5, 3.0) == pytest.approx(base * 3 + 0.5)


def test_robust_threshold_of_a_degenerate_background():
    assert robust_threshold(np.full(100, 0.3), 3.0) == pytest.approx(0.3)
    scores = np.array([0.3] * 90 + [0.9] * 10)  # MAD is 0: fall back to the deviation
    assert 0.3 < robust_threshold(scores, 1.0) < 0.9


def test_gap_threshold_cuts_at_the_widest_drop():
    top = np.array([0.9, 0.88, 0.87, 0.5, 0.49, 0.4])
    assert gap_threshold(top) == 0.87
    assert gap_threshold(top, min_keep=4) == 0.49
    assert gap_threshold(np.array([0.4])) == 0.4
    assert gap_threshold(np.array([])) == 0.0


def test_sample_ids_is_deterministic_and_a_subset():
    ids = np.arange(5, 100_005)
    a, b = sample_ids(ids, 2000), sample_ids(ids, 2000)
    assert a.size == 2000 and np.array_equal(a, b)
    assert np.isin(a, ids).all() and np.all(np.diff(a) > 0)
    assert np.array_equal(sample_ids(ids[:10], 2000), ids[:10])


class _Info:
    def __init__(self, name):
        self.name = name


class _Spec:
    def __init__(self, extra):
        self.extra = extra


class _ModelLike:
    """The two attributes policy_for reads (a real package's are tested in test_search)."""

    def __init__(self, name, extra=None):
        self.info = _Info(name)
        self.spec = _Spec(extra or {})


def test_policy_for_known_and_unknown_models():
    assert policy_for(_ModelLike("tiny-synthetic")) == MODEL_DEFAULTS["tiny-synthetic"]
    assert policy_for(_ModelLike("ViT-B-32-someone")) == DEFAULT_POLICY
    override = policy_for(_ModelLike("x", {"search": {"min_score": "0.2", "z": 1.5}}))
    assert override == CutoffPolicy(min_score=0.2, z=1.5)
    assert policy_for(_ModelLike("x", {"search": "nonsense"})) == DEFAULT_POLICY
