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

and everything else keras_slim needs to know about the layer, so that no
other module keeps a list of layer classes:

- `pass_constants(layer, call, values, weights, dead)`: the constants out of
  a channelwise or merging call, given those into it (constant propagation).
- `maps(layer)`, `zero_border(layer)`, `borders_differ(layer)`: how it
  changes the spatial map of a constant channel (exact folding's carriers).
- `passes_scale(layer, count)`, `absorbed_weight(layer)`: how the gamma-W
  rescaling of Ye et al. goes through it.
- `scales_channels(layer)`, `shift_input(layer, weights, delta)`: whether it
  is a normalization whose gamma scales each channel, and how it takes a
  shift of its input into its statistics.

Adding a layer type means writing one rule and calling `register_rule`.
Rules are stateless; nothing here imports TensorFlow.
"""

import contextlib
import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_slim.core import user_code

__all__ = [
    "BARRIER", "CHANNELWISE", "COMPUTE_METHODS", "CONCAT", "FLATTEN",
    "MAPS_KEPT", "MAPS_MOVED", "MAPS_PADDED", "MAPS_SIGNED", "MAPS_VALUES",
    "MERGE", "PRODUCER", "Role", "Rule", "register_rule", "registered",
    "evaluate", "rule_for", "take",
]

PRODUCER = "producer"  # mixes input channels, creates a new channel space
CHANNELWISE = "channelwise"  # channel c in -> channel c out (maybe expanded)
MERGE = "merge"  # elementwise over several inputs: ties them
CONCAT = "concat"  # concatenation along channels
FLATTEN = "flatten"  # spatial positions folded into the channel axis
BARRIER = "barrier"  # anything else: the channels it touches stay whole

# How a channelwise layer changes the spatial map of a constant channel
# (`Rule.maps`), which exact folding needs to know which cut channels carry
# maps proportional to one another.
MAPS_KEPT = "kept"  # every value stays where it is (dropout, identity)
MAPS_SIGNED = "signed"  # max over windows: v * P -> v * max(P) for v > 0
MAPS_PADDED = "padded"  # a zero border is added: a full map stops being full
MAPS_MOVED = "moved"  # moved, averaged or repeated alike for every channel
MAPS_VALUES = "values"  # each value mapped: a full map stays full, others
#                         stop being proportional (activations, affine maps)


@dataclasses.dataclass(frozen=True)
class Role:
    kind: str
    expand: int = 1
    reason: str = ""
    warn: bool = False  # barrier of an unknown layer type: tell the user
    # a producer whose own output channels cannot be cut (a softmax
    # activation renormalises across them): why, or "" when they can
    frozen_output: str = ""
    # a producer with several tensor inputs: the slot of each input (the
    # first "in"; "" for an attention mask, kept whole). () is ("in",)
    inputs: tuple = ()
    # units inside the layer no tensor carries, `(key, width)` each (the
    # heads of attention): a group each; `slice` finds them in `pos[key]`
    units: tuple = ()
    # why the producer's "in" input cannot be cut, or "" when it can
    frozen_input: str = ""


_RULES = {}


def register_rule(*classes):
    """Class decorator registering a rule for one or more layer classes.

    Registering a class that already has a rule replaces that rule and
    warns; to replace a rule for one block of code, use `registered`.
    """

    def decorate(rule_cls):
        for cls in classes:
            if cls is None:
                continue
            if cls in _RULES:
                warnings.warn(
                    f"register_rule: {cls.__name__} already has a rule "
                    f"({type(_RULES[cls]).__name__}); replacing it with "
                    f"{rule_cls.__name__}.", stacklevel=2)
            _RULES[cls] = rule_cls()
        return rule_cls

    return decorate


@contextlib.contextmanager
def registered(cls, rule):
    """Registers `rule` for the layer class `cls` inside a `with` block only.

    On leaving the block the class gets back the rule it had before (or
    none). Nothing is warned: the replacement is meant.

    Args:
        cls: a layer class.
        rule: a `Rule` subclass or instance.

    Raises:
        TypeError: `cls` is not a class, or `rule` is not a `Rule`.

    Example:

    >>> with keras_slim.rules.registered(MyScale, MyScaleRule):
    ...     slim = keras_slim.prune(model, ratio=0.5)
    """
    if not isinstance(cls, type):
        raise TypeError(f"Expected `cls` to be a layer class. Received: "
                        f"cls={cls!r}")
    instance = rule() if isinstance(rule, type) else rule
    if not isinstance(instance, Rule):
        raise TypeError(f"Expected `rule` to be a keras_slim Rule (class or "
                        f"instance). Received: rule={rule!r}")
    missing = object()
    before = _RULES.get(cls, missing)
    _RULES[cls] = instance
    try:
        yield instance
    finally:
        if before is missing:
            _RULES.pop(cls, None)
        else:
            _RULES[cls] = before


# Methods through which a subclass changes what its parent computes.
COMPUTE_METHODS = ("call", "convolution_op", "build")


def rule_for(operation):
    """The rule of the nearest registered class in `operation`'s MRO.

    A subclass is cut like its registered parent only when it computes like
    it: one that overrides a method of `COMPUTE_METHODS` (a weight-
    standardised Conv2D overriding `convolution_op`, a Dense with its own
    `call`) is a barrier, with a warning, unless a rule is registered for
    that exact class.
    """
    mro = type(operation).__mro__
    for depth, cls in enumerate(mro):
        rule = _RULES.get(cls)
        if rule is None:
            continue
        overridden = sorted({
            name
            for sub in mro[:depth]
            for name in COMPUTE_METHODS
            if name in vars(sub)
        })
        if overridden:
            return _SubclassBarrier(rule, cls, overridden)
        return rule
    return _UNKNOWN


def has_rule(operation):
    """Whether a rule (or a subclass barrier) decides for `operation`,
    rather than the unknown-layer barrier."""
    return rule_for(operation) is not _UNKNOWN


def _output_width(call):
    shape = tuple(call.node.output_tensors[0].shape)
    return shape[-1] if len(shape) > 1 else 1


def evaluate(call, values):
    """Run the layer or op of `call` on one-pixel constant inputs.

    Args:
        call: a channelwise or merging `Call`.
        values: one float64 array per tensor input, NaN where unknown.

    Returns:
        The constant of each output position: NaN where an input it reads
        is unknown or the output is not the same at every pixel.
    """
    width = _output_width(call)
    if call.role.kind == CHANNELWISE:
        unknown = np.repeat(np.isnan(values[0]), call.role.expand)
    else:
        unknown = np.any(
            [np.broadcast_to(np.isnan(v), (width,)) for v in values], axis=0)
    if np.all(unknown):
        return np.full(width, np.nan)
    feeds = {}
    for tensor, array in zip(call.node.input_tensors, values):
        rank = len(tensor.shape)
        shape = (1,) * (rank - 1) + (array.shape[0],)
        feeds[id(tensor)] = np.nan_to_num(array).reshape(shape).astype(
            tensor.dtype if tensor.dtype else "float32"
        )
    args, kwargs = call.node.arguments.fill_in(feeds)
    with user_code.built_as_before(call.layer):
        out = keras.ops.convert_to_numpy(call.layer(*args, **kwargs))
    out = out.reshape(-1, out.shape[-1])
    uniform = np.all(np.isclose(out, out[:1]), axis=0)
    out = np.where(uniform, out[0], np.nan).astype(np.float64)
    return np.where(unknown, np.nan, out)


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
    # whether `carry` may move input weights (a layer linear in its input
    # whose kernels are cut by `axes` on "in": convolutions, Dense)
    carries = False

    def role(self, layer, call):
        return Role(BARRIER, reason="unknown layer type", warn=True)

    def slice(self, layer, weights, pos):
        config = {
            key: int(len(pos[which]))
            for key, which in self.widths.items()
            if pos.get(which) is not None
        }
        out = {}
        for name, value in weights.items():
            for axis, which in self.axes.get(name, {}).items():
                value = take(value, axis, pos.get(which))
            out[name] = value
        return config, out

    def reads(self, layer, call, slot):
        """`{weight name: axis}` of the weights reading input `slot` of
        `call`: by default those `axes` cut on `slot`."""
        return {name: axis for name, axes in self.axes.items()
                for axis, which in axes.items() if which == slot}

    def unit_outputs(self, layer, unit):
        """`{weight name: axis}` of the weights through which a unit of
        `Role.units` reaches the output (heads: output projection rows);
        `verify` zeroes them, `plan_dead` finds silent units there."""
        return {}

    def units_kept(self, layer, unit, keep):
        """The least mask of units the layer can keep that covers `keep`."""
        return keep

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

    def pass_constants(self, layer, call, values, weights, dead):
        """The constants out of a channelwise or merging call.

        Args:
            layer: the layer or op.
            call: its `Call`.
            values: one float64 array per tensor input: the constant at
                each position, NaN where it depends on the input.
            weights: the layer's `{name: array}`.
            dead: for a layer that `scales_channels`, the mask of positions
                whose gamma counts as zero (they output beta), else `None`.

        Returns:
            A float64 array over the output positions, NaN where the value
            is not one constant (by default: the layer run on one-pixel
            constant inputs, `evaluate`).
        """
        return evaluate(call, values)

    def maps(self, layer):
        """How the layer changes the spatial map of a constant channel: one
        of the `MAPS_*` answers (by default `MAPS_VALUES`)."""
        return MAPS_VALUES

    def zero_border(self, layer):
        """Whether the layer pads its input with zeros, so that a constant
        map stops being constant at its borders. By default: "same" or
        "causal" `padding` with a `kernel_size` wider than one tap."""
        padding = getattr(layer, "padding", None)
        kernel = getattr(layer, "kernel_size", None)
        if padding not in ("same", "causal") or kernel is None:
            return False
        return math.prod(kernel) > 1

    def borders_differ(self, layer):
        """Whether, for a constant input, the layer's output at the borders
        differs from its interior. By default: a `kernel_size` wider than
        one tap with any `padding` but "valid"."""
        kernel = getattr(layer, "kernel_size", None)
        padding = getattr(layer, "padding", "valid")
        return kernel is not None and padding != "valid" and any(
            k > 1 for k in kernel)

    def passes_scale(self, layer, count):
        """Whether the output is `alpha` times the output when each of the
        `count` tensor inputs is multiplied by `alpha > 0` (in training
        too). By default `False`."""
        return False

    def absorbed_weight(self, layer):
        """The name of the input-side weight that takes `1 / alpha` when the
        input is scaled by `alpha` (gamma-W rescaling), or `None`."""
        return None

    def scales_channels(self, layer):
        """Whether the layer is a normalization whose `gamma` is the scale
        of each channel (a zero gamma makes the channel output `beta`)."""
        return False

    def shift_input(self, layer, weights, delta):
        """Weights under which the layer computes on `x` what it computed
        on `x + delta` (`delta` over its channels), or `None` when it
        cannot."""
        return None

    def carry(self, layer, weights, removed, carriers, scales):
        """Weights that read input position `carriers[i]` absorb
        `scales[i]` times those that read `removed[i]` (exact folding).

        Returns:
            The new `{name: array}`, or `None` when the layer cannot carry.
        """
        if not self.carries:
            return None
        out = dict(weights)
        for name, axes in self.axes.items():
            for axis, which in axes.items():
                if which != "in" or name not in out:
                    continue
                value = np.moveaxis(out[name], axis, 0).astype(np.float64)
                moved = value[removed] * np.reshape(
                    scales, (-1,) + (1,) * (value.ndim - 1))
                np.add.at(value, carriers, moved)
                out[name] = np.moveaxis(value, 0, axis).astype(
                    out[name].dtype)
        return out


_UNKNOWN = Rule()


class _SubclassBarrier(Rule):
    """A subclass of a registered layer that computes in its own way."""

    def __init__(self, parent_rule, parent, overridden):
        self.parent_rule = parent_rule
        self.reason = (
            f"subclass of {parent.__name__} overriding "
            + ", ".join(f"`{name}`" for name in overridden)
        )

    def role(self, layer, call):
        return Role(BARRIER, reason=self.reason, warn=True)

    def macs(self, layer, in_shape, out_shape):
        return self.parent_rule.macs(layer, in_shape, out_shape)

    def zero_border(self, layer):
        return self.parent_rule.zero_border(layer)

