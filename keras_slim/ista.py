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

import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_slim import penalties
from keras_slim import regularizers as regularizers_lib


def _checked_weight(weight):
    if isinstance(weight, numbers.Real) and not isinstance(weight, bool):
        values = np.asarray([float(weight)])
        result = float(weight)
    else:
        values = np.asarray(weight, dtype="float64").ravel()
        result = [float(v) for v in values]
    if np.any(np.isnan(values)) or np.any(values < 0):
        raise ValueError(
            "Expected `weight` to be a number >= 0 or a list of them. "
            f"Received: weight={weight!r}"
        )
    return result


@keras.saving.register_keras_serializable(package="keras_slim")
class GammaProx(keras.constraints.Constraint):
    """Soft-thresholding constraint for a BatchNormalization gamma.

    Returns `sign(w) * max(|w| - threshold * weight, 0)` where `threshold`
    is `lr * rho(step)` of the `ISTAPenalty` it is bound to (`attach_ista`
    and `ISTAGamma` bind it). An unbound `GammaProx`, for example one
    restored by `keras.models.load_model`, leaves the gamma unchanged until
    `ISTAGamma` or `attach_ista` binds it again.

    Args:
        weight: the penalty weight `lambda` of this gamma, a number or a
            list with one number per gamma entry.
        previous: a constraint the gamma had before, applied first.
    """

    def __init__(self, weight=1.0, previous=None):
        self.weight = _checked_weight(weight)
        self.previous = keras.constraints.get(previous)
        self.penalty = None

    def __call__(self, w):
        if self.previous is not None:
            w = self.previous(w)
        if self.penalty is None:
            return w
        self.penalty.applied = True  # traced or run: the step takes it
        threshold = ops.multiply(
            self.penalty.threshold(w.dtype),
            ops.convert_to_tensor(np.asarray(self.weight), dtype=w.dtype),
        )
        shrunk = ops.maximum(ops.subtract(ops.abs(w), threshold), 0)
        return ops.multiply(ops.sign(w), shrunk)

    def get_config(self):
        previous = None
        if self.previous is not None:
            previous = keras.constraints.serialize(self.previous)
        return {"weight": self.weight, "previous": previous}


def _is_schedule(rho):
    return isinstance(
        rho, keras.optimizers.schedules.LearningRateSchedule
    ) or callable(rho)


def _rho_value(rho, step):
    """`rho` at `step` as a float, checked to be finite and >= 0."""
    if not _is_schedule(rho):
        return regularizers_lib.check_penalty(rho, "rho")
    try:
        value = float(ops.convert_to_numpy(rho(ops.convert_to_tensor(step))))
    except Exception as error:
        raise TypeError(
            "Expected `rho` to be a number or a schedule of the step "
            "(callable on an integer tensor, returning a number). "
            f"Calling it at step {step} failed: {error}"
        ) from error
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(
            f"Expected `rho` to be finite and >= 0 at every step. "
            f"Received: rho({step})={value!r}"
        )
    return value


def _learning_rate(optimizer):
    """The current learning rate of `optimizer` as a float, or a clear error."""
    try:
        value = float(regularizers_lib.to_array(optimizer.learning_rate))
    except Exception as error:
        raise TypeError(
            "ISTA needs the optimizer's current learning rate. Expected "
            "`optimizer` to be a Keras optimizer with a readable "
            f"`learning_rate`. Received: optimizer={optimizer!r}"
        ) from error
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"Expected the learning rate of `optimizer` to be >= 0. "
            f"Received: learning_rate={value!r}"
        )
    return value


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
            calls = getattr(inner, "_iterations", step)
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
            per-layer weights (see `keras_slim.penalties.penalty_weights`).
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
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                f"The model `{model.name}` has no optimizer: compile it or "
                "pass `optimizer`."
            )
    _learning_rate(optimizer)
    step = int(regularizers_lib.to_array(optimizer.iterations))
    _rho_value(rho, step)
    chosen = regularizers_lib.select_batchnorms(model, layers)
    if not chosen:
        warnings.warn(
            "No BatchNormalization layer with a gamma was selected by "
            "`layers`; ISTA does nothing.",
            stacklevel=2,
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
            stacklevel=2,
        )
        chosen = [layer for layer in chosen if layer not in frozen]
    for layer in chosen:
        if not layer.built:
            raise ValueError(
                f"The BatchNormalization layer `{layer.name}` is not built; "
                "build the model before attaching ISTA."
            )
        regularizers_lib.check_gamma_dtype(layer)
    weights = penalties.penalty_weights(model, chosen, penalty) if chosen else {}
    ista = ISTAPenalty(model, optimizer, rho, chosen, weights)
    ista.attach()
    return ista


def _names(layers):
    names = [f"`{layer.name}`" for layer in layers]
    shown = ", ".join(names[:5])
    if len(names) > 5:
        shown += f" and {len(names) - 5} more"
    return f"BatchNormalization layer(s) {shown}"


def _guard_fit(model, ista):
    """Make the next `fit` of `model` drop `ista` unless it ends normally.

    A `fit` interrupted by an exception never calls `on_train_end`, so the
    constraints would stay bound and a later plain `fit` would keep
    shrinking gammas. `fit` calls `make_train_function()` (without `force`)
    before `on_train_begin`; this wrapper detaches a stale `ista` there.
    """
    original = type(model).make_train_function

    def make_train_function(force=False):
        if not force and ista.attached:
            warnings.warn(
                f"An earlier fit of `{model.name}` with ISTAGamma ended "
                "without on_train_end (interrupted); its ISTA constraints "
                "are removed so that this fit does not shrink the gammas.",
                RuntimeWarning,
                stacklevel=2,
            )
            ista.detach()
            _unguard_fit(model)
        return original(model, force)

    object.__setattr__(model, "make_train_function", make_train_function)


def _unguard_fit(model):
    model.__dict__.pop("make_train_function", None)


class ISTAGamma(keras.callbacks.Callback):
    """Train with ISTA on BatchNormalization gammas (Ye et al., ICLR 2018).

    When training begins, attaches `GammaProx` constraints to the gammas
    (see `attach_ista`), so that every optimizer step inside the compiled
    train step is followed by `gamma <- sign(gamma) * max(|gamma| - lr *
    rho(step) * lambda_l, 0)`; removes them when training ends. Each epoch
    it adds to `logs` `gamma_zero_fraction` (exact zeros among the
    penalised gammas) and `gamma_l1` (the weighted lasso term
    `sum_l lambda_l * |gamma_l|`, without `rho`); list it before `CSVLogger`
    or `TensorBoard` so they see them. A NaN or infinite gamma stops the
    run with a warning naming the layers.

    With `stop_when_converged=True` training ends, as in the paper, once
    the task loss, `gamma_l1` and `gamma_zero_fraction` have all plateaued:
    over the last `patience` epochs, with `rho` unchanged, the loss and
    `gamma_l1` moved by at most `min_delta` relative to their values
    `patience` epochs ago and the zero fraction by at most `min_delta`.

    Args:
        rho: the sparsity strength, a number >= 0 or a schedule of the step
            (`keras.optimizers.schedules.LearningRateSchedule` or a
            callable on the optimizer's iteration count). The paper uses
            0.001 to 0.01 with SGD; pick it so that `rho * gamma_l1` is
            comparable with the task loss at the start.
        penalty: `"memory"` (default), `"uniform"` or a dict of per-layer
            weights; see `attach_ista`.
        layers: names of the BatchNormalization layers to penalise, or
            `None` for all of them.
        stop_when_converged: stop training when the three quantities
            plateau.
        patience: number of epochs over which a plateau is judged.
        min_delta: the largest change that still counts as a plateau.

    Raises:
        ValueError: bad `rho`, `patience` or `min_delta` (at construction),
            or a model without BatchNormalization (when training begins).
        TypeError: an optimizer without a readable learning rate (when
            training begins).

    Example:

    >>> # The paper's ResNet-20 warm-up: rho 0.001 for 30k steps, then 0.005.
    >>> rho = keras.optimizers.schedules.PiecewiseConstantDecay(
    ...     [30_000], [0.001, 0.005])
    >>> model.fit(x, y, epochs=30, callbacks=[
    ...     keras_slim.ISTAGamma(rho), keras.callbacks.CSVLogger("log.csv")])
    """

    async_safe = True  # its batch hook only reads

    def __init__(
        self,
        rho,
        penalty="memory",
        layers=None,
        stop_when_converged=False,
        patience=5,
        min_delta=0.01,
    ):
        super().__init__()
        _rho_value(rho, 0)
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(
                "Expected `patience` to be an integer >= 1. "
                f"Received: patience={patience!r}"
            )
        self.rho = rho
        self.penalty = penalty
        self.layers = layers
        self.stop_when_converged = bool(stop_when_converged)
        self.patience = patience
        self.min_delta = regularizers_lib.check_penalty(min_delta, "min_delta")
        self.ista = None
        self.history = []
        self.stopped_reason = None

    def on_train_begin(self, logs=None):
        self.ista = attach_ista(
            self.model, self.rho, penalty=self.penalty, layers=self.layers
        )
        _guard_fit(self.model, self.ista)
        self.history = []
        self.stopped_reason = None

    def _stop_on_nonfinite(self, gammas=None):
        bad = self.ista.nonfinite_layers(gammas)
        if bad and self.stopped_reason is None:
            self.stopped_reason = (
                f"ISTAGamma: NaN or infinite gammas in layers {bad}; training "
                "stopped. Lower the learning rate or `rho`."
            )
            warnings.warn(self.stopped_reason, RuntimeWarning, stacklevel=2)
        if bad:
            self.model.stop_training = True
        return bool(bad)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        # A NaN gamma makes the loss NaN; only then are the gammas read.
        if loss is not None and not np.all(np.isfinite(np.asarray(loss))):
            try:
                self._stop_on_nonfinite()
            except (TypeError, ValueError):
                # Keras on JAX holds no variable values inside an epoch for
                # an async-safe callback: stop here, and name the layers at
                # the epoch's end, where the state is synced.
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.ista is None:
            return
        gammas = self.ista.gammas()
        if self._stop_on_nonfinite(gammas):
            return
        record = {
            "gamma_zero_fraction": self.ista.zero_fraction(gammas),
            "gamma_l1": self.ista.lasso(gammas),
        }
        if logs is not None:
            logs.update(record)
        record["loss"] = (logs or {}).get("loss")
        record["rho"] = self.ista.current_rho()
        self.history.append(record)
        if self.stop_when_converged and self._converged():
            self.stopped_reason = (
                f"ISTAGamma: loss, gamma_l1 and gamma_zero_fraction plateaued "
                f"over {self.patience} epochs; training stopped at epoch "
                f"{epoch + 1}."
            )
            self.model.stop_training = True

    def _converged(self):
        if len(self.history) <= self.patience:
            return False
        now, then = self.history[-1], self.history[-1 - self.patience]
        window = self.history[-1 - self.patience :]
        if any(r["rho"] != now["rho"] for r in window):
            return False
        if now["loss"] is None:
            return False
        for key in ("loss", "gamma_l1"):
            scale = max(abs(float(then[key])), 1e-12)
            if abs(float(now[key]) - float(then[key])) > self.min_delta * scale:
                return False
        change = abs(now["gamma_zero_fraction"] - then["gamma_zero_fraction"])
        return change <= self.min_delta

    def on_train_end(self, logs=None):
        if self.ista is not None:
            _unguard_fit(self.model)
            self.ista.detach()
