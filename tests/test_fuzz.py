"""Property-based fuzzing of the channel graph and the surgery.

Random functional models (tests/fuzz_models.py; some of them model
subclasses, some with towers whose inner layers share names) are checked
against the invariants of issue 10:

(a) gamma and beta zeroed on random channels -> `plan_zero_gamma` ->
    `slim_model`: outputs equal within 1e-4 relative.
(b) gamma zeroed, beta kept: the same.
(c) where (b)'s default fold was approximate: `fold="exact"` on the same
    plan, outputs equal unless it warns of a fallback.
(d) one example in four: random live gammas, `plan_global_gamma` (which
    cuts live channels) and `fold="exact"`: the slim model equals the
    original with the cut gammas set to zero, unless a warning of
    `slim_model` names a layer of the model (a cut channel that is not one
    constant where it is read, a fallback to the bias).

In both, a fold is allowed to be approximate only when `slim_model` warned
so, naming layers that pad with zeros: a zero channel can still reach a
consumer as a nonzero constant (`act(0)`, `x + 0.25`), and a "same"-padded
consumer sees 0, not that constant, at the borders (see
docs/surgery-and-exactness.md, "When a fold is exact").

A subclass keeps its class through `slim_model`, or, holding a layer its
graph does not call, is refused with an error naming its overridden methods.

A run where nothing is ever cut fails: the invariants must not pass
vacuously. The CI budget is fixed and derandomized; `make fuzz` runs a long
random search (KERAS_SLIM_FUZZ_EXAMPLES examples, KERAS_SLIM_FUZZ_RANDOM=1).
Every failure found becomes a named test in test_exactness_regressions.py.
"""

import contextlib
import os
import warnings

import keras
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers

import keras_slim
from keras_slim.core import rules
from keras_slim.core.graph import leaf_layers
from keras_slim.core.keras_compat import functional_class
from tests import fuzz_models, zoo

EXAMPLES = int(os.environ.get("KERAS_SLIM_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("KERAS_SLIM_FUZZ_RANDOM", "") == "1"


def _kill(model, rng, kill_beta):
    """Zero gamma (and beta) on random channels: coherently over a group's
    BatchNormalizations (so groups can shrink) and at random."""
    graph = keras_slim.core.graph.ChannelGraph(model)
    for group in graph.groups:
        if not group.prunable or not group.batchnorms or rng.random() < 0.2:
            continue
        dead = rng.permutation(group.width)[: rng.integers(1, group.width + 1)]
        for name, matrix in group.bn_positions.items():  # `tower3a/bn`
            zoo.kill(graph.layer(name), matrix[dead].ravel(), kill_beta)
    for bn in zoo.batchnorms(model):
        if rng.random() < 0.3:
            n = bn.moving_mean.shape[0]
            zoo.kill(bn, rng.permutation(n)[: rng.integers(0, n + 1)],
                      kill_beta)


def _slim(model, seed, kill_beta):
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    _kill(model, rng, kill_beta)
    inputs = zoo.random_inputs(model, rng, batch=2)
    before = zoo.outputs(model, inputs)
    plan = keras_slim.plan_zero_gamma(model)
    slim, after, messages = _slim_plan(model, plan, inputs)
    return before, after, slim, messages, (plan, inputs)


def _slim_plan(model, plan, inputs, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slim = keras_slim.slim_model(model, plan, **kwargs)
    return slim, zoo.outputs(slim, inputs), [str(w.message) for w in caught]


def _zero_padding_layers(model):
    graph = keras_slim.core.graph.ChannelGraph(model)
    return {c.layer.name for c in graph.calls if rules.zero_border(c.layer)}


def _exact_unless_warned(model, before, after, messages):
    """Outputs equal, or an approximate fold warned about, naming a layer
    that pads with zeros. Returns whether the equality was checked."""
    approximate = [m for m in messages if "approximate fold" in m]
    assert not [m for m in messages if "cannot absorb" in m], messages
    if approximate:
        padders = _zero_padding_layers(model)
        assert any(f"`{name}`" in m for name in padders for m in approximate)
        return False
    zoo.assert_close(before, after, rtol=1e-4)
    return True


def _check(model, seed, stats):
    if seed % 4 == 0:  # (d); (a) to (c) then set every BN parameter anew
        _check_live(model, seed + 2, stats)
    params = model.count_params()
    stats["subclassed"] += type(model) is not functional_class()
    # (a) gamma and beta zero.
    try:
        before, after, slim, messages, (plan, _) = _slim(model, seed,
                                                          kill_beta=True)
    except ValueError as error:
        # Only a subclass holding what its graph does not may be refused,
        # naming its overridden methods.
        assert isinstance(model, fuzz_models.HoldsOutsideLayer), error
        assert "Overridden methods: `call`" in str(error), error
        stats["refused"] += 1
        return
    assert type(slim) is type(model)  # the class, overrides and all, kept
    stats["towers_cut"] += any("/" in name for name in plan.kept)
    names = [layer.name for layer in leaf_layers(model)]
    stats["wide_merges"] += any(n.startswith("wmerge") for n in names)
    stats["training_calls"] += any(n.startswith("bntrain") for n in names)
    exact = _exact_unless_warned(model, before, after, messages)
    stats["examples"] += 1
    stats["approximate"] += not exact
    cut = params - slim.count_params()
    assert cut >= 0
    stats["cut_examples"] += cut > 0
    stats["params_cut"] += cut
    stats["params"] += params
    # (b) gamma zero, beta kept.
    before, after, slim, messages, (plan, inputs) = _slim(
        model, seed + 1, kill_beta=False)
    exact = _exact_unless_warned(model, before, after, messages)
    stats["approximate"] += not exact
    stats["exact_folds"] += exact and params > slim.count_params()
    if exact:
        return
    # (c) where the bias fold was approximate, fold="exact" must be exact
    # unless it warns of a fallback, naming a layer that pads with zeros.
    _, after, messages = _slim_plan(model, plan, inputs, fold="exact")
    stats["made_exact"] += _exact_unless_warned(model, before, after,
                                                messages)


# What slim_model may warn of, naming a layer, instead of being exact.
_EXCUSES = ("not one constant", "approximate fold", "in its bias instead",
            "cannot absorb", "called several times")


def _check_live(model, seed, stats):
    """(d): a plan that cuts live channels, against the original with the
    cut gammas zeroed (in place: the model is the fuzzer's own)."""
    if isinstance(model, fuzz_models.HoldsOutsideLayer):
        return  # refused by design; (a) checks the refusal names `call`
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    try:
        plan = keras_slim.plan_global_gamma(model, ratio=rng.uniform(0.2, 0.6))
    except ValueError:  # no prunable group scaled by a BatchNormalization
        return
    if not plan.kept:
        return
    inputs = zoo.random_inputs(model, rng, batch=2)
    slim, after, messages = _slim_plan(model, plan, inputs, fold="exact")
    zoo.zero_cut_gammas(model, plan)
    before = zoo.outputs(model, inputs)
    stats["live_examples"] += 1
    excuses = [m for m in messages if any(e in m for e in _EXCUSES)]
    if excuses:
        names = {c.layer.name
                 for c in keras_slim.core.graph.ChannelGraph(model).calls}
        assert all(any(f"`{n}`" in m for n in names) for m in excuses)
        return
    zoo.assert_close(before, after, rtol=1e-4)
    stats["live_exact"] += model.count_params() > slim.count_params()


@contextlib.contextmanager
def _without_local_constants():
    """Hypothesis mixes into its draws the literals of the local modules
    loaded so far (`providers._get_local_constants`), so the same seed
    draws other models in the full suite than in this file alone. The CI
    budget draws without them: the same models in every run."""
    found = providers._get_local_constants
    providers._get_local_constants = providers.Constants
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = found
        providers.CONSTANTS_CACHE.cache.clear()


def _fuzz(stats):
    # A fixed seed, not `derandomize`: hypothesis derives a derandomized
    # seed from where the test file lies, so the CI budget's models would
    # change with the clone's folder.
    @(lambda test: test) if RANDOM else seed(20261201)
    @settings(
        max_examples=EXAMPLES,
        derandomize=False,
        deadline=None,
        database=None,
        print_blob=True,
        # The CI budget reports the failing case as found; `make fuzz`
        # shrinks it to a small one.
        phases=list(Phase) if RANDOM else [Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data):
        keras.utils.set_random_seed(data.draw(st.integers(0, 2**16)))
        model = fuzz_models.build(data.draw)
        _check(model, data.draw(st.integers(0, 2**16)), stats)

    with contextlib.nullcontext() if RANDOM else _without_local_constants():
        run()


def test_fuzz_random_models_slim_exactly():
    stats = dict(examples=0, cut_examples=0, params_cut=0, params=0,
                 approximate=0, exact_folds=0, made_exact=0, subclassed=0,
                 refused=0, towers_cut=0, live_examples=0, live_exact=0,
                 wide_merges=0, training_calls=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fuzz(stats)
    print(f"fuzz: {stats}")
    # Nothing vacuous: most runs must actually cut and fold something.
    assert stats["examples"] >= min(EXAMPLES, 50)
    _check_shares(stats)
    assert stats["params_cut"] > 0.02 * stats["params"], stats
    # fold="exact" repairs most of the approximate folds the fuzzer makes.
    assert stats["made_exact"] >= 0.5 * stats["approximate"], stats
    # (d) runs on about one example in ten, most of them exact.
    assert stats["live_exact"] >= 0.5 * stats["live_examples"], stats


# The least share of the examples that takes each path: about half the
# share the fuzzer draws (150 examples: 54% cut, 53% exact folds, 28%
# training calls, 10% live, 6% subclasses, 5% towers cut, 3% wide merges,
# 0.7% refused). A layer kind added to fuzz_models' lists, as CONTRIBUTING
# says, dilutes each share by a few percent and draws other models from
# the fixed seed; it must not fail a check by chance. So a share is checked
# once the examples are enough to expect 5 paths at it; the rarer paths are
# checked together, as a sum.
SHARES = {
    "cut_examples": 0.3, "exact_folds": 0.1, "training_calls": 0.1,
    "live_examples": 0.05, "subclassed": 0.03, "towers_cut": 0.02,
    "wide_merges": 0.01, "refused": 0.003,
}


def _check_shares(stats):
    examples = stats["examples"]
    rare = [path for path, share in SHARES.items() if share * examples < 5]
    for path, share in SHARES.items():
        if path not in rare:
            assert stats[path] >= share * examples, (path, stats)
    if rare:
        assert sum(stats[path] for path in rare) >= sum(
            SHARES[path] for path in rare) * examples, (rare, stats)
