"""A fast smoke run of the `make demo` job (the full run takes ~1 minute)."""

import keras
import numpy as np

from examples import demo
from examples.digits import load_digits


def test_digits_are_stratified_images():
    (x_train, y_train), (x_test, y_test) = load_digits(test_size=0.25)
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    train_share = np.bincount(y_train) / len(y_train)
    test_share = np.bincount(y_test) / len(y_test)
    assert np.max(np.abs(train_share - test_share)) < 0.01


def test_model_uses_batchnorm_momentum_0_9():
    model = demo.build_model((4, 4, 4))
    momenta = [layer.momentum for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization)]
    assert momenta == [0.9, 0.9, 0.9]


def test_demo_pipeline_runs_end_to_end(tmp_path, capsys):
    (x_train, y_train), (x_test, y_test) = load_digits()
    data = ((x_train[:256], y_train[:256]), (x_test[:100], y_test[:100]))
    config = demo.Config(
        widths=(8, 8, 8), dense_epochs=2, ista_epochs=3, rho=20.0,
        fine_tune_epochs=1, latency_runs=5, out=str(tmp_path), verbose=0,
    )
    result = demo.run(config, data=data)
    printed = capsys.readouterr().out
    dense, slim = result["dense"], result["slim"]
    # A strong rho zeroes gammas, so channels are cut.
    assert result["zero_fraction"] > 0 and result["plan"].kept
    assert slim["params"] < dense["params"] and slim["macs"] < dense["macs"]
    for numbers in (dense, slim):
        assert 0.0 <= numbers["accuracy"] <= 1.0
        assert numbers["latency_ms"] > 0 and numbers["size"] > 0
    for name in ("dense.keras", "sparse.keras", "slim.keras", "dense.tflite",
                 "slim.tflite",
                 "report.html", "report_widths.png"):
        assert (tmp_path / name).is_file(), name
    # One table, with every row the issue asks for, and the report's path.
    for label in ("params", "MACs", "test accuracy", "TFLite latency"):
        assert label in result["table"]
    assert result["table"] in printed
    assert f"Report: {result['report']}" in printed
