"""`slim_model(..., verify=True)`: check a slim model layer by layer.

The reference is the original model with every cut channel set to what the
slim model assumes it is: a channel the plan cuts outputs its beta from
every BatchNormalization of its group (gamma taken as zero), and at each
layer that mixes channels a cut channel whose constant is not folded (no
BatchNormalization, or `fold="none"`) reads as zero. Both models run eagerly,
layer by layer, on the same random inputs; the first layer (in execution
order) whose output at the kept channels differs from the reference by more
than the tolerance is named in a `ValueError`. A wrong rule for a custom
layer, an approximate fold or a bug in the surgery shows up as the first
layer where the two models part. Imports only keras and numpy.
"""

import warnings

import keras
import numpy as np

from keras_slim.core import constants as constants_lib
from keras_slim.core import slicers
from keras_slim.core.graph import ChannelGraph, graph_of

__all__ = ["check"]


def check(graph, slim, kept, fold, tolerance, dead_fn, values=None,
          shifted=(), seed=0, batch=2):
    """Raise `ValueError` at the first layer of `slim` that differs.

    Args:
        graph: the original model's `ChannelGraph`.
        slim: the slim model.
        kept: group name -> kept indices the slim model has (carriers
            included).
        fold: the fold mode used.
        tolerance: the largest difference accepted, relative to the largest
            magnitude of the reference output of the layer.
        dead_fn: the BatchNormalization positions taken as dead.
        values: the constants folded (`constants.propagate`), or `None` to
            compute them.
        shifted: names of layers whose fold went into the moving mean of
            the BatchNormalization after them: compared from that BN on.
        seed: seed of the random inputs.
        batch: batch size of the random inputs.
    """
    if not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(
            "Expected `verify_tolerance` to be a number >= 0. "
            f"Received: verify_tolerance={tolerance!r}"
        )
    if values is None and fold != "none":
        values = constants_lib.propagate(
            graph, lambda layer: constants_lib.layer_weights(layer), dead_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim_graph = ChannelGraph(slim)
    rng = np.random.default_rng(seed)
    feeds = _random_inputs(graph, rng, batch)
    slim_feeds = dict(zip(_input_keys(slim_graph), feeds.values()))
    reference = _run(graph, feeds, _Masker(graph, kept, fold, dead_fn, values))
    outputs = {}
    for call, outs in _run(slim_graph, slim_feeds):
        outputs.setdefault(call.layer.name, []).append(outs)
    seen = {}
    for call, outs in reference:
        name = call.layer.name
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        slim_outs = outputs.get(name, [])
        if occurrence >= len(slim_outs):
            raise ValueError(
                f"verify: layer `{name}` is missing from the slim model."
            )
        if name in shifted:
            continue
        for key, expected, actual in zip(call.outputs, outs,
                                         slim_outs[occurrence]):
            _compare(graph, call, key, expected, actual, kept, tolerance)


def _input_keys(graph):
    produced = {k for call in graph.calls for k in call.outputs}
    return [k for k in graph.layouts if k not in produced]


def _random_inputs(graph, rng, batch):
    feeds = {}
    for tensor in graph_of(graph.model).inputs:
        shape = (batch,) + tuple(d or 32 for d in tuple(tensor.shape)[1:])
        dtype = str(tensor.dtype or "float32")
        if "int" in dtype or "bool" in dtype:
            feeds[((), id(tensor))] = np.zeros(shape, dtype)
        else:
            feeds[((), id(tensor))] = rng.normal(size=shape).astype(dtype)
    return feeds


def _run(graph, feeds, masker=None):
    """Yield `(call, [numpy outputs])` running `graph` eagerly."""
    results = dict(feeds)
    for call in graph.calls:
        arrays = [results[k] for k in call.inputs]
        if masker is not None:
            arrays = masker.before(call, arrays)
        tensors = {id(t): a for t, a in zip(call.node.input_tensors, arrays)}
        args, kwargs = call.node.arguments.fill_in(tensors)
        out = call.layer(*args, **kwargs)
        outs = [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(out)]
        if masker is not None:
            outs = masker.after(call, outs)
        for key, value in zip(call.outputs, outs):
            results[key] = value
        yield call, outs


class _Masker:
    """Sets the cut channels of the original to what the slim model
    assumes: beta out of every BatchNormalization, zero where unfolded."""

    def __init__(self, graph, kept, fold, dead_fn, values):
        self.graph = graph
        self.kept = kept
        self.fold = fold
        self.dead_fn = dead_fn
        self.values = values

    def before(self, call, arrays):
        if call.role.kind != slicers.PRODUCER or not self.kept:
            return arrays
        layout = self.graph.layer_input.get(id(call.layer))
        kept = self.graph.kept_positions(layout, self.kept)
        if kept is None:
            return arrays
        cut = np.setdiff1d(np.arange(layout.size), kept)
        if self.fold != "none":
            cut = cut[np.isnan(self.values[call.inputs[0]][cut])]
        array = np.array(arrays[0], copy=True)
        array[..., cut] = 0
        return [array] + list(arrays[1:])

    def after(self, call, outs):
        if (not self.kept or call.role.kind != slicers.CHANNELWISE
                or not slicers.rule_for(call.layer).scales_channels(
                    call.layer)):
            return outs
        dead = np.flatnonzero(self.dead_fn(call.layer))
        if not dead.size:
            return outs
        beta = (constants_lib.to_numpy(call.layer.beta) if call.layer.center
                else np.zeros(outs[0].shape[-1]))
        array = np.array(outs[0], copy=True)
        array[..., dead] = beta[dead]
        return [array] + list(outs[1:])


def _compare(graph, call, key, expected, actual, kept, tolerance):
    if not np.issubdtype(np.asarray(expected).dtype, np.floating):
        return
    positions = graph.kept_positions(graph.layouts[key], kept) if kept else None
    if positions is not None:
        expected = expected[..., positions]
    name = call.layer.name
    if expected.shape != actual.shape:
        raise ValueError(
            f"verify: layer `{name}` ({type(call.layer).__name__}) outputs "
            f"shape {actual.shape} in the slim model but {expected.shape} at "
            "the kept channels of the original; its rule cuts the wrong "
            "channels."
        )
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-3)
    error = float(np.max(np.abs(expected - actual), initial=0.0)) / scale
    if not error <= tolerance:
        raise ValueError(
            f"verify: layer `{name}` ({type(call.layer).__name__}) differs "
            f"from the original with the cut channels masked by {error:.3g} "
            f"relative (tolerance {tolerance:g}). It is the first layer that "
            "does: check its rule (keras_slim.register_rule), or the fold "
            "(an approximate fold is warned about)."
        )
