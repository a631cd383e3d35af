"""ISTA on BatchNormalization gammas (Ye et al., ICLR 2018).

After every optimizer step each penalised gamma takes the proximal step of
the weighted lasso term `rho * sum_l lambda_l * |gamma_l|`:

    gamma <- sign(gamma) * max(|gamma| - lr * rho(step) * lambda_l, 0)

which gives exact zeros. The step runs inside the optimizer: each gamma gets
a `GammaProx` constraint (Keras optimizers apply variable constraints right
after the update, in `BaseOptimizer.apply`, before the iteration counter
moves), and the constraint reads the learning rate and `rho` at the
optimizer's current iteration in the graph. No Python runs per step (the
callback only glances at the loss for NaN), `steps_per_execution > 1` is
exact, and the only state is the optimizer's iteration count, which Keras
checkpoints anyway (`BackupAndRestore`, `.keras` files).

- `model.fit(..., callbacks=[ISTAGamma(rho)])` attaches the constraints when
  training begins, logs `gamma_zero_fraction` and `gamma_l1` each epoch, and
  removes them when training ends.
- In a custom training loop, `attach_ista(model, rho, optimizer=...)` does the
  same once; every `optimizer.apply_gradients(...)` then takes the step.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_slim.core import keras_compat
from keras_slim.sparsity import penalties
from keras_slim.sparsity import regularizers as regularizers_lib
from keras_slim.sparsity.proximal import (
    GammaProx,
    _is_schedule,
    _learning_rate,
    _rho_value,
)

__all__ = ["GammaProx", "ISTAPenalty", "attach_ista"]


class ISTAPenalty:
    """The ISTA state of a model: which gammas, their weights, `rho`.

    Made by `attach_ista`; `ISTAGamma` keeps one while training.

    Attributes:
        model: the model whose gammas are penalised.
        optimizer: the optimizer whose learning rate and step are read.
        rho: a number or a schedule of the step.
        layers: the penalised BatchNormalization layers.
        weights: dict layer name -> NumPy array of penalty weights `lambda`.
    """

    def __init__(self, model, optimizer, rho, layers, weights):
        self.model = model
        self.optimizer = optimizer
        self.rho = rho
        self.layers = layers
        self.weights = weights
        self.attached = False
        # Read inside the traced step: `detach` turns the prox off even in a
        # step traced while it was attached.
        self.active = keras.Variable(0.0, trainable=False, dtype="float32",
                                     name="ista_active")
        self.applied = False
        self._start = None
        self._warned = False

    def _inner_optimizer(self):
        return getattr(self.optimizer, "inner_optimizer", self.optimizer)

    def threshold(self, dtype="float32"):
        """`lr * rho(step)` at the optimizer's current step, as a tensor.

        With gradient accumulation the optimizer only updates the weights on
        every `gradient_accumulation_steps`-th call; the threshold is 0 on
        the others.
        """
        step = self.optimizer.iterations
        learning_rate = ops.cast(self.optimizer.learning_rate, dtype)
        if _is_schedule(self.rho):
            rho = ops.cast(self.rho(step), dtype)
        else:
            rho = ops.cast(self.rho, dtype)
        value = ops.multiply(ops.multiply(learning_rate, rho),
                             ops.cast(self.active, dtype))
        inner = self._inner_optimizer()
        accumulation = getattr(inner, "gradient_accumulation_steps", None)
        if accumulation:
            # `iterations` counts updates; `_iterations` counts calls.
            calls = keras_compat.call_count(inner, step)
            update = ops.equal(ops.mod(calls + 1, accumulation), 0)
            value = ops.where(update, value, ops.zeros_like(value))
        return value

    def current_rho(self):
        """`rho` at the optimizer's current step, as a float."""
        step = int(regularizers_lib.to_array(self.optimizer.iterations))
        return _rho_value(self.rho, step)

    def attach(self):
        """Give each penalised gamma its bound `GammaProx` constraint."""
        for layer in self.layers:
            previous = layer.gamma.constraint
            if isinstance(previous, GammaProx):
                previous = previous.previous
            constraint = GammaProx(self.weights[layer.name].tolist(), previous)
            constraint.penalty = self
            layer.gamma_constraint = constraint
            layer.gamma.constraint = constraint
        self.attached = True
        self.active.assign(1.0)
        self._start = self._step()
        _refresh_train_function(self.model)

    def _step(self):
        return int(regularizers_lib.to_array(self.optimizer.iterations))

    def check_applied(self):
        """Warn (once) when the optimizer stepped since `attach` but no step
        ever took the prox: the training step was traced (`tf.function`)
        before the constraints were attached, so it does not see them."""
        if (self.layers and self.attached and not self.applied
                and not self._warned
                and self._start is not None and self._step() > self._start):
            self._warned = True
            warnings.warn(
                f"ISTA is attached to `{self.model.name}` but the optimizer "
                f"took {self._step() - self._start} step(s) without it: the "
                "training step was traced before attach_ista, and a traced "
                "step keeps the constraints it saw. Attach first, then "
                "create (or retrace) the tf.function.",
                RuntimeWarning,
                stacklevel=3,
            )
        return self.applied

    def detach(self):
        """Remove the constraints; the gammas are no longer thresholded,
        also by a training step traced while they were attached."""
        self.check_applied()
        self.active.assign(0.0)
        for layer in self.layers:
            constraint = layer.gamma.constraint
            if isinstance(constraint, GammaProx):
                constraint.penalty = None
                layer.gamma_constraint = constraint.previous
                layer.gamma.constraint = constraint.previous
        self.attached = False
        _refresh_train_function(self.model)

    def gammas(self):
        return {
            layer.name: regularizers_lib.to_array(layer.gamma)
            for layer in self.layers
        }

    def zero_fraction(self, gammas=None):
        """Fraction of penalised gamma entries that are exactly zero."""
        self.check_applied()
        gammas = self.gammas() if gammas is None else gammas
        if not gammas:
            return 0.0
        values = np.concatenate([g.ravel() for g in gammas.values()])
        return float(np.mean(values == 0))

    def lasso(self, gammas=None):
        """The weighted lasso term `sum_l lambda_l * |gamma_l|` (no `rho`)."""
        gammas = self.gammas() if gammas is None else gammas
        return float(
            sum(
                np.sum(self.weights[name] * np.abs(g.ravel()))
                for name, g in gammas.items()
            )
        )

    def nonfinite_layers(self, gammas=None):
        """Names of penalised layers with a NaN or infinite gamma."""
        gammas = self.gammas() if gammas is None else gammas
        return [name for name, g in gammas.items() if not np.all(np.isfinite(g))]


def _refresh_train_function(model):
    # Constraints are read when the train step is traced: a traced step must
    # be rebuilt to see a change.
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def attach_ista(model, rho, penalty="memory", optimizer=None, layers=None):
    """Make every `optimizer` step also take ISTA's proximal step on gammas.

    Acts on `model` in place (it is the model being trained): each
    penalised BatchNormalization gets a `GammaProx` constraint, which the
    optimizer applies right after updating the gamma, with threshold
    `lr * rho(step) * lambda_l`. Use it in custom training loops; with
    `model.fit` use the `ISTAGamma` callback. Attach before the training
    step is traced (`tf.function`), and call `.detach()` on the result to
    stop.

    Args:
        model: a `keras.Model` with BatchNormalization layers.
        rho: the sparsity strength: a number >= 0, or a schedule of the step
            (a `keras.optimizers.schedules.LearningRateSchedule` or a
            callable on the optimizer's iteration count).
        penalty: `"memory"` (Ye et al.'s memory cost per channel, normalised
            to mean 1), `"uniform"` (1 for every gamma), or a dict of
            per-layer weights (see `keras_slim.sparsity.penalties.penalty_weights`).
        optimizer: the optimizer that trains `model`; defaults to
            `model.optimizer`.
        layers: names of the BatchNormalization layers to penalise, or
            `None` for all of them.

    Returns:
        An `ISTAPenalty` (with `.detach()`, `.zero_fraction()`, `.lasso()`).

    Raises:
        ValueError: `rho` is negative or NaN, or the model has no
            BatchNormalization with a gamma.
        TypeError: `optimizer` has no readable learning rate, or a gamma is
            not a float.

    Example:

    >>> optimizer = keras.optimizers.SGD(0.01)
    >>> ista = keras_slim.attach_ista(model, 1e-3, optimizer=optimizer)
    >>> optimizer.apply_gradients(zip(grads, model.trainable_variables))
    >>> ista.zero_fraction()
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected `model` to be a keras.Model. Received: model={model!r}"
        )
    optimizer = _optimizer_of(model, optimizer)
    step = int(regularizers_lib.to_array(optimizer.iterations))
    _rho_value(rho, step)
    chosen = _penalised_layers(model, layers)
    weights = penalties.penalty_weights(model, chosen, penalty) if chosen else {}
    ista = ISTAPenalty(model, optimizer, rho, chosen, weights)
    ista.attach()
    return ista


def _optimizer_of(model, optimizer):
    """`optimizer`, or the model's, with a readable learning rate."""
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                f"The model `{model.name}` has no optimizer: compile it or "
                "pass `optimizer`."
            )
    _learning_rate(optimizer)
    return optimizer


def _penalised_layers(model, layers):
    """The built, trainable BatchNormalization layers ISTA acts on (the
    warnings point at the caller of `attach_ista`)."""
    chosen = regularizers_lib.select_batchnorms(model, layers)
    if not chosen:
        warnings.warn(
            "No BatchNormalization layer with a gamma was selected by "
            "`layers`; ISTA does nothing.",
            stacklevel=3,
        )
    frozen = regularizers_lib.frozen_gammas(model, chosen)
    if frozen and len(frozen) == len(chosen):
        raise ValueError(
            f"The gammas of {_names(frozen)} are not trainable "
            "(`trainable=False` on the layer or a model around it), so the "
            "optimizer never updates them and ISTA would do nothing. Set "
            "`trainable = True` on them before attaching."
        )
    if frozen:
        warnings.warn(
            f"The gammas of {_names(frozen)} are not trainable "
            "(`trainable=False`); ISTA leaves them alone.",
            stacklevel=3,
        )
        chosen = [layer for layer in chosen if layer not in frozen]
    for layer in chosen:
        if not layer.built:
            raise ValueError(
                f"The BatchNormalization layer `{layer.name}` is not built; "
                "build the model before attaching ISTA."
            )
        regularizers_lib.check_gamma_dtype(layer)
    return chosen


def _names(layers):
    names = [f"`{layer.name}`" for layer in layers]
    shown = ", ".join(names[:5])
    if len(names) > 5:
        shown += f" and {len(names) - 5} more"
    return f"BatchNormalization layer(s) {shown}"

