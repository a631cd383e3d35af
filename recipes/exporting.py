"""The export stage: a SavedModel and a TFLite file, each checked against
Keras by `keras_slim.deploy.export` (the library's one export path)."""

import os

from keras_slim.core import copying
from keras_slim.core.counting import count_macs, count_params


def describe(model):
    """`params` and `macs` of a model."""
    return {"params": count_params(model), "macs": count_macs(model)}


def float32_copy(model):
    """A float32 copy of a (possibly mixed-precision) model, for export."""

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    return copying.clone_model(model, clone_function=clone)


def export(run, model, directory, accuracy=None):
    """Write the model as a SavedModel and a TFLite file (chief only), with
    `keras_slim.deploy.export`, which checks each against Keras on 16 inputs (1e-4
    of the output range) and raises if they differ.

    `accuracy` (the exported model's, from the stage that trained it) is
    copied into the record.
    """
    from keras_slim.deploy.export import export as export_model

    record = {**describe(model), "accuracy": accuracy}
    if not run.chief:
        return None, record
    model = float32_copy(model)
    saved = export_model(model, os.path.join(directory, "saved_model"),
                         format="saved_model")
    tflite = export_model(model, os.path.join(directory, "model.tflite"))
    record.update(saved_model="saved_model", tflite="model.tflite",
                  tflite_bytes=tflite.size_bytes,
                  tflite_relative_difference=tflite.relative_difference,
                  saved_model_relative_difference=saved.relative_difference)
    return None, record
