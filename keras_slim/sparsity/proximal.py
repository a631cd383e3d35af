"""`GammaProx`: the proximal step of ISTA as a Keras constraint on a gamma.

See `keras_slim.sparsity.ista` for how the step runs inside the optimizer."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_slim.sparsity import regularizers as regularizers_lib

__all__ = ["GammaProx"]


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
