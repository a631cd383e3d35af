"""`ISTAGamma`: ISTA on BatchNormalization gammas as a training callback."""

import warnings

import keras
import numpy as np

from keras_slim.core import keras_compat
from keras_slim.sparsity import regularizers as regularizers_lib
from keras_slim.sparsity.ista import attach_ista
from keras_slim.sparsity.proximal import _rho_value

__all__ = ["ISTAGamma"]


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

    keras_compat.wrap_make_train_function(model, make_train_function)


def _unguard_fit(model):
    keras_compat.restore_make_train_function(model)


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
