"""`quiet_start`: TensorFlow's start-up lines held to TF_CPP_MIN_LOG_LEVEL,
everything else written to stderr kept."""

import os
import subprocess
import sys

import keras
import pytest

from keras_slim import _start

LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n",
    "I0000 00:00:17.86 123 port.cc:153] oneDNN custom operations are on.\n",
    "W0000 00:00:17.87 123 cudart_stub.cc:31] Could not find cuda drivers\n",
    "I0000 00:00:17.88 123 cpu_feature_guard.cc:210] This binary is optimized"
    "\n",
    "To enable the following instructions: AVX2, rebuild TensorFlow.\n",
    "E0000 00:00:17.88 123 some.cc:1] a real error\n",
    "app.py:3: UserWarning: a warning of the user's own\n",
]


def _native_writes(monkeypatch, level):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", str(level))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    with _start.quiet_start():
        for line in LINES:
            os.write(2, line.encode())  # as native code writes, past Python


def test_lines_below_the_level_are_dropped(monkeypatch, capfd):
    _native_writes(monkeypatch, 3)
    assert capfd.readouterr().err == LINES[-1]
    _native_writes(monkeypatch, 2)
    assert capfd.readouterr().err == "".join(LINES[5:])
    _native_writes(monkeypatch, 1)
    assert capfd.readouterr().err == LINES[2] + "".join(LINES[5:])


def test_level_zero_keeps_everything(monkeypatch, capfd):
    _native_writes(monkeypatch, 0)
    assert capfd.readouterr().err == "".join(LINES)


def test_the_keras_slim_command_starts_quiet(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/keras-slim", "inspect"])
    assert _start._level() == 3
    monkeypatch.setattr(sys, "argv", ["python"])
    assert _start._level() == 0


def _help_stderr(*command):
    """stderr of a script's `--help`, TensorFlow's level left unset."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, *command, "--help"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    # absl's --help exits with 1, argparse's with 0
    assert done.returncode in (0, 1) and "--help" in done.stdout \
        and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_recipes_and_benchmarks_start_quiet():
    """A recipe (as a file and as a module) and a benchmark print none of
    TensorFlow's start-up lines: each imports keras_slim before Keras."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the start-up lines are TensorFlow's")
    for command in (["studies/fashion_mnist/study.py"],
                    ["-m", "recipes.resnet20_cifar10"],
                    ["benchmarks/latency.py"]):
        err = _help_stderr(*command)
        assert "absl::InitializeLog" not in err and "I0000" not in err, (
            command, err)
