"""TensorBoard summaries of the stages, and progress lines with an ETA.

Every stage writes scalars to `MODEL_DIR/<stage>/tensorboard/`, as TF Model
Garden does: training stages per epoch (`loss`, `learning_rate`, and with
ISTA `rho`, `gamma_zero_fraction`, `gamma_l1`), every stage once at its end
(`accuracy`, `params`, `macs`). Only the
chief writes; other workers get a writer that does nothing. See them with
`tensorboard --logdir MODEL_DIR`: one run per stage.
"""

import os

from recipes.lazy_tensorflow import tf

# The record entries written as scalars when a stage ends (training stages
# wrote `loss` and the gamma statistics after every epoch already).
RECORD_SCALARS = ("accuracy", "params", "macs")


def stage_writer(directory, chief):
    """A `tf.summary` writer for the stage folder `directory` (the chief's),
    or a no-op writer on other workers."""
    if not chief:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(os.path.join(directory, "tensorboard"))


def _scalar_metadata():
    # What `tf.summary.scalar` writes (TensorBoard's scalars plugin), built
    # here because `tf.summary.scalar` needs the `tensorboard` package, which
    # TensorFlow 2.21 no longer installs; viewing needs it, writing does not.
    plugin = tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    return tf.compat.v1.SummaryMetadata(
        plugin_data=plugin).SerializeToString()


def write_scalars(writer, values, step):
    """Write every float or int of `values` (a dict) at `step` as a
    TensorBoard scalar; flush."""
    metadata = _scalar_metadata()
    with writer.as_default():
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                tf.summary.write(name, tf.constant(float(value), tf.float32),
                                 step=int(step), metadata=metadata)
    writer.flush()


def read_scalars(directory):
    """`{tag: [(step, value), ...]}` of the event files in `directory` (for
    tests and scripts that check what was written)."""
    import glob

    import numpy as np

    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(np.frombuffer(value.tensor.tensor_content,
                                             np.float32)[0])
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def write_record(directory, chief, record):
    """The end-of-stage scalars of `record` (see `RECORD_SCALARS`), at the
    stage's last step."""
    writer = stage_writer(directory, chief)
    values = {k: record[k] for k in RECORD_SCALARS
              if record.get(k) is not None}
    write_scalars(writer, values, record.get("steps") or 0)
    writer.close()


def schedule_value(value, step):
    """A float, or a Keras schedule evaluated at `step`, as a float."""
    if callable(value):
        value = value(step)
    return float(value)


def format_seconds(seconds):
    """`h:mm:ss` (or `m:ss` below an hour)."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def eta(seconds_so_far, done, total):
    """Time left after `done` of `total` equal units took `seconds_so_far`."""
    if done <= 0:
        return "?"
    return format_seconds(seconds_so_far / done * (total - done))
