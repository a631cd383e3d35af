"""How each layer type takes part in the channel graph and how it is cut.

One small rule per layer family, kept in a registry keyed by class. The
lookup walks the class hierarchy, so a subclass of `Conv2D` is cut like a
`Conv2D`. A rule answers three questions, each a small method:

- `role(layer, call)`: what the layer does to channels (`Role`).
- `slice(layer, weights, pos)`: the config updates and the weights of the
  thinner layer, given the kept positions on its input (`pos["in"]`), its
  input after a depthwise expansion (`pos["mid"]`) and its output
  (`pos["out"]`).
- `fold(layer, weights, removed, values)`: for a layer that mixes channels,
  the change of each output channel when constant input positions are cut.

Adding a layer type means writing one rule and calling `register_rule`.
Rules are stateless; nothing here imports TensorFlow.
"""

import dataclasses

import numpy as np

PRODUCER = "producer"  # mixes input channels, creates a new channel space
CHANNELWISE = "channelwise"  # channel c in -> channel c out (maybe expanded)
MERGE = "merge"  # elementwise over several inputs: ties them
CONCAT = "concat"  # concatenation along channels
FLATTEN = "flatten"  # spatial positions folded into the channel axis
BARRIER = "barrier"  # anything else: the channels it touches stay whole


@dataclasses.dataclass(frozen=True)
class Role:
    kind: str
    expand: int = 1
    reason: str = ""
    warn: bool = False  # barrier of an unknown layer type: tell the user
    # a producer whose own output channels cannot be cut (a softmax
    # activation renormalises across them): why, or "" when they can
    frozen_output: str = ""


_RULES = {}


def register_rule(*classes):
    """Class decorator registering a rule for one or more layer classes."""

    def decorate(rule_cls):
        for cls in classes:
            if cls is not None:
                _RULES[cls] = rule_cls()
        return rule_cls

    return decorate


def rule_for(operation):
    """The rule of the nearest registered class in `operation`'s MRO."""
    for cls in type(operation).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return _UNKNOWN


def take(array, axis, index):
    """`np.take` that leaves the array alone when `index` is `None`."""
    if index is None:
        return array
    return np.take(array, index, axis=axis)


class Rule:
    """Base rule: weights named in `axes` are cut along the given axes."""

    # {weight name: {axis: "in" | "mid" | "out"}}
    axes = {}
    # config keys set to the kept width: {key: "in" | "out"}
    widths = {}
    # how constants pass through a channelwise layer: "identity" or "eval"
    constants = "eval"

    def role(self, layer, call):
        return Role(BARRIER, reason="unknown layer type", warn=True)

    def slice(self, layer, weights, pos):
        config = {
            key: int(len(pos[which]))
            for key, which in self.widths.items()
            if pos[which] is not None
        }
        out = {}
        for name, value in weights.items():
            for axis, which in self.axes.get(name, {}).items():
                value = take(value, axis, pos[which])
            out[name] = value
        return config, out

    def macs(self, layer, in_shape, out_shape):
        """Multiply-accumulates of one call for one example (default 0)."""
        return 0

    def fold(self, layer, weights, removed, values):
        """Per-output-channel change when constant inputs are cut.

        Args:
            layer: the original layer.
            weights: `{name: array}` of the original layer.
            removed: positions of its input being cut.
            values: the constant value at each of those positions.

        Returns:
            An array over the layer's (original) output channels, or `None`
            when the layer cannot absorb a constant exactly.
        """
        return None


_UNKNOWN = Rule()


# The built-in rules register themselves on import.
from keras_slim import rules  # noqa: E402,F401  pylint: disable=wrong-import-position
