"""`keras-slim` checks every path and value before any work, keeps the
cause of a load error, passes --fold/--verify on, reaches users' modules
with --import, and answers --help without starting TensorFlow.

In process (`cli.main`), except the --help check, which needs a fresh
interpreter.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_slim.planners import methods
from keras_slim.tools import cli, pruning
from tests.test_one_knob import outputs, same_padded

# The CLI loads and saves under TensorFlow.
pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("checks") / "model.keras"
    same_padded().save(path)
    return path


def run(argv, capsys):
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip()


def one_line_error(status, err, *snippets):
    assert status == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-slim: error:"), err
    for snippet in snippets:
        assert snippet in lines[0], lines[0]


def links(tmp_path, target, *names):
    """Symbolic and hard links to `target` under `names`."""
    made = []
    for name in names:
        link = tmp_path / name
        if name.startswith("hard"):
            os.link(target, link)
        else:
            os.symlink(target, link)
        made.append(link)
    return made


PRUNE = ["--method", "global_gamma", "--ratio", "0.5"]


def test_no_output_replaces_the_input_or_another_output(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not even a model")  # checked before it is loaded
    original = model.read_bytes()
    sym, hard = links(tmp_path, model, "link.keras", "hard.keras")
    out = tmp_path / "slim.keras"
    out.write_bytes(b"earlier")
    plan_link, = links(tmp_path, out, "plan.json")
    for argv, snippets in (
            (["-o", sym], ["-o must differ from MODEL", "links"]),
            (["-o", hard], ["-o must differ from MODEL"]),
            (["-o", model], ["-o must differ from MODEL"]),
            (["-o", out, "--plan", model], ["--plan", ".json", "model.keras"]),
            (["-o", out, "--plan", plan_link], ["-o must differ from --plan"]),
            (["-o", out, "--plan", tmp_path / "t.json", "--table",
              tmp_path / "t.json"], ["--plan must differ from --table"])):
        status, printed, err = run(["prune", model, *PRUNE, *argv], capsys)
        one_line_error(status, err, *snippets)
        assert printed == ""  # nothing loaded, nothing written
    assert model.read_bytes() == original and out.read_bytes() == b"earlier"
    # A report's PNG given as a link to the model.
    gammas, = links(tmp_path, model, "page_gammas.png")
    status, _, err = run(["prune", model, *PRUNE, "-o", out, "--report",
                          tmp_path / "page.html"], capsys)
    one_line_error(status, err, "--report must differ from MODEL")
    # inspect --plot and export -o, as links to the model.
    plot, tflite = links(tmp_path, model, "plot.png", "x.tflite")
    status, _, err = run(["inspect", model, "--plot", plot], capsys)
    one_line_error(status, err, "--plot must differ from MODEL")
    status, _, err = run(["export", model, "-o", tflite], capsys)
    one_line_error(status, err, "-o must differ from MODEL")
    status, _, err = run(["export", model, "-o", tmp_path, "--format",
                          "saved_model"], capsys)
    one_line_error(status, err, "MODEL", "inside the folder -o")
    assert model.read_bytes() == original and gammas.read_bytes() == original


def test_plan_and_model_land_apart(model_path, tmp_path, capsys):
    out, plan = tmp_path / "slim.keras", tmp_path / "plan.json"
    status, printed, err = run(["prune", model_path, *PRUNE, "-o", out,
                                "--plan", plan], capsys)
    assert status == 0, err
    assert keras.saving.load_model(out).count_params() > 0
    assert '"kept"' in plan.read_text()
    assert sorted(os.listdir(tmp_path)) == ["plan.json", "slim.keras"]


@pytest.mark.parametrize("argv, snippets", [
    (["--target-latency=-8ms"], ["--target-latency", "-8ms"]),
    (["--target-latency", "-0.5"], ["--target-latency", "-0.5"]),
    (["--target-macs", "-1"], ["--target-macs", "-1"]),
    (["--target-params", "nan"], ["--target-params", "nan"]),
    (["--target-latency", "8ms", "--threads", "0"], ["--threads >= 1"]),
    (["--target-latency", "8ms", "--runs", "0"], ["--runs >= 1"]),
    (["--target-macs", "0.5", "--round-to", "0"], ["--round-to >= 1"]),
    (["--target-macs", "0.5", "--ratio", "0.5"], ["--ratio"]),
])
def test_values_are_checked_before_loading(tmp_path, capsys, argv, snippets):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not a model: loading it would fail otherwise")
    status, printed, err = run(["prune", model, *argv, "-o",
                                tmp_path / "slim.keras"], capsys)
    one_line_error(status, err, *snippets)
    assert printed == "" and os.listdir(tmp_path) == ["model.keras"]


def test_fold_and_verify_reach_slim_model(model_path, tmp_path, capsys):
    model = keras.saving.load_model(model_path)
    got = {}
    for fold in ("exact", "bias"):
        out = tmp_path / f"{fold}.keras"
        status, printed, err = run(["prune", model_path, *PRUNE, "--fold",
                                    fold, "-o", out], capsys)
        assert status == 0, err
        got[fold] = outputs(keras.saving.load_model(out))
        want = pruning.prune(model, "global_gamma", ratio=0.5, fold=fold)
        np.testing.assert_allclose(got[fold], outputs(want), rtol=1e-6,
                                   atol=1e-7)
    assert not np.allclose(got["exact"], got["bias"], rtol=1e-3)
    status, printed, err = run(["prune", model_path, *PRUNE, "--fold",
                                "exact", "--verify", "-o", tmp_path / "v.keras"],
                               capsys)
    assert status == 0 and "verified" in printed, err
    out = tmp_path / "refused.keras"
    status, printed, err = run(["prune", model_path, *PRUNE, "--fold",
                                "bias", "--verify", "-o", out], capsys)
    one_line_error(status, err, "layer")
    assert not out.exists()  # a refused model is not written
    status, _, err = run(["prune", model_path, *PRUNE, "--fold", "carrier",
                          "-o", out], capsys)
    assert status == 2 and "--fold" in err


EXTENSION = '''
import keras
import keras_slim


@keras.saving.register_keras_serializable(package="cli_checks")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


@keras_slim.register_method("first_half")
def plan_first_half(model, ratio, **options):
    """Keep the first channels of every group."""
    return keras_slim.plan_uniform(model, ratio, score="l1", **options)
'''


def test_import_brings_layers_and_methods(tmp_path, capsys, monkeypatch):
    objects = keras.saving.get_custom_objects()
    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "cli_checks_extension.py").write_text(EXTENSION)
    monkeypatch.delitem(sys.modules, "cli_checks_extension", raising=False)
    # A model with the extension's layer, saved while it was registered.
    import cli_checks_extension

    x = inputs = keras.Input((6, 6, 2))
    x = cli_checks_extension.Doubling(name="double")(x)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(3, 1, name="last")(x)
    path = tmp_path / "custom.keras"
    keras.Model(inputs, x).save(path)
    monkeypatch.delitem(objects, "cli_checks>Doubling")
    monkeypatch.delitem(sys.modules, "cli_checks_extension")
    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))
    methods.METHODS.pop("first_half")

    out = tmp_path / "slim.keras"
    argv = ["prune", path, "--method", "first_half", "--ratio", "0.5", "-o",
            out]
    status, _, err = run(argv, capsys)
    assert status == 2 and "first_half" in err  # unknown without --import
    status, _, err = run(["inspect", path], capsys)
    # The cause is kept, with the way out.
    one_line_error(status, err, "Could not locate class 'Doubling'",
                   "--import MODULE")
    status, printed, err = run(["--import", "cli_checks_extension", *argv],
                               capsys)
    assert status == 0, err
    assert "first_half" in printed
    assert keras.saving.load_model(out).get_layer("conv").filters == 2
    status, _, err = run(["inspect", path, "--import", "no_such_module_x"],
                         capsys)
    one_line_error(status, err, "--import no_such_module_x")


def test_help_and_version_do_not_start_tensorflow():
    """The console script's --help and --version import no Keras."""
    code = (
        "import sys\n"
        "sys.argv[0] = 'keras-slim'\n"
        "from keras_slim.tools import cli\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code == 0, exit_.code\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch')\n"
        "             if m in sys.modules))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "COMMAND" in done.stdout and "keras-slim 0.1.0" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
