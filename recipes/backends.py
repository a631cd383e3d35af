"""The one place that chooses how a run trains.

A `tf.distribute` strategy under the TensorFlow backend
(`tf_distribute.TFDistribute`), `keras.distribution` under JAX or PyTorch
(`data_parallel.KerasDistribution`).
"""

import keras

__all__ = ["make_backend"]


def make_backend(flags_obj, strategy_override=None, log=print):
    """The training backend of a run, chosen once from the Keras backend.

    Both kinds have the same interface: `replicas`, `chief`, `summary`
    (entries of summary.json), `describe(batch, steps)`, `datasets(...)`,
    `train(...)`, `evaluate(run, model)` and `export(...)`.

    Args:
        flags_obj: the parsed flags.
        strategy_override: a `tf.distribute.Strategy` used instead of
            `--strategy` (TensorFlow backend only).
        log: a callable taking a line.
    """
    if keras.backend.backend() == "tensorflow":
        from recipes.tf_distribute import TFDistribute

        return TFDistribute(flags_obj, strategy_override, log)
    if strategy_override is not None:
        raise ValueError("Expected `strategy_override=None` off the TensorFlow "
                         "backend (a tf.distribute strategy). Received: "
                         f"strategy_override={strategy_override!r} under "
                         f"KERAS_BACKEND={keras.backend.backend()}")
    from recipes.data_parallel import KerasDistribution

    return KerasDistribution(flags_obj, log)
