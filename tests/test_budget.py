"""Pruning to a budget: MACs and parameters exact, latency on a fake timer
(nothing is timed in the tests)."""

import json

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core.counting import macs_by_layer
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter, plan_widths
from keras_slim.deploy import runtimes as runtimes_lib
from keras_slim.planners import latency_table as table_lib
from keras_slim.planners.allocation import allowed_widths, importance_kept
from keras_slim.planners.budget import parse_latency, plan_for_budget

import zoo


class FakeRuntime(table_lib.Runtime):
    """Milliseconds from MACs plus a fixed cost per model, and a record of
    everything it was asked to time."""

    name = "fake"

    def __init__(self, threads=None, batch=1, slowdown=1.0, overhead=0.05):
        super().__init__(threads, batch)
        self.slowdown, self.overhead = slowdown, overhead
        self.timed = []

    def time(self, models):
        self.timed.append(len(models))
        return [self.slowdown * (self.overhead + keras_slim.count_macs(m)
                                 / 1e5) for m in models]


def _model(name="residual"):
    model = zoo.FACTORIES[name]()
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    return model


# -- counting from widths -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_width_counter_matches_the_slim_model(name):
    model = zoo.FACTORIES[name]()
    counter = WidthCounter(model)
    assert counter.dense_macs == keras_slim.count_macs(model)
    assert counter.dense_params == keras_slim.count_params(model)
    cut = 0
    for seed in range(2):
        plan = keras_slim.plan_uniform(model, 0.4, score="random", seed=seed)
        slim = keras_slim.slim_model(model, plan, fold="none")
        widths = plan_widths(plan)
        assert counter.macs(widths) == keras_slim.count_macs(slim)
        assert counter.params(widths) == keras_slim.count_params(slim)
        cut += len(plan.kept)
    assert cut > 0


def test_width_counter_with_folding_on_conv_batchnorm_models():
    model = _model("residual")
    counter = WidthCounter(model)
    plan = keras_slim.plan_global_gamma(model, 0.5)
    slim = keras_slim.slim_model(model, plan)
    assert counter.params(plan_widths(plan)) == keras_slim.count_params(slim)
    assert counter.macs(plan_widths(plan)) < counter.dense_macs


# -- MAC and parameter budgets ----------------------------------------------------


@pytest.mark.parametrize("method", ["global_gamma", "l1_norm", "uniform",
                                    "latency_aware"])
def test_mac_budget_is_met_and_tight(method):
    model = _model()
    dense = keras_slim.count_macs(model)
    result = plan_for_budget(model, method, macs=0.5)
    slim = keras_slim.slim_model(model, result.plan)
    macs = keras_slim.count_macs(slim)
    assert macs == result.achieved["macs"]
    assert macs <= 0.5 * dense
    assert result.under("macs") == pytest.approx(1 - macs / (0.5 * dense))
    if method != "latency_aware":
        # Tight: the search stops within a quarter channel of the ratio,
        # and a ratio that much smaller no longer fits.
        channels = sum(g.width for g in keras_slim.channel_groups(model)
                       if g.prunable)
        looser = keras_slim.planners.methods.plan_for(
            model, method, ratio=result.ratio - 0.25 / channels)
        assert WidthCounter(model).macs(plan_widths(looser)) > 0.5 * dense


def test_a_planner_of_your_own_takes_a_budget():
    """Any planner with a ratio works: here, cut only the first group."""
    model = _model()
    graph = ChannelGraph(model)
    first = next(g for g in graph.groups if g.prunable)

    def first_group_only(model, ratio, min_channels=1):
        plan = keras_slim.plan_uniform(model, ratio, score="gamma")
        kept = {first.name: plan.kept[first.name]} \
            if first.name in plan.kept else {}
        return keras_slim.PruningPlan(kept=kept)

    dense = keras_slim.count_macs(model)
    floor = WidthCounter(graph).macs(
        plan_widths(first_group_only(model, 1 - 1e-9)))
    goal = (floor + dense) / 2
    result = plan_for_budget(model, first_group_only, macs=goal)
    assert result.method == "first_group_only"
    assert set(result.plan.kept) == {first.name}
    assert result.achieved["macs"] <= goal
    with pytest.raises(ValueError, match="smallest first_group_only"):
        plan_for_budget(model, first_group_only, macs=floor - 1)


def test_absolute_param_budget_and_both_budgets():
    model = _model()
    dense = keras_slim.count_params(model)
    target = int(0.6 * dense)
    result = plan_for_budget(model, params=target)
    slim = keras_slim.slim_model(model, result.plan)
    assert keras_slim.count_params(slim) == result.achieved["params"] <= target
    both = plan_for_budget(model, macs=0.3, params=0.9)
    slim = keras_slim.slim_model(model, both.plan)
    assert keras_slim.count_macs(slim) <= 0.3 * keras_slim.count_macs(model)
    assert keras_slim.count_params(slim) <= 0.9 * dense
    assert both.targets == {"macs": 0.3 * keras_slim.count_macs(model),
                            "params": 0.9 * dense}


def test_constraints_are_respected():
    model = _model()
    result = plan_for_budget(model, macs=0.5, round_to=4, min_channels=4)
    for name, kept in result.plan.kept.items():
        assert len(kept) % 4 == 0 and len(kept) >= 4, name


def test_a_budget_the_dense_model_meets_prunes_nothing():
    model = _model()
    result = plan_for_budget(model, macs=1.0)
    assert result.ratio == 0.0 and not result.plan.kept


def test_result_is_json_serializable():
    model = _model()
    result = plan_for_budget(model, macs=0.5)
    data = json.loads(json.dumps(result.to_dict()))
    assert keras_slim.PruningPlan.from_dict(data["plan"]) == result.plan
    assert "macs" in result.summary()
    assert any(c.get("chosen") for c in data["candidates"])


def test_model_is_not_modified():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    plan_for_budget(model, macs=0.5)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- errors ---------------------------------------------------------------------


def test_impossible_budget_names_the_smallest_reachable_figure():
    model = _model()
    counter = WidthCounter(model)
    smallest = counter.macs(plan_widths(keras_slim.plan_global_gamma(
        model, 1 - 1e-9, min_channels=4)))
    with pytest.raises(ValueError, match="smallest global_gamma reaches") \
            as error:
        plan_for_budget(model, macs=0.01, min_channels=4)
    assert f"{smallest / 1e3:.3f} k" in str(error.value)


def test_unknown_method_and_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="Expected `method` to be one of"):
        plan_for_budget(model, "magic", macs=0.5)
    with pytest.raises(ValueError, match="Expected `method`"):
        plan_for_budget(model, "zero_gamma", macs=0.5)
    with pytest.raises(TypeError, match="searches the ratio itself"):
        plan_for_budget(model, macs=0.5, ratio=0.3)
    with pytest.raises(ValueError, match="needs a budget"):
        plan_for_budget(model)
    with pytest.raises(ValueError, match="Received: macs=-1"):
        plan_for_budget(model, macs=-1)
    with pytest.raises(TypeError, match="global_gamma.*takes .*got an unexpected"):
        plan_for_budget(model, "global_gamma", macs=0.5, tol=1)


def test_latency_budget_parsing():
    assert parse_latency("8ms") == (8.0, None)
    assert parse_latency("0.01 s") == (10.0, None)
    assert parse_latency("500us") == (0.5, None)
    assert parse_latency(0.6) == (None, 0.6)
    for bad in ("8", 8, "fast", 0, "-1ms"):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(bad)


def test_latency_budget_without_a_runtime_installed(monkeypatch):
    real = runtimes_lib.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes_lib.importlib.util, "find_spec",
        lambda name: None if name == "ai_edge_litert" else real(name),
    )
    with pytest.raises(ImportError, match="pip install ai-edge-litert"):
        plan_for_budget(_model(), latency="8ms")


# -- latency on a fake timer ------------------------------------------------------


def test_latency_table_predicts_the_fake_timer_and_round_trips(tmp_path):
    model = _model()
    runtime = FakeRuntime(threads=2, overhead=0.0)
    table = table_lib.build_latency_table(model, runtime, verbose=False)
    assert table.runtime == {"name": "fake", "threads": 2, "batch": 1}
    assert table.predict({}) == pytest.approx(table.dense_ms)
    # An empty call, one timing call per distinct layer shape, the scan of
    # the costliest layer, the model.
    assert runtime.timed[-1] == 1 and len(runtime.timed) == len(
        table.entries) + 3
    # MACs have no steps: the scan suggests no rounding.
    assert table.steps["round_to"] == 1
    path = tmp_path / "table.json"
    table.save(path)
    loaded = table_lib.LatencyTable.load(path).bind(WidthCounter(model))
    plan = keras_slim.plan_global_gamma(model, 0.4)
    widths = plan_widths(plan)
    assert loaded.predict(widths) == pytest.approx(table.predict(widths))
    # MACs are bilinear in a layer's input and output widths, as the
    # table's interpolation is, and the model's MACs are the sum of its
    # layers': the prediction is exact.
    slim = keras_slim.slim_model(model, plan)
    assert table.predict(widths) == pytest.approx(runtime.time([slim])[0])
    with pytest.raises(ValueError, match="built for another model"):
        loaded.bind(WidthCounter(_model("chain")))


class MovingRuntime(FakeRuntime):
    """The fake timer plus a cost per value that a merge or a pooling layer
    writes: work that a group's width drives without a MAC."""

    name = "fake"
    MOVERS = (keras.layers.Add, keras.layers.GlobalAveragePooling2D)

    def time(self, models):
        times = super().time(models)
        return [t + sum(float(np.prod(layer.output.shape[1:])) / 1e3
                        for layer in m.layers if isinstance(layer, self.MOVERS))
                for t, m in zip(times, models)]


def test_latency_table_prices_the_merges_and_pooling_a_group_drives():
    model = _model()
    runtime = MovingRuntime(overhead=0.0)
    table = table_lib.build_latency_table(model, runtime, verbose=False,
                                          scan=False, memory=True)
    memory = [c["layer"] for c in table.calls if c.get("kind") == "memory"]
    assert memory[:2] == ["r1_add", "r2_add"] and len(memory) == 3
    assert memory[2].startswith("global_average_pooling2d")
    plan = keras_slim.plan_global_gamma(model, 0.4)
    widths = plan_widths(plan)
    assert widths["stem_conv"] < 8 and widths["r2b_conv"] < 16  # streams cut
    measured = runtime.time([keras_slim.slim_model(model, plan)])[0]
    # Moved values are linear in the width, as the table's interpolation
    # is: the prediction is exact.
    assert table.predict(widths) == pytest.approx(measured)
    # A table that prices only the convolutions (the default, and every
    # version 1 table) scales their sum to the dense time and misses.
    old = table_lib.build_latency_table(model, runtime, verbose=False,
                                        scan=False)
    assert not any(c.get("kind") == "memory" for c in old.calls)
    data = old.to_dict()
    data["version"] = 1
    table_lib.LatencyTable.from_dict(data).bind(WidthCounter(model))
    assert old.predict({}) == pytest.approx(table.dense_ms)
    assert abs(old.predict(widths) - measured) > 0.02 * measured
    # Each stream's memory calls are among its calls, for the knapsack.
    by_group = {n: {table.calls[i]["layer"] for i in v}
                for n, v in table.calls_by_group().items()}
    assert "r1_add" in by_group["stem_conv"]
    assert {"r2_add", memory[2]} <= by_group["r2b_conv"]
    assert not {"r1_add", "r2_add"} & by_group["r1a_conv"]
    with pytest.raises(ValueError, match="built for another model"):
        table_lib.LatencyTable.from_dict(table.to_dict()).bind(
            WidthCounter(_model("chain")))


class KernelRuntime(FakeRuntime):
    """A fake timer on which a MAC of a 3x3 convolution costs four times one
    of a 1x1 convolution or a Dense layer."""

    def time(self, models):
        self.timed.append(len(models))
        times = []
        for m in models:
            by_layer = macs_by_layer(ChannelGraph(m))
            times.append(self.overhead + sum(
                n * (4 if getattr(m.get_layer(name), "kernel_size",
                                  (1,)) == (3, 3) else 1)
                for name, n in by_layer.items()) / 1e5)
        return times


def test_a_mac_budget_spent_on_latency_is_faster_at_the_same_macs():
    model = zoo.mixed_kernels()
    runtime = KernelRuntime(overhead=0.0)
    table = table_lib.build_latency_table(model, runtime, verbose=False,
                                          scan=False)
    by_macs = plan_for_budget(model, "latency_aware", macs=0.5, table=table,
                              confirm=False)
    by_time = plan_for_budget(model, "latency_aware", macs=0.5, table=table,
                              runtime=runtime, cost="latency")
    slims = [keras_slim.slim_model(model, r.plan) for r in (by_macs, by_time)]
    dense_macs = keras_slim.count_macs(model)
    for slim in slims:
        assert keras_slim.count_macs(slim) <= 0.5 * dense_macs
    slow, fast = runtime.time(slims)
    assert fast < 0.95 * slow
    assert by_time.measured_ms == pytest.approx(fast)
    assert by_time.dense["latency"] == pytest.approx(runtime.time([model])[0])
    assert by_macs.measured_ms is None
    with pytest.raises(ValueError, match="`cost`.*cost='speed'"):
        plan_for_budget(model, "latency_aware", macs=0.5, cost="speed")
    with pytest.raises(ValueError, match="method 'global_gamma' thresholds"):
        plan_for_budget(model, "global_gamma", macs=0.5, cost="latency",
                        table=table)


class FloorRuntime(FakeRuntime):
    """Milliseconds from MACs, but no model takes less than `floor`: below
    a few channels a table of layers timed alone is flat."""

    def __init__(self, floor):
        super().__init__(overhead=0.0)
        self.floor = floor

    def time(self, models):
        return [max(t, self.floor) for t in super().time(models)]


def test_a_mac_budget_spent_on_latency_is_reached_where_the_table_is_flat():
    model = zoo.mixed_kernels()
    table = table_lib.build_latency_table(model, FloorRuntime(1.5),
                                          verbose=False, scan=False)
    widths = {"c3_conv": 8}
    assert table.call_ms(3, widths) == table.call_ms(3, {"c3_conv": 16})
    result = plan_for_budget(model, "latency_aware", macs=0.2, table=table,
                             cost="latency", confirm=False)
    slim = keras_slim.slim_model(model, result.plan)
    assert keras_slim.count_macs(slim) <= 0.2 * keras_slim.count_macs(model)


@pytest.mark.parametrize("method", ["global_gamma", "latency_aware"])
@pytest.mark.parametrize("budget", [0.6, "3.5ms"])
def test_latency_budget_lands_under_and_close(method, budget):
    model = _model()
    runtime = FakeRuntime()
    result = plan_for_budget(model, method, latency=budget, runtime=runtime)
    goal = result.targets["latency"]
    if budget == 0.6:
        assert goal == pytest.approx(0.6 * runtime.time([model])[0])
    else:
        assert goal == 3.5
    slim = keras_slim.slim_model(model, result.plan)
    assert result.measured_ms == pytest.approx(runtime.time([slim])[0])
    assert 0.85 * goal <= result.measured_ms <= goal
    chosen = [c for c in result.candidates if c.get("chosen")]
    assert chosen[-1]["measured_ms"] == result.measured_ms


def test_a_table_that_misses_is_corrected_by_the_measurement():
    model = _model()
    table = table_lib.build_latency_table(model, FakeRuntime(),
                                          verbose=False)
    # The deployed runtime is 1.5x slower than the table says.
    slow = FakeRuntime(slowdown=1.5)
    result = plan_for_budget(model, latency="2.5ms", table=table,
                             runtime=slow)
    assert result.measured_ms <= 2.5
    timed = [c for c in result.candidates if "measured_ms" in c]
    assert len(timed) >= 2 and timed[0]["measured_ms"] > 2.5


class StepRuntime(FakeRuntime):
    """Milliseconds from MACs with every convolution's and Dense layer's
    output width rounded up to a multiple of 8, as a vector unit would."""

    name = "steps"

    def time(self, models):
        self.timed.append(len(models))
        out = []
        for model in models:
            ms = 0.0
            for layer in model.layers:
                if isinstance(layer, keras.layers.Conv2D):
                    width, kernel = layer.filters, np.prod(layer.kernel_size)
                elif isinstance(layer, keras.layers.Dense):
                    width, kernel = layer.units, 1
                else:
                    continue
                spatial = np.prod(layer.output.shape[1:-1])
                ms += (-(-width // 8) * 8 * layer.input.shape[-1] * kernel *
                       spatial / 1e5)
            out.append(self.overhead + ms)
        return out


def _wide_model():
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for width in (48, 64):
        x = keras.layers.Conv2D(width, 3, padding="valid")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    return model


def test_round_to_auto_keeps_widths_on_the_fast_side_of_steps(tmp_path):
    model = _wide_model()
    runtime = StepRuntime()
    table = table_lib.build_latency_table(model, runtime, verbose=False)
    assert table.steps["round_to"] == 8
    assert table.steps["layer"] == model.layers[4].name  # the 64-wide conv
    path = tmp_path / "table.json"
    table.save(path)
    table = table_lib.LatencyTable.load(path)
    assert table.steps["round_to"] == 8
    result = plan_for_budget(model, "global_gamma", latency=0.5, table=table,
                             runtime=runtime, round_to="auto")
    assert result.round_to == 8
    assert result.plan.kept and all(
        len(kept) % 8 == 0 for kept in result.plan.kept.values())
    assert result.measured_ms <= result.targets["latency"]
    # Below the narrowest width timed, a layer costs what that width costs.
    assert table_lib._grid(384, True, table_lib.FRACTIONS) == [
        8, 96, 192, 288, 384]
    assert table_lib._interp(3, [8, 16], [1.0, 2.0]) == 1.0


def test_noisy_dips_in_a_table_are_read_as_flat_and_the_search_crosses():
    assert table_lib._monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.0, 2.0, 4.0]
    assert table_lib._monotone([[1.0, 3.0], [0.5, 4.0]]) == [
        [0.5, 3.0], [0.5, 4.0]]
    model = _wide_model()
    table = table_lib.build_latency_table(model, FakeRuntime(overhead=0.0),
                                          verbose=False)
    # Noise made every convolution look slower at 1/2 of its output
    # channels than at 3/4: the latency-aware search still reaches a budget
    # that needs fewer than half the channels somewhere, and the saved
    # table keeps the raw timings.
    data = table.to_dict()
    for entry in data["entries"].values():
        if entry["layer"] == "Conv2D":
            for row in entry["ms"]:
                row[2] = 1.5 * row[3]
    noisy = table_lib.LatencyTable.from_dict(data).bind(WidthCounter(model))
    assert noisy.to_dict()["entries"] == data["entries"]
    result = plan_for_budget(model, "latency_aware", latency=0.45,
                             table=noisy, confirm=False)
    assert result.achieved["latency"] <= 0.45 * noisy.dense_ms
    graph = ChannelGraph(model)
    assert any(len(kept) < graph.group_by_name[name].width / 2
               for name, kept in result.plan.kept.items())


def test_the_knapsack_crosses_a_flat_stretch_longer_than_its_lookahead():
    from keras_slim.planners import allocation

    class FlatCost:
        """A group of 16 whose cost does not move from 16 down to 10."""

        def group_calls(self, name):
            return None

        def total(self, widths):
            return float(min(widths["g"], 10))

    steps = allocation.allowed_widths(16)
    ordered = np.linspace(1.0, 0.1, 16)
    saliency, index, saved = allocation._best_move(
        FlatCost(), "g", {"g": 16}, steps, 0, ordered, lookahead=4)
    assert np.isfinite(saliency) and steps[index] <= 9 and saved >= 1


def test_round_to_auto_needs_a_table_with_a_scan():
    model = _wide_model()
    with pytest.raises(ValueError, match="give a `latency` budget"):
        plan_for_budget(model, macs=0.5, round_to="auto")
    table = table_lib.build_latency_table(model, FakeRuntime(), scan=False,
                                          verbose=False)
    assert table.steps is None
    with pytest.raises(ValueError, match="needs a latency table with a width"):
        plan_for_budget(model, latency=0.6, table=table,
                        runtime=FakeRuntime(), round_to="auto")


def test_a_correction_past_the_smallest_plan_returns_it_measured():
    """The table says the budget is reachable; the runtime is three times
    slower, so after the correction no plan is predicted to fit. The search
    returns its smallest plan with the measurement, over budget, instead
    of raising after the timings."""
    model = _model()
    table = table_lib.build_latency_table(model, FakeRuntime(),
                                          verbose=False)
    smallest = keras_slim.plan_global_gamma(model, 1 - 1e-9)
    floor = table.predict(plan_widths(smallest))
    slow = FakeRuntime(slowdown=3.0)
    result = plan_for_budget(model, latency=f"{1.2 * floor}ms", table=table,
                             runtime=slow)
    assert result.under("latency") < 0
    assert result.plan.kept == smallest.kept
    slim = keras_slim.slim_model(model, smallest)
    assert result.measured_ms == pytest.approx(slow.time([slim])[0])


def test_a_table_of_zeros_is_refused():
    model = _model()
    table = table_lib.build_latency_table(model, FakeRuntime(),
                                          verbose=False)
    data = table.to_dict()
    for entry in data["entries"].values():
        entry["ms"] = np.zeros_like(np.asarray(entry["ms"])).tolist()
    zeros = table_lib.LatencyTable.from_dict(data)
    with pytest.raises(ValueError, match="predicts 0 ms for any plan"):
        plan_for_budget(model, latency=0.6, table=zeros,
                        runtime=FakeRuntime())


def test_impossible_latency_budget():
    model = _model()
    with pytest.raises(ValueError, match="latency budget 0.01 ms"):
        plan_for_budget(model, latency="0.01ms", runtime=FakeRuntime())


# -- the latency-aware allocation ----------------------------------------------


def test_allowed_widths():
    assert allowed_widths(10) == list(range(10, 0, -1))
    assert allowed_widths(20, round_to=8) == [20, 16, 8]
    assert allowed_widths(16, min_channels=5, round_to=4) == [16, 12, 8]
    assert allowed_widths(10, max_ratio=0.3) == [10, 9, 8, 7]


def test_latency_aware_keeps_more_importance_at_equal_cost():
    """The knapsack spends a MAC budget where channels are cheap; the global
    threshold does not look at cost. At (about) the same MACs, the knapsack
    keeps at least as much of the summed |gamma|."""
    keras.utils.set_random_seed(3)
    model = _model("residual")
    graph = ChannelGraph(model)
    aware = plan_for_budget(model, "latency_aware", macs=0.5)
    plain = plan_for_budget(model, "global_gamma", macs=0.5)
    assert aware.achieved["macs"] <= 0.5 * aware.dense["macs"]
    assert importance_kept(graph, aware.plan) >= importance_kept(
        graph, plain.plan)
    slim = keras_slim.slim_model(model, aware.plan)
    assert keras_slim.count_macs(slim) == aware.achieved["macs"]


def test_suggest_round_to_finds_the_step():
    points = [(w, 1.0 + 0.1 * ((w + 7) // 8)) for w in range(40, 80)]
    assert table_lib.suggest_round_to(points)[0] == 8
    flat = [(w, 1.0 + 0.001 * (w % 3)) for w in range(40, 80)]
    assert table_lib.suggest_round_to(flat)[0] == 1


# -- the command line -------------------------------------------------------------


class _CliRuntime(FakeRuntime):
    name = "litert"  # stands in for the CLI's default runtime

    def __init__(self, threads=None, runs=30):
        super().__init__(threads=threads)


def _saved(tmp_path, model):
    """`model` saved in `tmp_path`: its path, and one for the slim model."""
    path = tmp_path / "model.keras"
    model.save(path)
    return path, tmp_path / "slim.keras"


def test_cli_prunes_to_a_mac_budget_and_a_latency_budget(tmp_path, capsys,
                                                         monkeypatch):
    from keras_slim.tools import cli

    model = _model()
    path, out = _saved(tmp_path, model)
    assert cli.main(["prune", str(path), "--target-macs", "0.5", "-o",
                     str(out)]) == 0
    slim = keras.models.load_model(out)
    assert keras_slim.count_macs(slim) <= 0.5 * keras_slim.count_macs(model)
    assert "budget" in capsys.readouterr().out
    # Latency on the fake runtime; the table is saved and then reused.
    monkeypatch.setitem(table_lib.RUNTIMES, "litert", _CliRuntime)
    table = tmp_path / "table.json"
    argv = ["prune", str(path), "--target-latency", "0.6", "--threads", "2",
            "--table", str(table), "--method", "latency_aware", "-o",
            str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "latency table written" in printed and "measured" in printed
    assert json.loads(table.read_text())["runtime"]["threads"] == 2
    assert cli.main(argv) == 0
    assert "latency table read" in capsys.readouterr().out
    dense_ms = FakeRuntime().time([model])[0]
    slim_ms = FakeRuntime().time([keras.models.load_model(out)])[0]
    assert slim_ms <= 0.6 * dense_ms


class _KernelCli(KernelRuntime):
    name = "litert"

    def __init__(self, threads=None, runs=30):
        super().__init__(threads=threads, overhead=0.0)


def test_cli_passes_reduction_normalize_and_cost(tmp_path, capsys,
                                                 monkeypatch):
    from keras_slim.tools import cli
    from keras_slim.tools.pruning import prune

    model = _model()
    path, out = _saved(tmp_path, model)
    x = np.random.default_rng(1).random((2, 16, 16, 3), dtype="float32")
    assert cli.main(["prune", str(path), "--method", "global_gamma",
                     "--ratio", "0.5", "--reduction", "mean", "--normalize",
                     "mean", "-o", str(out)]) == 0
    expected = prune(model, "global_gamma", ratio=0.5, reduction="mean",
                     normalize="mean")
    default = prune(model, "global_gamma", ratio=0.5)
    slim = keras.models.load_model(out)
    assert _widths(slim) == _widths(expected) != _widths(default)
    np.testing.assert_allclose(slim.predict(x, verbose=0),
                               expected.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    # --cost latency at a MAC budget: the library's plan on the same
    # runtime, which is not the plan that saves MACs.
    monkeypatch.setitem(table_lib.RUNTIMES, "litert", _KernelCli)
    mixed = zoo.mixed_kernels()
    mixed_path = tmp_path / "mixed.keras"
    mixed.save(mixed_path)
    plans = {}
    for cost in ("latency", "macs"):
        plan_path = tmp_path / f"{cost}.json"
        assert cli.main(["prune", str(mixed_path), "--target-macs", "0.5",
                         "--method", "latency_aware", "--cost", cost,
                         "--plan", str(plan_path), "-o", str(out)]) == 0
        plans[cost] = json.loads(plan_path.read_text())["kept"]
    capsys.readouterr()
    table = table_lib.build_latency_table(mixed, _KernelCli(), verbose=False)
    library = plan_for_budget(mixed, "latency_aware", macs=0.5, table=table,
                              cost="latency", confirm=False).plan
    assert plans["latency"] == json.loads(library.to_json())["kept"]
    assert plans["latency"] != plans["macs"]


def test_cli_calibrates_the_table_it_builds(tmp_path, capsys, monkeypatch):
    from keras_slim.tools import cli

    monkeypatch.setitem(table_lib.RUNTIMES, "litert", _KernelCli)
    path, out = _saved(tmp_path, zoo.mixed_kernels())
    table = tmp_path / "table.json"
    assert cli.main(["prune", str(path), "--target-macs", "0.5", "--method",
                     "latency_aware", "--cost", "latency", "--calibrate", "6",
                     "--table", str(table), "-o", str(out)]) == 0
    assert "calibrated on 6 plans" in capsys.readouterr().out
    saved = json.loads(table.read_text())
    assert saved["version"] == 3 and saved["calibration"]["plans"] == 6
    for argv, snippet in (
            (["--target-macs", "0.5", "--method", "latency_aware", "--cost",
              "latency", "--calibrate", "2"], "--calibrate >= 4"),
            (["--target-macs", "0.5", "--calibrate", "6"], "--cost latency"),
            (["--method", "uniform", "--ratio", "0.5", "--calibrate", "6"],
             "--calibrate applies to a budget")):
        assert cli.main(["prune", str(path), *argv, "-o", str(out)]) == 1
        captured = capsys.readouterr()
        assert snippet in captured.err
        assert "timing" not in captured.out  # refused before any timing


def _widths(model):
    return [layer.filters for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)]


def test_cli_budget_errors(tmp_path, capsys):
    from keras_slim.tools import cli

    path, out = _saved(tmp_path, _model())
    out = str(out)
    assert cli.main(["prune", str(path), "--target-macs", "0.5", "--ratio",
                     "0.3", "-o", out]) == 1
    assert "exclude each other" in capsys.readouterr().err
    assert cli.main(["prune", str(path), "-o", out]) == 1
    assert "needs --method" in capsys.readouterr().err
    assert cli.main(["prune", str(path), "--target-macs", "0.001",
                     "--min-channels", "4", "-o", out]) == 1
    assert "smallest global_gamma reaches" in capsys.readouterr().err
    assert cli.main(["prune", str(path), "--target-macs", "0.5",
                     "--round-to", "auto", "-o", out]) == 1
    assert "use it with --target-latency" in capsys.readouterr().err
    assert cli.main(["prune", str(path), "--method", "uniform", "--ratio",
                     "0.5", "--round-to", "auto", "-o", out]) == 1
    assert "use it with --target-latency" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["prune", str(path), "--target-macs", "0.5", "--round-to",
                  "eight", "-o", out])
    assert "expected an integer or 'auto'" in capsys.readouterr().err
    for argv, snippets in (
            (["--method", "l1_norm", "--ratio", "0.5", "--normalize", "mean"],
             ["--normalize", "l1_norm", "global_gamma, latency_aware"]),
            (["--method", "zero_gamma", "--reduction", "sum"],
             ["--reduction", "zero_gamma"]),
            (["--method", "uniform", "--ratio", "0.5", "--cost", "latency"],
             ["--cost", "--target-macs"]),
            (["--target-macs", "0.5", "--cost", "latency"],
             ["--cost", "latency_aware", "global_gamma"])):
        assert cli.main(["prune", str(path), *argv, "-o", out]) == 1
        error = capsys.readouterr().err
        assert all(snippet in error for snippet in snippets), error


def test_cli_round_to_auto_uses_the_table_scan(tmp_path, capsys,
                                               monkeypatch):
    from keras_slim.tools import cli

    class _StepCli(StepRuntime):
        name = "litert"

        def __init__(self, threads=None, runs=30):
            super().__init__(threads=threads)

    monkeypatch.setitem(table_lib.RUNTIMES, "litert", _StepCli)
    path, out = _saved(tmp_path, _wide_model())
    assert cli.main(["prune", str(path), "--target-latency", "0.5",
                     "--round-to", "auto", "-o", str(out)]) == 0
    assert "round_to 8: the step size" in capsys.readouterr().out
    slim = keras.models.load_model(out)
    convs = [layer.filters for layer in slim.layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert convs != [48, 64] and all(width % 8 == 0 for width in convs)


def test_plot_budget_draws_the_candidates(tmp_path):
    from keras_slim.tools.report import plot_budget

    model = _model()
    result = plan_for_budget(model, latency=0.6, runtime=FakeRuntime())
    assert any("predicted_ms" in c for c in result.candidates)
    path = plot_budget(result.candidates, tmp_path / "budget.png")
    assert (tmp_path / "budget.png").stat().st_size > 1000
    assert path.endswith("budget.png")
    macs_only = plan_for_budget(model, macs=0.5).candidates
    with pytest.raises(ValueError, match="predicted latency"):
        plot_budget(macs_only, tmp_path / "other.png")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_budget(result.candidates, tmp_path / "budget.jpg")


# -- bad budgets named by their value (issue 32, item 10) ----------------------


def test_a_malformed_count_is_reported_as_given():
    with pytest.raises(ValueError, match=r"Received: macs='half'"):
        plan_for_budget(_model(), macs="half")


def test_a_budget_of_microseconds_is_not_printed_as_zero():
    with pytest.raises(ValueError, match=r"latency budget 0\.004 ms: the "
                       r"smallest global_gamma reaches is 0\.\d{3} ms"):
        plan_for_budget(_model(), latency="4us", runtime=FakeRuntime())


def test_a_model_without_a_fixed_size_is_refused_as_count_macs_does():
    inputs = keras.Input((None, None, 3))
    x = zoo.conv_bn(inputs, 8, "a")
    x = keras.layers.GlobalAveragePooling2D()(zoo.conv_bn(x, 8, "b"))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"plan_for_budget counts the model "
                       r"at a fixed size: count_macs needs a fixed input "
                       r"size, but layer `a_conv` sees shape"):
        plan_for_budget(model, params=0.5)
