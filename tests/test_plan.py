"""`PruningPlan`: JSON round trip and validation against a model."""

import numpy as np
import pytest

import keras_slim
from tests import zoo


def test_json_round_trip_keeps_sorted_indices():
    plan = keras_slim.PruningPlan({"a": [3, 1, 2], "b": np.array([0])},
                                  {"a": 8, "b": 4})
    assert plan.kept["a"].tolist() == [1, 2, 3]
    again = keras_slim.PruningPlan.from_json(plan.to_json())
    assert again == plan
    assert again.removed("a").tolist() == [0, 4, 5, 6, 7]
    assert "1 groups" not in repr(plan) and "2 groups" in repr(plan)


def test_bad_plans_are_rejected_with_the_group_named():
    model = zoo.chain()
    groups = keras_slim.channel_groups(model)
    with pytest.raises(ValueError, match="`nope`.*another model"):
        keras_slim.PruningPlan({"nope": [0]}).validate(groups)
    with pytest.raises(ValueError, match="`a_conv` has 8 channels.*index 9"):
        keras_slim.PruningPlan({"a_conv": [0, 9]}).validate(groups)
    with pytest.raises(ValueError, match="no channel of group `a_conv`"):
        keras_slim.PruningPlan({"a_conv": []}).validate(groups)
    with pytest.raises(ValueError, match="`a_conv` has 8 channels in the model but 16"):
        keras_slim.PruningPlan({"a_conv": [0]}, {"a_conv": 16}).validate(groups)
    with pytest.raises(ValueError, match="`head` cannot be pruned"):
        keras_slim.PruningPlan({"head": [0]}).validate(groups)
    with pytest.raises(ValueError, match="duplicates"):
        keras_slim.PruningPlan({"a_conv": [1, 1]})
    with pytest.raises(TypeError, match="integers"):
        keras_slim.PruningPlan({"a_conv": [0.5]})
    with pytest.raises(TypeError, match="`kept`"):
        keras_slim.PruningPlan([1, 2])
    with pytest.raises(ValueError, match="not valid JSON"):
        keras_slim.PruningPlan.from_json("{")
    with pytest.raises(ValueError, match="`kept`"):
        keras_slim.PruningPlan.from_json("[1]")


def test_slim_model_rejects_bad_input():
    model = zoo.chain()
    with pytest.raises(TypeError, match="`plan`"):
        keras_slim.slim_model(model, {"a_conv": [0]})
    with pytest.raises(ValueError, match="`b_conv`.*index 12"):
        keras_slim.slim_model(model, keras_slim.PruningPlan({"b_conv": [12]}))
    plan = keras_slim.PruningPlan({"stem_conv": [0, 1]})
    with pytest.raises(ValueError, match="`stem_conv`.*another model"):
        keras_slim.slim_model(model, plan)


def test_zero_gamma_rejects_bad_arguments():
    model = zoo.chain()
    for tol in (-1.0, float("nan"), "0"):
        with pytest.raises(ValueError, match="`tol`"):
            keras_slim.plan_zero_gamma(model, tol=tol)
    with pytest.raises(ValueError, match="`min_channels`"):
        keras_slim.plan_zero_gamma(model, min_channels=0)


def test_zero_gamma_keeps_min_channels_with_largest_gamma():
    model = zoo.chain()
    bn = model.get_layer("a_bn")
    gamma = np.zeros(8, "float32")
    gamma[5], gamma[2] = 0.9, 0.1
    bn.gamma.assign(gamma)
    plan = keras_slim.plan_zero_gamma(model, min_channels=1)
    assert plan.kept["a_conv"].tolist() == [2, 5]
    bn.gamma.assign(np.zeros(8, "float32"))
    bn.gamma.assign(np.where(np.arange(8) == 6, 1e-3, 0.0).astype("float32"))
    plan = keras_slim.plan_zero_gamma(model, min_channels=3)
    assert plan.kept["a_conv"].size == 3 and 6 in plan.kept["a_conv"]
    plan = keras_slim.plan_zero_gamma(model, tol=1e-2)
    assert plan.kept["a_conv"].tolist() == [6]


@pytest.mark.parametrize("kept,widths,error,message", [
    ({"conv1": 3}, None, TypeError,
     r"kept indices of group `conv1` to be a list.*Received: 3"),
    ({"conv1": "012"}, None, TypeError,
     r"kept indices of group `conv1` to be a list.*Received: '012'"),
    ({"conv1": [[0, 1], [2, 3]]}, None, ValueError,
     r"group `conv1` to be a flat list.*Received: \[\[0, 1\], \[2, 3\]\]"),
    ({"conv1": [[0, 1], [2]]}, None, ValueError,
     r"group `conv1` to be a flat list.*Received: \[\[0, 1\], \[2\]\]"),
    ({"conv1": ["a", "b"]}, None, TypeError,
     r"group `conv1` must be integers.*\['a', 'b'\]"),
    ({"conv1": [0, 1]}, {"conv1": 8.7}, ValueError,
     r"width of group `conv1` to be a positive integer. Received: 8.7"),
    ({"conv1": [0, 1]}, {"conv1": "eight"}, ValueError,
     r"width of group `conv1` to be a positive integer. Received: 'eight'"),
    ({"conv1": [0, 1]}, {"conv1": 0}, ValueError,
     r"width of group `conv1` to be a positive integer. Received: 0"),
])
def test_hand_edited_plans_are_refused_naming_group_and_value(
        kept, widths, error, message):
    with pytest.raises(error, match=message):
        keras_slim.PruningPlan(kept, widths)
    if widths is not None:  # the same from a hand-edited JSON file
        with pytest.raises(error, match=message):
            keras_slim.PruningPlan.from_dict({"kept": kept, "widths": widths})
