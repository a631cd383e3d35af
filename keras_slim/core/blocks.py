"""Reading through custom block layers.

keras-hub's backbones, and many user models, are functional graphs of
custom layers (`InvertedResidualBlock`, `FusedMBConvBlock`, `HGNetV2Stage`)
whose `call` only chains Keras layers and ops. Such a block is read through:
its `call` is traced once on symbolic inputs of the shape it is called with,
which gives a functional graph of its own sublayers. The channel graph walks
that graph as it walks a nested model, and the slim model holds the block as
a nested functional model of the same name, its sublayers thinner and named
as before.

A block is read through only when the trace computes what the block does:

- no rule is registered for its class (a registered rule wins);
- it holds sublayers and no variable of its own (every weight is a
  sublayer's);
- it is called once, on one positional argument (a tensor or a list of
  them);
- its `call` takes the same path with `training` unset and with
  `training=True` (a `call` that branches on `training` in Python would lose
  one of the branches);
- the trace and the block agree, in inference mode, on a random input.

Otherwise the block stays a barrier, and the warning says why. Tracing
changes nothing the user holds: the nodes the trace adds to the sublayers
are removed again.
"""

import inspect
import weakref

import keras
import numpy as np

from keras_slim.core import keras_compat, rule_registry
from keras_slim.core.comparison import TOLERANCES, relative_error

__all__ = ["barrier_role", "elementwise_role", "is_block", "name_ops_like",
           "takes_training", "trace", "why_not_read"]

# layer -> (traced model or None, reason), weakly keyed by the layer.
_CACHE = weakref.WeakKeyDictionary()
# layer -> [(args, kwargs)] of its calls in the traces of the blocks that
# hold it, the tensors as bare specs (a node would hold the layer, and so
# keep its weak key alive): a block nested in another is called on backend
# tensors inside its parent's call when the model is built, so Keras
# records no node for it.
_CALLED_IN_TRACE = weakref.WeakKeyDictionary()
# layer -> whether it computes element by element (`elementwise_role`).
_ELEMENTWISE = weakref.WeakKeyDictionary()

# clone -> the block it was cloned from (`kept_blocks.py`), whose trace
# names the ops (`x + y`, `mean`) of the clone's trace.
_TWINS = weakref.WeakKeyDictionary()

# Relative agreement the trace must show with the block on a random input,
# for float32 and float64 (half precision: `comparison.TOLERANCES`).
_AGREEMENT = 1e-5


def is_block(layer):
    """Whether `layer` is a custom layer read through as its trace."""
    return _entry(layer)[0] is not None


def trace(layer):
    """The functional model that computes what the block `layer` does."""
    traced, reason = _entry(layer)
    if traced is None:
        raise ValueError(f"Layer `{layer.name}` is not read through: {reason}")
    return traced


def why_not_read(layer):
    """Why a custom layer with sublayers is not read through (a phrase for
    the barrier warning), or `None`."""
    return _entry(layer)[1]


def barrier_role(layer):
    """The barrier `Role` of a custom block that is not read through,
    naming why; `None` for any other layer."""
    why = why_not_read(layer)
    if why is None:
        return None
    return rule_registry.Role(rule_registry.BARRIER,
                              reason=f"not read through: {why}", warn=True)


def name_ops_like(clone, block):
    """Name the stateless ops of `clone`'s trace as those of `block`'s,
    which Keras would otherwise number anew."""
    _TWINS[clone] = weakref.ref(block)


def _name_ops(layer, traced):
    twin = _TWINS.get(layer)
    block = twin() if twin is not None else None
    if block is None or not is_block(block):
        return
    ops = [[n.operation for n in _ordered_nodes(model)]
           for model in (trace(block), traced)]
    if len(ops[0]) == len(ops[1]) and all(
            type(a) is type(b) for a, b in zip(*ops)):
        for a, b in zip(*ops):
            if not isinstance(b, keras.layers.Layer):
                b.name = a.name


def _ordered_nodes(model):
    by_depth = keras_compat.nodes_by_depth(model)
    return [node for depth in sorted(by_depth, reverse=True)
            for node in by_depth[depth]
            if node.operation is not None and not node.is_input]


def elementwise_role(layer, call):
    """A channelwise `Role` for a custom layer without a rule or sublayers
    whose weights are all scalars (a learnable scale and bias, as
    keras-hub's `HGNetV2LearnableAffineBlock`) and that computes element
    by element: on a random input, each output element depends on the
    same input element only. Its constants are found by running it, as
    for any channelwise layer. `None` for any other layer."""
    if (not isinstance(layer, keras.layers.Layer) or _sublayers(layer)
            or type(layer).__module__.startswith("keras.")
            or rule_registry.has_rule(layer) or not layer.weights
            or any(len(v.shape) for v in layer.weights)
            or takes_training(layer)):
        return None
    found = _ELEMENTWISE.get(layer)
    if found is None:
        found = _ELEMENTWISE[layer] = _computes_elementwise(layer, call)
    return rule_registry.Role(rule_registry.CHANNELWISE) if found else None


def _computes_elementwise(layer, call):
    args, kwargs = _arguments(call.node)
    if len(args) != 1 or kwargs:
        return False
    spec = args[0]
    if not _is_tensor(spec) or not spec.shape or spec.shape[-1] is None:
        return False
    rng = np.random.default_rng(0)
    shape = (2,) + tuple(d or 4 for d in tuple(spec.shape)[1:])
    dtype = spec.dtype or "float32"
    a, b = (rng.normal(size=shape).astype(dtype) for _ in range(2))
    mask = rng.random(shape) < 0.5
    try:
        with keras.StatelessScope():
            outs = [keras.ops.convert_to_numpy(layer(x))
                    for x in (a, b, np.where(mask, a, b))]
    except Exception:  # not a function of one tensor
        return False
    if any(out.shape != shape for out in outs):
        return False
    mixed = np.where(mask, outs[0], outs[1])
    return relative_error(mixed, outs[2]) <= TOLERANCES.get(
        str(getattr(layer, "compute_dtype", "float32")), _AGREEMENT)


def _entry(layer):
    if not _candidate(layer):
        return None, None
    found = _CACHE.get(layer)
    if found is not None:
        return found
    # The trace and the agreement check build the weightless sublayers they
    # call: put their flags back, so the user's layers stay as they were.
    unbuilt = [sub for sub in _sublayers(layer)
               if not sub.built and not sub.weights]
    try:
        traced, reason = _trace(layer), None
    except _NotReadable as error:
        traced, reason = None, str(error)
    finally:
        for sub in unbuilt:
            if not sub.weights:
                sub.built = False
    _CACHE[layer] = (traced, reason)
    return traced, reason


def _candidate(layer):
    if not isinstance(layer, keras.layers.Layer) or isinstance(
            layer, (keras.Model, keras.layers.InputLayer)):
        return False
    if type(layer).__module__.startswith("keras."):
        return False
    if rule_registry.has_rule(layer):
        return False  # a registered rule (or a subclass barrier) decides
    return bool(_sublayers(layer))


def _sublayers(layer):
    return [inner for inner in keras_compat.flatten_layers(layer)
            if inner is not layer]


class _NotReadable(Exception):
    pass


def _trace(layer):
    calls = [_arguments(node) for node in keras_compat.inbound_nodes(layer)]
    if not calls:
        calls = list(_CALLED_IN_TRACE.get(layer, ()))
    if len(calls) != 1:
        raise _NotReadable(f"it is called {len(calls)} times")
    args, kwargs = calls[0]
    if len(args) != 1 or any(keras.tree.is_nested(v) or _is_tensor(v)
                             for v in kwargs.values()):
        raise _NotReadable("it takes more than one tensor argument")
    spec = args[0]
    if not all(_is_tensor(t) for t in keras.tree.flatten(spec)):
        raise _NotReadable("its argument holds values other than tensors")
    own = _own_variables(layer)
    if own:
        raise _NotReadable(f"it holds its own variable `{own[0].path}`")
    has_training = takes_training(layer)
    held = _held_nodes(layer)
    try:
        traced, order = _traced_model(layer, spec, kwargs, has_training,
                                      None)
        if has_training:
            _, order_training = _traced_model(layer, spec, kwargs,
                                              has_training, True)
            if order_training != order:
                raise _NotReadable("its `call` branches on `training`")
    except _NotReadable:
        raise
    except Exception as error:  # a call that cannot run on symbolic inputs
        raise _NotReadable(
            f"its `call` cannot be traced ({type(error).__name__})") from None
    finally:
        _restore_nodes(held)
    reached = {id(v) for v in traced.weights}
    missed = [v for v in layer.weights if id(v) not in reached]
    if missed:
        raise _NotReadable(f"its `call` does not use `{missed[0].path}`")
    _check_agreement(layer, traced, spec, kwargs)
    _name_ops(layer, traced)
    by_depth = keras_compat.nodes_by_depth(traced)
    inner = [node for depth in by_depth for node in by_depth[depth]
             if node.operation is not None and _candidate(node.operation)]
    for node in inner:
        _CALLED_IN_TRACE[node.operation] = []
    for node in inner:
        _CALLED_IN_TRACE[node.operation].append(_arguments(node))
    return traced


def _arguments(node):
    """`(args, kwargs)` of a node, each tensor a bare spec of it."""
    def spec(value):
        if _is_tensor(value):
            return keras.KerasTensor(value.shape, value.dtype)
        return value

    return (keras.tree.map_structure(spec, tuple(node.arguments.args)),
            keras.tree.map_structure(spec, dict(node.arguments.kwargs)))


def _traced_model(layer, spec, kwargs, has_training, training):
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype), spec)
    call_kwargs = dict(kwargs)
    if has_training:
        call_kwargs["training"] = training
    outputs = layer.call(inputs, **call_kwargs)
    model = keras.Model(inputs, outputs, name=layer.name,
                        trainable=layer.trainable)
    held = {id(sub) for sub in _sublayers(layer)}
    by_depth = keras_compat.nodes_by_depth(model)
    order = [id(op) if id(op) in held else type(op).__name__
             for depth in sorted(by_depth, reverse=True)
             for op in (node.operation for node in by_depth[depth])]
    return model, order


def _check_agreement(layer, traced, spec, kwargs):
    rng = np.random.default_rng(0)

    def sample(t):
        shape = (2,) + tuple(d or 8 for d in tuple(t.shape)[1:])
        return rng.normal(size=shape).astype(t.dtype or "float32")

    feed = keras.tree.map_structure(sample, spec)
    call_kwargs = dict(kwargs)
    if takes_training(layer):
        call_kwargs["training"] = False
    try:
        with keras.StatelessScope():
            want = keras.tree.flatten(layer(feed, **call_kwargs))
            got = keras.tree.flatten(traced(feed, training=False))
    except Exception as error:  # a trace that fixed a size it was given
        raise _NotReadable(f"it or its trace cannot run on a sample input "
                           f"({type(error).__name__})") from None
    dtype = str(getattr(layer, "compute_dtype", "float32"))
    tolerance = TOLERANCES.get(dtype, _AGREEMENT)
    for a, b in zip(want, got):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if a.shape != b.shape or relative_error(a, b) > tolerance:
            raise _NotReadable("its trace does not compute what it computes")


def _own_variables(layer):
    inner = {id(v) for sub in _sublayers(layer) for v in sub.weights}
    return [v for v in layer.weights if id(v) not in inner]


def takes_training(layer):
    """Whether `layer.call` has a `training` argument (Keras passes
    `training` only to a `call` that names it)."""
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _is_tensor(value):
    return isinstance(value, keras.KerasTensor)


def _held_nodes(layer):
    """The node lists of `layer`'s sublayers, to put back after tracing."""
    return [(sub, list(keras_compat.inbound_nodes(sub)),
             list(keras_compat.outbound_nodes(sub)))
            for sub in _sublayers(layer)]


def _restore_nodes(held):
    for sub, inbound, outbound in held:
        keras_compat.set_nodes(sub, inbound, outbound)
