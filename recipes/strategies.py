"""A run's tf.distribute strategy, precision and global batch.

`make_strategy` turns `--strategy` into the strategy
(`backends.make_backend` chooses between tf.distribute and
keras.distribution); `global_batch_size` checks `--batch_size` against the
replica count before anything is built.
"""

import os

import keras
from absl import logging

from recipes.lazy_tensorflow import tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored",
              "tpu")


def make_strategy(name, tpu=""):
    """The `tf.distribute.Strategy` named by `--strategy`.

    - default: the default (no-op) strategy.
    - one_device: the first GPU, or the CPU.
    - mirrored: all local GPUs, or all logical CPU devices when there is no
      GPU.
    - multi_worker_mirrored: synchronous training over the workers that
      `TF_CONFIG` lists.
    - tpu: a TPU found by `TPUClusterResolver(tpu)`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(
            gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            logging.warning("TF_CONFIG is not set: multi_worker_mirrored "
                            "runs as a single worker.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(
        f"Expected `strategy` in {STRATEGIES}. Received: strategy={name!r}"
    )


def set_precision(flags_obj):
    """The global Keras dtype policy for `--mixed_precision` (float32
    without it, also when an earlier run in the process set another)."""
    policy = "float32"
    if flags_obj.mixed_precision:
        policy = "mixed_bfloat16" if flags_obj.strategy == "tpu" else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)


def nearest_multiples(value, replicas):
    """The multiples of `replicas` just below and just above `value` (the
    lower one left out when it would be 0)."""
    lower = value // replicas * replicas
    return ([lower] if lower > 0 else []) + [lower + replicas]


def global_batch_size(batch_size, replicas, explicit, log=print):
    """The global batch a run uses: `batch_size` when it divides evenly.

    Otherwise a `--batch_size` the user gave is an error (one line naming
    the replica count and the nearest valid values), while the recipe's
    default (the paper's, such as 125) is rounded to the nearest multiple
    of the replica count (ties upwards) and the choice is logged: the
    learning rate is not changed, the batch moves by less than one example
    per replica.

    Args:
        batch_size: `--batch_size`.
        replicas: `strategy.num_replicas_in_sync`.
        explicit: whether the user set `--batch_size`.
        log: a callable taking a line.

    Returns:
        The global batch size.

    Raises:
        ValueError: `batch_size` < 1, or an explicit one that does not
            divide by `replicas`.
    """
    if batch_size < 1:
        raise ValueError(f"Expected --batch_size >= 1. Received: "
                         f"--batch_size={batch_size}")
    if batch_size % replicas == 0:
        return batch_size
    candidates = nearest_multiples(batch_size, replicas)
    if explicit:
        shown = " or ".join(str(c) for c in candidates)
        raise ValueError(
            f"--batch_size={batch_size} (global) does not divide evenly over "
            f"{replicas} replicas; use a multiple of {replicas}, e.g. "
            f"--batch_size={shown}.")
    chosen = min(candidates, key=lambda c: (abs(c - batch_size), -c))
    log(f"global batch {chosen} instead of the default --batch_size="
        f"{batch_size}, which does not divide over {replicas} replicas "
        f"({chosen // replicas} per replica; learning rate unchanged). Pass "
        f"--batch_size to choose another multiple of {replicas}.")
    return chosen
