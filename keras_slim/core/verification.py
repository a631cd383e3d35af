"""`slim_model(..., verify=True)`: check a slim model against the original.

The reference is independent of the surgery: it is the user's model itself,
with the gammas of the channels the plan cuts set to zero (their betas as
they are), run through its own layers. A cut channel whose value still
depends on the input (no BatchNormalization makes it constant, or a live
branch is added to it) is removed, as the slim model removes it: the layers
that mix channels read it as zero (such a channel is found as one that
differs between the samples of the random batch). With `fold="none"` every
cut channel reads as zero, since that mode drops the constants.

Both models run eagerly, layer by layer, in inference mode (`training=False`
for every layer, also those called with `training=True` in the graph: a
BatchNormalization uses its moving statistics, dropout and random
augmentation layers pass their input on), and inside a `keras.StatelessScope`,
so neither model's variables change (moving statistics, seed states). The
slim model fails when one of its layers' outputs at the kept channels, or one
of its outputs, differs from the reference by more than the tolerance,
relative to the largest finite magnitude of the reference; the first layer
(in execution order) that does is named in a `ValueError`. The tolerance
depends on the model's compute dtype. Imports only keras and numpy.
"""

import warnings

import keras
import numpy as np

from keras_slim.core import blocks, copying, rule_registry, user_code
from keras_slim.core.comparison import (  # noqa: F401  (re-exported)
    DEFAULT_TOLERANCE,
    TOLERANCES,
    relative_error,
)
from keras_slim.core.graph import ChannelGraph, graph_of, leaf_layers

__all__ = ["check", "default_tolerance", "relative_error"]

def default_tolerance(model):
    """The tolerance `verify` uses for `model` when none is given.

    `1e-4` for float32 and float64 models; `1e-2` when a layer computes in
    float16 (a `"float16"` or `"mixed_float16"` policy) and `8e-2` when one
    computes in bfloat16.
    """
    tolerance = DEFAULT_TOLERANCE
    for layer in leaf_layers(model):
        dtype = str(getattr(layer, "compute_dtype", None) or "float32")
        tolerance = max(tolerance, TOLERANCES.get(dtype, DEFAULT_TOLERANCE))
    return tolerance


def check(graph, slim, kept, fold, tolerance, dead_fn, plan_kept=None,
          shifted=(), seed=0, batch=2):
    """Raise `ValueError` at the first layer of `slim` that differs.

    Args:
        graph: the original model's `ChannelGraph`.
        slim: the slim model.
        kept: group name -> kept indices the slim model has (carriers
            included).
        fold: the fold mode used.
        tolerance: the largest difference accepted, relative to the largest
            magnitude of the reference output of the layer; `None` for the
            model's `default_tolerance`.
        dead_fn: the BatchNormalization positions whose gamma the reference
            takes as zero (the plan cuts them, or their gamma is zero).
        plan_kept: the kept indices of the plan (`kept` less the carriers);
            defaults to `kept`.
        shifted: names of layers whose fold went into the moving mean of
            the BatchNormalization after them: their own outputs are not
            compared, the BatchNormalization's are.
        seed: seed of the random inputs.
        batch: batch size of the random inputs.
    """
    if tolerance is None:
        tolerance = default_tolerance(graph.model)
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
            or not tolerance >= 0):
        raise ValueError(
            "Expected `verify_tolerance` to be a number >= 0 or None. "
            f"Received: verify_tolerance={tolerance!r}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim_graph = ChannelGraph(slim)
    feeds = _random_inputs(graph, np.random.default_rng(seed), batch)
    reference = _Reference(graph, kept if plan_kept is None else plan_kept,
                           fold, dead_fn)
    expected = reference.run(feeds)
    slim_feeds = dict(zip(_input_keys(slim_graph), feeds.values()))
    actual = _run(slim_graph, slim_feeds)
    by_name = {}
    for call, outs in actual.calls:
        by_name.setdefault(call.layer.name, []).append(outs)
    seen = {}
    for call, outs in expected.calls:
        name = call.layer.name
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        slim_outs = by_name.get(name, [])
        if occurrence >= len(slim_outs):
            raise ValueError(
                f"verify: layer `{name}` is missing from the slim model."
            )
        if name in shifted:
            continue
        for key, want, got in zip(call.outputs, outs, slim_outs[occurrence]):
            _compare(graph, call.layer, key, want, got, kept, tolerance)
    producers = {k: call.layer for call in graph.calls for k in call.outputs}
    for key, slim_key in zip(graph.output_keys, slim_graph.output_keys):
        _compare(graph, producers.get(key), key, expected.results[key],
                 actual.results[slim_key], kept, tolerance, output=True)


def _input_keys(graph):
    produced = {k for call in graph.calls for k in call.outputs}
    return [k for k in graph.layouts if k not in produced]


def _random_inputs(graph, rng, batch):
    """Normal floats; integer and boolean inputs 0, then 1 from the middle
    of the batch on, so that no input is the same in every sample."""
    feeds = {}
    for tensor in graph_of(graph.model).inputs:
        shape = (batch,) + tuple(d or 32 for d in tuple(tensor.shape)[1:])
        dtype = str(tensor.dtype or "float32")
        if "int" in dtype or "bool" in dtype:
            half = np.arange(batch) >= batch // 2
            half = half.reshape((batch,) + (1,) * (len(shape) - 1))
            feeds[((), id(tensor))] = np.broadcast_to(half, shape).astype(
                dtype)
        else:
            feeds[((), id(tensor))] = rng.normal(size=shape).astype(dtype)
    return feeds


class _Run:
    def __init__(self):
        self.calls = []  # (call, [numpy outputs]) in execution order
        self.results = {}  # tensor key -> numpy array


def _run(graph, feeds):
    run = _Run()
    run.results.update(feeds)
    for call in graph.calls:
        outs = _call(call, [run.results[k] for k in call.inputs])
        run.results.update(zip(call.outputs, outs))
        run.calls.append((call, outs))
    return run


def _call(call, arrays, mapping=()):
    """Call `call`'s layer on `arrays` in inference mode, changing no
    variable; `mapping` lists (variable, value) to use instead."""
    tensors = {id(t): a for t, a in zip(call.node.input_tensors, arrays)}
    args, kwargs = call.node.arguments.fill_in(tensors)
    layer = call.layer
    if isinstance(layer, keras.layers.Layer) and (
            "training" in kwargs or blocks.takes_training(layer)):
        kwargs = dict(kwargs, training=False)
    with user_code.built_as_before(layer), keras.StatelessScope(
            state_mapping=list(mapping)):
        out = layer(*args, **kwargs)
        return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(out)]


class _Reference:
    """The original model with the cut channels' gammas at zero, a cut
    channel that still depends on the input read as zero by the layers that
    mix channels (every cut channel with `fold="none"`)."""

    def __init__(self, graph, kept, fold, dead_fn):
        self.graph = graph
        self.kept = kept
        self.fold = fold
        self.dead_fn = dead_fn

    def run(self, feeds):
        """Run on `feeds`; returns the `_Run`."""
        run = _Run()
        run.results.update(feeds)
        self.reach = {key: _positions(a) for key, a in feeds.items()}
        for call in self.graph.calls:
            arrays = self._remove_live(
                call, [run.results[k] for k in call.inputs])
            mapping, dead = self._zero_gammas(call)
            mapping = list(mapping) + self._silence_units(call)
            outs = _call(call, arrays, mapping)
            if dead is not None:
                outs = _beta_at(call.layer, outs, dead)
            run.results.update(zip(call.outputs, outs))
            run.calls.append((call, outs))
            reach = max([self.reach.get(k, 1) for k in call.inputs] or [1])
            for key, out in zip(call.outputs, outs):
                self.reach[key] = max(reach, _positions(out))
        return run

    def _remove_live(self, call, arrays):
        """Zero the cut input channels of a layer that mixes channels that
        differ between the samples of the batch, that is, that depend on
        the input (all of them with `fold="none"`)."""
        if call.role.kind != rule_registry.PRODUCER or not self.kept:
            return arrays
        slots = self.graph.layer_slots.get(id(call.layer), {})
        layouts = [self.graph.layer_input.get(id(call.layer))] + [
            slots.get(slot) for slot in call.role.inputs[1:]]
        arrays = list(arrays)
        for index, layout in enumerate(layouts):
            positions = (self.graph.kept_positions(layout, self.kept)
                         if layout is not None else None)
            if positions is None:
                continue
            cut = np.setdiff1d(np.arange(layout.size), positions)
            if self.fold != "none":
                reach = (self.reach.get(call.inputs[index], 1)
                         if index < len(call.inputs) else 1)
                cut = cut[~_same_in_every_sample(arrays[index][..., cut],
                                                 reach)]
            arrays[index] = np.array(arrays[index], copy=True)
            arrays[index][..., cut] = 0
        return arrays

    def _silence_units(self, call):
        """The mapping that zeroes, for the units the plan cuts inside a
        layer (heads), the weights through which they reach its output
        (`Rule.unit_outputs`): the original computes without them. The
        surgery's slicing is not used."""
        units = self.graph.layer_units.get(id(call.layer))
        if not units or not self.kept:
            return []
        layer = call.layer
        rule = rule_registry.rule_for(layer)
        variables = dict(zip(copying.weight_keys(layer), layer.weights))
        values = {}
        for unit, layout in units.items():
            positions = self.graph.kept_positions(layout, self.kept)
            if positions is None:
                continue
            removed = np.setdiff1d(np.arange(layout.size), positions)
            for key, axis in rule.unit_outputs(layer, unit).items():
                if key not in values:
                    values[key] = keras.ops.convert_to_numpy(
                        variables[key]).copy()
                index = [slice(None)] * values[key].ndim
                index[axis] = removed
                values[key][tuple(index)] = 0
        return [(variables[key], value) for key, value in values.items()]

    def _zero_gammas(self, call):
        """The mapping that zeroes a BatchNormalization's dead gammas, and
        the dead positions of one without gamma (`scale=False`)."""
        layer = call.layer
        if (not self.kept or call.role.kind != rule_registry.CHANNELWISE
                or not rule_registry.rule_for(layer).scales_channels(layer)):
            return (), None
        dead = np.flatnonzero(self.dead_fn(layer))
        if not dead.size:
            return (), None
        if not layer.scale:
            return (), dead
        gamma = keras.ops.convert_to_numpy(layer.gamma).copy()
        gamma[dead] = 0
        return [(layer.gamma, gamma)], None


def _same_in_every_sample(array, reduced=1):
    """Per last-axis channel: whether every sample equals the first one at
    every position, up to the rounding of a sum of `reduced` terms, relative
    to the channel's largest magnitude; infinities and NaN equal only
    themselves.

    A channel that is constant in exact arithmetic (a cut channel's beta,
    averaged over a feature map) may still differ between the samples: a
    reduction may sum each sample in another order. Summing `n` terms
    errs by at most about `n` units in the last place of the sum, so the
    allowance is `16 + reduced` units in the last place (half-precision
    reductions accumulate in float32: those add `reduced` float32 units
    to 16 of their own). A channel that depends on the input differs by
    a fraction of its magnitude, far above that.
    """
    array = np.asarray(array)
    eps = (np.finfo(array.dtype).eps
           if np.issubdtype(array.dtype, np.floating) else 0.0)
    summed = min(eps, np.finfo(np.float32).eps)
    allowance = 16 * eps + reduced * summed
    array = array.reshape(array.shape[0], -1, array.shape[-1])
    first = array[:1]
    same = (array == first) | (np.isnan(array) & np.isnan(first))
    finite = np.where(np.isfinite(array), np.abs(array), 0.0)
    scale = np.max(finite, axis=(0, 1))
    with np.errstate(invalid="ignore"):
        close = np.abs(array.astype(np.float64) - first) <= allowance * scale
    return np.all(same | close, axis=(0, 1))


def _positions(array):
    """How many values one sample of `array` holds per last-axis channel:
    the most terms a reduction within a channel can sum."""
    shape = np.shape(array)
    if len(shape) < 3:
        return 1
    return max(1, int(np.prod(shape[1:-1])))


def _beta_at(layer, outs, dead):
    """A BatchNormalization without gamma outputs beta at `dead`."""
    array = np.array(outs[0], copy=True)
    beta = (keras.ops.convert_to_numpy(layer.beta) if layer.center
            else np.zeros(array.shape[-1]))
    array[..., dead] = beta[dead]
    return [array] + list(outs[1:])


def _compare(graph, layer, key, expected, actual, kept, tolerance,
             output=False):
    if not np.issubdtype(np.asarray(expected).dtype, np.floating):
        return
    positions = graph.kept_positions(graph.layouts[key], kept) if kept else None
    if positions is not None:
        expected = expected[..., positions]
    name = layer.name if layer is not None else "input"
    kind = type(layer).__name__
    if expected.shape != actual.shape:
        raise ValueError(
            f"verify: layer `{name}` ({kind}) outputs shape {actual.shape} "
            f"in the slim model but {expected.shape} at the kept channels "
            "of the original; its rule cuts the wrong channels."
        )
    error = relative_error(expected, actual)
    if not error <= tolerance:
        where = ("Its output is a model output" if output else
                 "It is the first layer that does")
        raise ValueError(
            f"verify: layer `{name}` ({kind}) differs from the original "
            f"with the cut channels' gammas at zero by {error:.3g} relative "
            f"(tolerance {tolerance:g}). {where}: check its rule "
            "(keras_slim.register_rule), or the fold (an approximate fold "
            "is warned about)."
        )
