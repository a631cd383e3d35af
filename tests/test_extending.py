"""Extending keras_slim from outside the package: a criterion, an importance
and a latency runtime, each a few lines of user code, reachable from every
entry point (the planners, `prune`, `plan_for_budget`, the CLI's
`--method`, `--score` and `--runtime`)."""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.deploy.runtimes import RUNTIMES, make_runtime
from keras_slim.planners.latency_table import LatencyTable
from keras_slim.tools import cli

import zoo

# -- the user's code: a criterion and a runtime (under 20 lines each) --------


def last_channels(graph, group):
    """Importance rising with the channel index: the last channels stay."""
    return np.arange(group.width, dtype="float64")


def plan_keep_last(model, ratio, **options):
    """the same share of every layer, the first channels going"""
    return keras_slim.plan_uniform(model, ratio, score=last_channels, **options)


class LastUnits(keras_slim.Importance):
    """the last units of every group stay"""

    def __call__(self, graph, group):
        return np.arange(group.width, dtype="float64")


class MacClock(keras_slim.Runtime):
    """A stand-in device: milliseconds from MACs, plus a fixed call cost."""

    name = "mac_clock"

    def time(self, models):
        return [0.05 + keras_slim.count_macs(m) / 1e5 for m in models]


# ------------------------------------------------------------------------------


@pytest.fixture
def registered():
    keras_slim.register_method("keep_last", plan_keep_last)
    keras_slim.register_runtime(MacClock)
    keras_slim.register_importance("last_units", LastUnits())
    yield
    del keras_slim.METHODS["keep_last"]
    del RUNTIMES["mac_clock"]
    del keras_slim.IMPORTANCES["last_units"]


def _model():
    model = zoo.chain(padding="valid")  # an exact fold: no border effect
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    return model


def _assert_keeps_the_last_channels(model, plan):
    assert plan.kept  # something was cut
    for name, kept in plan.kept.items():
        width = plan.widths[name]
        assert len(kept) < width
        assert list(kept) == list(range(width - len(kept), width))
    # Mask the cut channels in the original: the slim outputs match.
    keras_slim.slim_model(model, plan, verify=True)


def test_a_criterion_of_ones_own_through_prune(registered):
    model = _model()
    slim, plan = keras_slim.prune(model, "keep_last", ratio=0.5,
                                  return_plan=True)
    _assert_keeps_the_last_channels(model, plan)
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)


def test_a_planner_function_works_where_a_name_does():
    model = _model()
    for plan in (keras_slim.prune(model, plan_keep_last, ratio=0.5,
                                  return_plan=True)[1],
                 keras_slim.plan_for_budget(model, plan_keep_last,
                                            macs=0.5).plan):
        _assert_keeps_the_last_channels(model, plan)


def test_a_criterion_of_ones_own_through_plan_for_budget(registered):
    model = _model()
    result = keras_slim.plan_for_budget(model, "keep_last", macs=0.5)
    assert result.method == "keep_last"
    assert result.achieved["macs"] <= 0.5 * keras_slim.count_macs(model)
    _assert_keeps_the_last_channels(model, result.plan)


def test_a_criterion_of_ones_own_through_the_cli(registered, tmp_path):
    model = _model()
    path, out, plan_path = (tmp_path / "model.keras", tmp_path / "slim.keras",
                            tmp_path / "plan.json")
    model.save(path)
    assert cli.main(["prune", str(path), "--method", "keep_last", "--ratio",
                     "0.5", "-o", str(out), "--plan", str(plan_path)]) == 0
    plan = keras_slim.PruningPlan.from_json(plan_path.read_text())
    _assert_keeps_the_last_channels(model, plan)
    slim = keras.models.load_model(out)
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)


def test_an_importance_function_in_latency_aware(registered):
    model = _model()
    result = keras_slim.plan_for_budget(model, "latency_aware", macs=0.6,
                                        score=last_channels)
    _assert_keeps_the_last_channels(model, result.plan)


def test_a_runtime_of_ones_own_times_a_latency_budget(registered, tmp_path):
    model = _model()
    assert isinstance(make_runtime("mac_clock", threads=2), MacClock)
    result = keras_slim.plan_for_budget(model, latency=0.6,
                                        runtime=MacClock())
    dense_ms, slim_ms = MacClock().time(
        [model, keras_slim.slim_model(model, result.plan)])
    assert result.measured_ms == pytest.approx(slim_ms)
    assert slim_ms <= 0.6 * dense_ms
    # A table measured on it makes the runtime again from its info.
    table = keras_slim.build_latency_table(model, MacClock())
    table.save(tmp_path / "table.json")
    again = keras_slim.plan_for_budget(
        model, latency=0.6, table=LatencyTable.load(tmp_path / "table.json"))
    assert again.measured_ms is not None and again.measured_ms <= 0.6 * dense_ms


def test_a_runtime_of_ones_own_through_the_cli(registered, tmp_path):
    model = _model()
    path, out = tmp_path / "model.keras", tmp_path / "slim.keras"
    model.save(path)
    assert cli.main(["prune", str(path), "--target-latency", "0.6",
                     "--runtime", "mac_clock", "-o", str(out)]) == 0
    dense_ms, slim_ms = MacClock().time([model, keras.models.load_model(out)])
    assert slim_ms <= 0.6 * dense_ms


def test_registries_refuse_what_they_cannot_use(registered):
    with pytest.raises(TypeError, match="subclass of keras_slim.Runtime"):
        keras_slim.register_runtime(object)
    with pytest.raises(ValueError, match="set `name`"):
        keras_slim.register_runtime(type("Nameless", (keras_slim.Runtime,), {}))
    with pytest.raises(TypeError, match="takes `threads`, `batch`"):
        make_runtime("mac_clock", runs=3)
    with pytest.raises(ValueError, match="Expected `name`"):
        keras_slim.register_method("two words", plan_keep_last)
    with pytest.raises(ValueError, match="importance function `<lambda>` "
                       "to return 8 finite scores"):
        keras_slim.plan_uniform(_model(), 0.5,
                                score=lambda graph, group: np.ones(2))



# -- an importance of one's own, at every entry point ---------------------------


def _every_plan_of(model, score):
    """The plans of every ranking planner and entry point for `score`."""
    found = keras_slim.plan_global_gamma(model, 0.5)
    yield keras_slim.plan_global_gamma(model, 0.5, score=score)
    yield keras_slim.plan_l1_norm(model, 0.5, score=score)
    yield keras_slim.plan_uniform(model, 0.5, score=score)
    yield keras_slim.plan_guided(model, found, score=score)
    yield keras_slim.prune(model, "l1_norm", ratio=0.5, score=score,
                           return_plan=True)[1]
    for method in ("global_gamma", "l1_norm", "uniform", "latency_aware"):
        yield keras_slim.plan_for_budget(model, method, macs=0.6,
                                         score=score).plan


@pytest.mark.parametrize("score", ["last_units", LastUnits(), "function"])
def test_an_importance_of_ones_own_reaches_every_planner(registered, score):
    model = _model()
    if score == "function":
        score = last_channels
    plans = list(_every_plan_of(model, score))
    assert len(plans) == 9
    if not isinstance(score, str):  # the same object in each: two suffice
        plans = plans[:1] + plans[-1:]
    for plan in plans:
        _assert_keeps_the_last_channels(model, plan)


def test_an_importance_of_ones_own_through_the_cli(registered, tmp_path,
                                                   capsys):
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    with pytest.raises(SystemExit):
        cli.main(["prune", "--help"])
    assert "last_units: the last units of every group stay" in " ".join(
        capsys.readouterr().out.split())
    for flags in (["--method", "uniform", "--ratio", "0.5"],
                  ["--method", "l1_norm", "--target-macs", "0.6"]):
        out, plan_path = tmp_path / "slim.keras", tmp_path / "plan.json"
        assert cli.main(["prune", str(path), *flags, "--score",
                         "last_units", "-o", str(out),
                         "--plan", str(plan_path)]) == 0
        plan = keras_slim.PruningPlan.from_json(plan_path.read_text())
        _assert_keeps_the_last_channels(model, plan)
        slim = keras.models.load_model(out)
        assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    # A method without a ranking says so, naming those with one.
    assert cli.main(["prune", str(path), "--method", "zero_gamma",
                     "--score", "last_units", "-o", str(out)]) == 1
    assert "--score does not apply to --method zero_gamma; it applies to " \
        "--method global_gamma, l1_norm, latency_aware, uniform" in \
        capsys.readouterr().err
