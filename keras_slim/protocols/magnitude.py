"""Unstructured magnitude pruning (Han et al., 2015), as a callback.

`MagnitudeMask` zeroes the weights of smallest magnitude and keeps them at
zero while training: the mask is a non-trainable variable read by a
constraint attached to each masked kernel, which the optimizer applies right
after every update inside the compiled train step (no Python loop over
layers per batch). Masks are plain `{variable path: bool array}` dicts that
can be read, saved, given back to a new `MagnitudeMask(masks=...)` or
applied to a copy of a model with `apply_masks`.
"""

import math

import keras
import numpy as np

from keras_slim.core import copying
from keras_slim.core.graph import leaf_layers

__all__ = [
    "apply_masks",
    "magnitude_masks",
    "MagnitudeMask",
    "masks_of_arrays",
    "prunable_kernels",
    "sparsity_of",
]

SCHEDULES = ("one_shot", "iterative")
SCOPES = ("global", "layer")
CONV_TYPES = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose, keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D, keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def prunable_kernels(model, layers=None):
    """The kernel variables magnitude pruning acts on, by path.

    Args:
        model: a `keras.Model`.
        layers: names of the layers whose kernels are pruned; `None` for the
            kernels of every convolution (the Rethinking paper prunes only
            convolutions; name Dense layers to prune them too).

    Returns:
        dict variable path -> variable, in the model's layer order.

    Raises:
        ValueError: a name not in the model, or no kernel to prune.
    """
    leaves = list(leaf_layers(model))
    if layers is None:
        chosen = [layer for layer in leaves if isinstance(layer, CONV_TYPES)]
    else:
        if isinstance(layers, str):
            layers = [layers]
        by_name = {layer.name: layer for layer in leaves}
        missing = [name for name in layers if name not in by_name]
        if missing:
            raise ValueError(
                f"`layers` names {', '.join(f'`{n}`' for n in missing)}, "
                f"not in model `{model.name}`."
            )
        chosen = [by_name[name] for name in layers]
    kernels = {}
    for layer in chosen:
        for variable in layer.trainable_weights:
            if variable.name in KERNELS:
                kernels[variable.path] = variable
    if not kernels:
        raise ValueError(
            f"Model `{model.name}` has no convolution kernel to prune; name "
            "the layers to prune in `layers`."
        )
    return kernels


def magnitude_masks(model, sparsity, scope="global", layers=None, masks=None):
    """Masks pruning the `sparsity` share of a model's smallest kernel weights.

    One-shot magnitude pruning of a trained model, outside `fit`: for a
    lottery-ticket round, `rewind(model, snapshot, masks=masks)` then train
    with `MagnitudeMask(masks=masks)`.

    Args:
        model: a `keras.Model`. Not modified.
        sparsity: share of weights to prune, in [0, 1).
        scope: "global" or "layer" (see `MagnitudeMask`).
        layers: names of the layers to prune; `None` for every convolution.
        masks: current masks; weights they prune stay pruned.

    Returns:
        dict variable path -> boolean array, True where the weight is kept.

    Raises:
        ValueError: a bad argument, or a layer name not in the model.
    """
    _check_choice("sparsity", sparsity, 0, 1)
    if scope not in SCOPES:
        raise ValueError(
            f"Expected `scope` to be one of {', '.join(SCOPES)}. "
            f"Received: scope={scope!r}"
        )
    arrays = {p: keras.ops.convert_to_numpy(v)
              for p, v in prunable_kernels(model, layers).items()}
    return masks_of_arrays(arrays, sparsity, scope, masks)


def _check_choice(name, value, low, high, low_open=False):
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad:
        bad = not (low < value < high if low_open else low <= value < high)
    if bad:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"Expected `{name}` in {bracket}{low}, {high}). "
            f"Received: {name}={value!r}"
        )


def masks_of_arrays(arrays, sparsity, scope="global", masks=None):
    """Masks that zero the `sparsity` share of smallest-magnitude weights.

    Args:
        arrays: dict path -> weight array.
        sparsity: share of weights to prune, in [0, 1).
        scope: "global" (one threshold over all arrays, as the Rethinking
            repository does) or "layer" (`sparsity` in each array, Han et
            al.).
        masks: current masks; weights they prune stay pruned.

    Returns:
        dict path -> boolean array, True where the weight is kept.
    """
    masks = masks or {}
    scores = {}
    for path, value in arrays.items():
        score = np.abs(np.asarray(value, np.float64))
        if path in masks:
            score = np.where(masks[path], score, -1.0)  # pruned stay pruned
        scores[path] = score
    if scope == "layer":
        return {path: _keep_largest(score, sparsity)
                for path, score in scores.items()}
    flat = np.concatenate([s.ravel() for s in scores.values()])
    keep = _keep_largest(flat, sparsity)
    out, start = {}, 0
    for path, score in scores.items():
        out[path] = keep[start:start + score.size].reshape(score.shape)
        start += score.size
    return out


def _keep_largest(score, sparsity):
    count = int(math.floor(sparsity * score.size + 0.5))
    flat = score.ravel()
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:count]] = False
    return keep.reshape(score.shape)


def sparsity_of(masks):
    """Share of the masked weights that are pruned."""
    total = sum(m.size for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / max(total, 1)


class _MaskConstraint(keras.constraints.Constraint):
    """Multiplies a variable by a mask variable, after any prior constraint."""

    def __init__(self, mask, previous=None):
        self.mask = mask
        self.previous = previous

    def __call__(self, w):
        if self.previous is not None:
            w = self.previous(w)
        return w * keras.ops.cast(self.mask, w.dtype)


class MagnitudeMask(keras.callbacks.Callback):
    """Unstructured magnitude pruning during `fit` (Han et al., 2015).

    At the pruning epochs the weights of smallest |w| are masked to zero;
    a constraint keeps them at zero after every optimizer step until the end
    of training. The Rethinking paper's two modes:

    - `schedule="one_shot"`: prune `sparsity` at once at epoch
      `start_epoch`, then train with the mask (prune a trained model, then
      fine-tune it).
    - `schedule="iterative"`: every `round_epochs` epochs from
      `start_epoch`, prune `rate` (20%) of the weights still alive, until
      `sparsity` is reached (Frankle & Carbin's rounds).

    Args:
        sparsity: target share of pruned weights, in [0, 1); may be omitted
            when `masks` is given.
        schedule: "one_shot" or "iterative".
        rate: share of the remaining weights pruned per iterative round.
        round_epochs: epochs between iterative rounds.
        start_epoch: epoch (as `fit` counts them) of the first pruning.
        scope: "global" (one threshold over all masked kernels, as the
            Rethinking repository) or "layer" (the same share in each).
        layers: names of the layers to prune; `None` for every convolution.
        masks: masks to enforce from the start, e.g. another callback's
            `masks` (with no `sparsity`, they are kept fixed).

    Attributes:
        masks: dict variable path -> boolean array (True = kept).

    Example:

    >>> mask = keras_slim.MagnitudeMask(0.9, schedule="iterative")
    >>> model.fit(x, y, epochs=30, callbacks=[mask])
    >>> mask.masks  # reusable: keras_slim.MagnitudeMask(masks=mask.masks)
    """

    def __init__(self, sparsity=None, schedule="one_shot", rate=0.2,
                 round_epochs=1, start_epoch=0, scope="global", layers=None,
                 masks=None):
        super().__init__()
        if sparsity is None and masks is None:
            raise ValueError("Give `sparsity`, or `masks` to enforce.")
        if sparsity is not None:
            _check_choice("sparsity", sparsity, 0, 1)
        if schedule not in SCHEDULES:
            raise ValueError(
                f"Expected `schedule` to be one of {', '.join(SCHEDULES)}. "
                f"Received: schedule={schedule!r}"
            )
        _check_choice("rate", rate, 0, 1, low_open=True)
        for name, value in (("round_epochs", round_epochs),
                            ("start_epoch", start_epoch)):
            low = 1 if name == "round_epochs" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"Expected `{name}` to be an integer >= {low}. "
                    f"Received: {name}={value!r}"
                )
        if scope not in SCOPES:
            raise ValueError(
                f"Expected `scope` to be one of {', '.join(SCOPES)}. "
                f"Received: scope={scope!r}"
            )
        self.sparsity = sparsity
        self.schedule = schedule
        self.rate = rate
        self.round_epochs = round_epochs
        self.start_epoch = start_epoch
        self.scope = scope
        self.layers = layers
        self.masks = (
            None if masks is None
            else {k: np.asarray(v, bool) for k, v in masks.items()}
        )
        self._kernels = {}
        self._mask_variables = {}
        self._previous = {}

    # -- hooks ----------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.masks is not None:
            self._kernels = self._kernels_of_masks()
        else:
            self._kernels = prunable_kernels(self.model, self.layers)
        self._attach()
        if self.masks is not None:
            self._set_masks(self.masks)
        self._rebuild_train_function()

    def on_epoch_begin(self, epoch, logs=None):
        if self.sparsity is None or epoch < self.start_epoch:
            return
        current = sparsity_of(self.masks) if self.masks else 0.0
        if current >= self.sparsity - 1e-12:
            return
        if self.schedule == "one_shot":
            target = self.sparsity
        else:
            if (epoch - self.start_epoch) % self.round_epochs:
                return
            target = min(self.sparsity, 1 - (1 - current) * (1 - self.rate))
        arrays = {p: keras.ops.convert_to_numpy(v)
                  for p, v in self._kernels.items()}
        self._set_masks(masks_of_arrays(arrays, target, self.scope, self.masks))
        if keras.backend.backend() == "jax":
            self._rebuild_train_function()  # masks are traced as constants

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.masks:
            logs["weight_sparsity"] = sparsity_of(self.masks)

    def on_train_end(self, logs=None):
        for path, variable in self._kernels.items():
            variable.constraint = self._previous.get(path)
        self._mask_variables = {}
        self.model.train_function = None  # the next fit traces without masks

    # -- helpers --------------------------------------------------------------

    def _kernels_of_masks(self):
        variables = {v.path: v for v in self.model.trainable_weights}
        missing = [p for p in self.masks if p not in variables]
        if missing:
            raise ValueError(
                f"`masks` names weights not in model `{self.model.name}`: "
                f"{', '.join(missing)}"
            )
        for path, mask in self.masks.items():
            if mask.shape != tuple(variables[path].shape):
                raise ValueError(
                    f"The mask of `{path}` has shape {mask.shape}, the weight "
                    f"{tuple(variables[path].shape)}."
                )
        return {p: variables[p] for p in self.masks}

    def _attach(self):
        scope = getattr(self.model, "distribute_strategy", None)
        for path, variable in self._kernels.items():
            previous = variable.constraint
            if isinstance(previous, _MaskConstraint):  # a fit that crashed
                previous = previous.previous
            self._previous[path] = previous
            if scope is not None:
                with scope.scope():
                    mask = self._new_mask(variable)
            else:
                mask = self._new_mask(variable)
            self._mask_variables[path] = mask
            variable.constraint = _MaskConstraint(mask, previous)

    @staticmethod
    def _new_mask(variable):
        return keras.Variable(
            np.ones(tuple(variable.shape), "float32"),
            trainable=False,
            dtype="float32",
            name=variable.name + "_mask",
        )

    def _set_masks(self, masks):
        self.masks = masks
        for path, mask in masks.items():
            self._mask_variables[path].assign(mask.astype("float32"))
            variable = self._kernels[path]
            variable.assign(variable * keras.ops.cast(
                self._mask_variables[path], variable.dtype))

    def _rebuild_train_function(self):
        # A train step traced before the constraints were attached would
        # ignore them: trace it again.
        self.model.train_function = None
        self.model.make_train_function(force=True)


def apply_masks(model, masks):
    """A copy of `model` whose masked weights are zero.

    Args:
        model: a `keras.Model`. Not modified.
        masks: dict variable path -> boolean array (True = kept), e.g.
            `MagnitudeMask.masks`.

    Returns:
        A new, uncompiled `keras.Model` (same architecture).

    Raises:
        ValueError: a path not in the model, or a shape mismatch.
    """
    copy = copying.clone_model(model)
    variables = {v.path: v for v in copy.weights}
    for path, mask in masks.items():
        if path not in variables:
            raise ValueError(f"`masks` names weight `{path}`, not in the model.")
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(variables[path].shape):
            raise ValueError(
                f"The mask of `{path}` has shape {mask.shape}, the weight "
                f"{tuple(variables[path].shape)}."
            )
        value = keras.ops.convert_to_numpy(variables[path])
        variables[path].assign(value * mask)
    copying.refresh_model_state(copy)
    return copy
