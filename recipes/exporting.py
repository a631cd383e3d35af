"""The export stage: a SavedModel and a TFLite file, each checked against
Keras by `keras_slim.deploy.export` (the library's one export path)."""

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
    """The export stage on the run's backend: a SavedModel and a TFLite file
    under tf.distribute (chief only), a TFLite file under
    keras.distribution, each written by `keras_slim.export`, which checks it
    against Keras on 16 inputs (1e-4 of the output range) and raises if
    they differ.

    `accuracy` (the exported model's, from the stage that trained it) is
    copied into the record.
    """
    return run.backend.export(run, model, directory, accuracy)
