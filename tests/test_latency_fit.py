"""`calibrate_latency_table` on a fake runtime whose whole models run their
3x3 convolutions slower than the same layers timed alone: the fitted table
predicts what the plain one misses, and the latency-aware knapsack planned
on it is faster (nothing is timed)."""

import json

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core.counting import macs_by_layer
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter, plan_widths
from keras_slim.planners import latency_table as table_lib
from keras_slim.planners.candidates import build_plan
from keras_slim.planners.latency_fit import calibrate_latency_table, call_kinds

import zoo


class ContextRuntime(table_lib.Runtime):
    """Milliseconds from MACs; inside a model of more than one layer that
    counts MACs a 3x3 convolution's MAC costs four times its cost alone
    (what a table of layers timed alone cannot see)."""

    name = "context"

    def __init__(self, threads=None, batch=1):
        super().__init__(threads, batch)
        self.timed = 0

    def time(self, models):
        self.timed += len(models)
        times = []
        for model in models:
            by_layer = macs_by_layer(ChannelGraph(model))
            whole = sum(n > 0 for n in by_layer.values()) > 1
            times.append(0.02 + sum(
                n * (4 if whole and getattr(model.get_layer(name),
                                            "kernel_size", (1,)) == (3, 3)
                     else 1)
                for name, n in by_layer.items()) / 1e5)
        return times


@pytest.fixture(scope="module")
def tables():
    keras.utils.set_random_seed(0)
    model = zoo.mixed_kernels()
    runtime = ContextRuntime()
    plain = table_lib.build_latency_table(model, runtime, verbose=False,
                                          scan=False)
    before = json.dumps(plain.to_dict())
    fitted = calibrate_latency_table(model, plain, runtime, plans=12,
                                     round_to=1, verbose=False)
    assert json.dumps(plain.to_dict()) == before  # the user's table is kept
    return model, runtime, plain, fitted


def test_the_fit_predicts_what_the_plain_table_misses(tables):
    model, runtime, plain, fitted = tables
    fit = fitted.calibration
    assert fit["table_error"] > 0.05
    assert fit["error"] < 0.1 * fit["table_error"]
    kinds = fit["kinds"]
    three = [f for k, f in kinds.items() if k.startswith("Conv2D 3x3")]
    one = [f for k, f in kinds.items() if k.startswith("Conv2D 1x1")]
    assert min(three) > 2.5 * max(one)
    # A plan it was not fitted on, cutting the 3x3 convolutions' group.
    graph = ChannelGraph(model)
    plan = build_plan(graph, {"c1_conv": 4}, {"c1_conv": np.arange(16.0)})
    widths = plan_widths(plan)
    slim = keras_slim.slim_model(model, plan)
    dense_ms, slim_ms = runtime.time([model, slim])
    assert fitted.predict(widths) == pytest.approx(slim_ms, rel=0.02)
    assert fitted.predict({}) == pytest.approx(dense_ms, rel=0.02)
    assert abs(plain.predict(widths) / plain.predict({})
               - slim_ms / dense_ms) > 0.05


def test_the_knapsack_on_the_fitted_table_is_faster(tables):
    model, runtime, plain, fitted = tables
    results = [keras_slim.plan_for_budget(
        model, "latency_aware", macs=0.5, cost="latency", table=table,
        confirm=False) for table in (plain, fitted)]
    slims = [keras_slim.slim_model(model, r.plan) for r in results]
    for slim in slims:
        assert keras_slim.count_macs(slim) <= 0.5 * keras_slim.count_macs(model)
    on_plain, on_fitted = runtime.time(slims)
    assert on_fitted < 0.95 * on_plain


def test_a_calibrated_table_saves_loads_and_refits(tables, tmp_path):
    model, runtime, _, fitted = tables
    path = tmp_path / "table.json"
    fitted.save(path)
    loaded = table_lib.LatencyTable.load(path).bind(
        WidthCounter(model))
    assert loaded.calibration["weights"] == fitted.calibration["weights"]
    widths = {name: 4 for name in ("c1", "c4")}
    assert loaded.predict(widths) == pytest.approx(fitted.predict(widths))
    assert json.loads(path.read_text())["version"] == 3
    # Fitting a calibrated table again starts from its plain timings.
    again = calibrate_latency_table(model, loaded, runtime, plans=12,
                                    round_to=1, verbose=False)
    assert again.calibration["weights"] == pytest.approx(
        fitted.calibration["weights"])
    kinds = call_kinds(loaded, loaded.counter)
    assert kinds[0] == "Conv2D 3x3 @12" and kinds[-1] == "Dense"


@pytest.mark.parametrize("kwargs, match", [
    ({"plans": 3}, "`plans`.*>= 4"),
    ({"plans": 2.5}, "`plans`"),
    ({"strength": -1.0}, "`strength`"),
])
def test_bad_arguments_name_themselves(tables, kwargs, match):
    model, runtime, plain, _ = tables
    with pytest.raises(ValueError, match=match):
        calibrate_latency_table(model, plain, runtime, verbose=False,
                                **kwargs)
