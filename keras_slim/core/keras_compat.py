"""Every use of private Keras API in keras_slim, in one place.

keras_slim reads a model's graph and cuts layers, which Keras' public API
does not fully expose. Each function below wraps one private attribute or
module, with a line saying why no public one serves. A new Keras release
that moves one of them breaks here, and only here. Tested with Keras 3.15
(`setup.cfg` bounds keras to major version 3).
"""

import importlib

__all__ = [
    "call_count",
    "functional_class",
    "custom_scale_layer",
    "flatten_layers",
    "functional_of",
    "input_layer_of",
    "inbound_nodes",
    "input_structure",
    "nodes_by_depth",
    "op_classes",
    "outbound_nodes",
    "output_structure",
    "produced_by",
    "restore_make_train_function",
    "set_nodes",
    "training_attributes",
    "wrap_make_train_function",
]


def flatten_layers(model):
    """Every layer inside `model`, nested models and their layers included.

    Why: `model.layers` lists only the top level; Keras' own recursive walk
    (`_flatten_layers`) also finds layers a nested model holds and dedups
    shared ones.
    """
    return model._flatten_layers(include_self=False, recursive=True)


def produced_by(tensor):
    """The name of the operation (layer or op) whose output `tensor` is.

    Why: a symbolic tensor records its producer only in `_keras_history`.
    """
    return tensor._keras_history.operation.name


def input_layer_of(tensor):
    """The `InputLayer` that creates the model input `tensor`.

    Why: a symbolic tensor records its producer only in `_keras_history`;
    the layer holds what `keras.Input` was given (`optional`, `sparse`).
    """
    return tensor._keras_history.operation


def functional_class():
    """The class `keras.Model(inputs, outputs)` returns.

    Why: Keras exports `Functional` nowhere public; a model whose class is
    exactly it carries no user code beyond its graph.
    """
    from keras.src.models.functional import Functional

    return Functional


def training_attributes():
    """Attributes `compile`, `fit`, `evaluate` and `predict` set on a model.

    Why: they hold the training state of the model they were set on
    (compiled functions, iterators, JAX state, the compile config); a copy
    of a model subclass must not carry them, and Keras lists them nowhere
    public (read from keras/src/trainers and backend/*/trainer.py, 3.15).
    """
    return frozenset({
        "_compile_config", "_compile_loss", "_compile_metrics",
        "_compiled_trainable_state", "_current_iterator",
        "_distributed_dataset", "_epoch_iterator", "_eval_epoch_iterator",
        "_jax_state", "_jax_state_synced", "_loss_tracker", "_steps_seen",
        "compiled", "history", "loss", "optimizer", "predict_function",
        "stop_evaluating", "stop_predicting", "stop_training",
        "test_function", "train_function", "ov_compiled_model",
        "ov_device", "ov_input_shapes",
    })


def functional_of(model):
    """The functional graph a built `Sequential` wraps, or None.

    Why: a Sequential model builds a hidden `Functional` (`_functional`);
    its nodes are what the channel graph reads.
    """
    return getattr(model, "_functional", None)


def has_graph(model):
    """Whether `model` carries a functional graph of nodes.

    Why: subclassed models have no graph; only functional ones have
    `_nodes_by_depth`, and no public predicate says so.
    """
    return hasattr(model, "_nodes_by_depth")


def nodes_by_depth(model):
    """depth -> nodes of a functional model (inputs at the greatest depth).

    Why: Keras orders its own graph walks (cloning, `call`) by this private
    map; the public API has no node order.
    """
    return model._nodes_by_depth


def inbound_nodes(operation):
    """The nodes at which `operation` was called on symbolic tensors.

    Why: Keras keeps them in the private `_inbound_nodes`; the public
    `layer.input` only works for a layer called once.
    """
    return operation._inbound_nodes


def outbound_nodes(operation):
    """The nodes that read `operation`'s symbolic outputs."""
    return operation._outbound_nodes


def set_nodes(operation, inbound, outbound):
    """Put back `operation`'s node lists (after a trace added to them)."""
    operation._inbound_nodes[:] = inbound
    operation._outbound_nodes[:] = outbound


def input_structure(model):
    """The nested structure (dict, list, tensor) of a functional model's
    inputs as it was built. Why: `model.inputs` is always a flat list."""
    return model._inputs_struct


def output_structure(model):
    """The nested structure of a functional model's outputs as it was built.
    Why: `model.outputs` is always a flat list."""
    return model._outputs_struct


def call_count(optimizer, default):
    """How many times `optimizer.apply` ran, gradient accumulation counted.

    Why: with `gradient_accumulation_steps`, the public `iterations` counts
    updates; only `_iterations` counts calls.
    """
    return getattr(optimizer, "_iterations", default)


def op_classes(module_name, *names):
    """The operation classes `names` of `keras.src.ops.<module_name>`.

    Why: `x + 3.0` or `keras.ops.relu(x)` in a functional model becomes a
    node whose operation is one of these classes, which Keras exports
    nowhere public; rules are registered for them.
    """
    try:
        module = importlib.import_module(f"keras.src.ops.{module_name}")
    except ImportError:  # pragma: no cover - other Keras layouts
        return []
    return [getattr(module, n) for n in names if hasattr(module, n)]


def custom_scale_layer():
    """InceptionResNetV2's `CustomScaleLayer` class, or None.

    Why: the application builds its residual scaling with a layer class
    defined in `keras.src.applications`, not exported publicly.
    """
    try:
        module = importlib.import_module(
            "keras.src.applications.inception_resnet_v2")
    except ImportError:  # pragma: no cover
        return None
    return getattr(module, "CustomScaleLayer", None)


def wrap_make_train_function(model, make_train_function):
    """Makes `model.make_train_function` call `make_train_function` instead.

    Why: `fit` calls `make_train_function()` before any callback hook, the
    one point where a callback's stale state from an interrupted `fit` can
    be cleared; Keras offers no public hook there. Set on the instance
    (bypassing Keras' attribute tracking), so `restore_make_train_function`
    brings back the class' method.
    """
    object.__setattr__(model, "make_train_function", make_train_function)


def restore_make_train_function(model):
    """Undoes `wrap_make_train_function`."""
    model.__dict__.pop("make_train_function", None)
