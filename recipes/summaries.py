"""TensorBoard summaries of the stages, and progress lines with an ETA.

Every stage writes scalars to `MODEL_DIR/<stage>/tensorboard/`, as TF Model
Garden does: training stages per epoch (`loss`, `learning_rate`, and with
ISTA `rho`, `gamma_zero_fraction`, `gamma_l1`), every stage once at its end
(`accuracy`, `params`, `macs`). Only the
chief writes; other workers get a writer that does nothing. See them with
`tensorboard --logdir MODEL_DIR`: one run per stage.

The event files are written here in plain Python (`EventWriter`), in the
format `tf.summary.write` produces for a scalar (a TFRecord of `Event`
protocol buffers holding a float32 tensor and the scalars plugin's
metadata), so every backend writes them without TensorFlow; viewing them
needs the `tensorboard` package only.
"""

import itertools
import os
import socket
import struct
import time

# The record entries written as scalars when a stage ends (training stages
# wrote `loss` and the gamma statistics after every epoch already).
RECORD_SCALARS = ("accuracy", "params", "macs")


# -- the event file format ------------------------------------------------------


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """The CRC-32C (Castagnoli) checksum of `data`, as TFRecord uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data):
    """`data` framed as one TFRecord: length, its checksum, data, checksum."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length)) + data
            + struct.pack("<I", _masked_crc(data)))


def _varint(value):
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protocol buffer field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# tensorflow.Summary.Value.metadata: SummaryMetadata{plugin_data{plugin_name}}
_SCALAR_METADATA = _field(9, _field(1, _field(1, b"scalars")))


def scalar_event(tag, value, step, wall_time):
    """The serialized `tensorflow.Event` of one scalar summary."""
    tensor = (_varint(1 << 3) + _varint(1)  # dtype: DT_FLOAT
              + _field(2, b"")  # tensor_shape: a scalar
              + _field(4, struct.pack("<f", value)))  # tensor_content
    summary_value = _field(1, tag.encode()) + _field(8, tensor) + _SCALAR_METADATA
    return (_varint(1 << 3 | 1) + struct.pack("<d", wall_time)  # wall_time
            + _varint(2 << 3) + _varint(int(step))  # step
            + _field(5, _field(1, summary_value)))  # summary.value


def _version_event(wall_time):
    return (_varint(1 << 3 | 1) + struct.pack("<d", wall_time)
            + _field(3, b"brain.Event:2"))  # file_version


_FILE_NUMBERS = itertools.count()


class EventWriter:
    """Appends scalar summaries to a new TensorBoard event file in
    `directory` (made if missing)."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        now = time.time()
        name = (f"events.out.tfevents.{int(now)}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_FILE_NUMBERS)}.v2")
        self.path = os.path.join(directory, name)
        self._file = open(self.path, "wb")
        self._file.write(tfrecord(_version_event(now)))

    def write(self, tag, value, step):
        self._file.write(tfrecord(scalar_event(tag, float(value), step,
                                               time.time())))

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


class NoOpWriter:
    """The writer of a worker that is not the chief: writes nothing."""

    def write(self, tag, value, step):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def stage_writer(directory, chief):
    """An event writer for the stage folder `directory` (the chief's), or a
    no-op writer on other workers."""
    if not chief:
        return NoOpWriter()
    return EventWriter(os.path.join(directory, "tensorboard"))


def write_scalars(writer, values, step):
    """Write every float or int of `values` (a dict) at `step` as a
    TensorBoard scalar; flush."""
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.write(name, value, step)
    writer.flush()


def read_scalars(directory):
    """`{tag: [(step, value), ...]}` of the event files in `directory`, read
    with TensorFlow's own parsers (for tests and scripts that check what
    was written)."""
    import glob

    import numpy as np
    import tensorflow as tf

    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(np.frombuffer(value.tensor.tensor_content,
                                             np.float32)[0])
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def write_epoch(writer, steps_per_epoch, epoch, logs, learning_rate, rho=None):
    """The scalars of a training epoch (0-based `epoch`) at its last step:
    `loss`, `learning_rate` and, with ISTA (`rho` given), `rho`,
    `gamma_zero_fraction` and `gamma_l1` from `logs`."""
    step = (epoch + 1) * steps_per_epoch
    values = {"loss": float(logs["loss"]),
              "learning_rate": schedule_value(learning_rate, step - 1)}
    if rho is not None:
        values.update(rho=schedule_value(rho, step - 1),
                      gamma_zero_fraction=float(logs["gamma_zero_fraction"]),
                      gamma_l1=float(logs["gamma_l1"]))
    write_scalars(writer, values, step)


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
