"""The ResNet-20 recipe under MultiWorkerMirroredStrategy: two worker
processes on 127.0.0.1, each with its own TF_CONFIG, bounded in time."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420


def _free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("multiworker"))
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    argv = [sys.executable, "-m", "recipes.resnet20_cifar10",
            "--strategy=multi_worker_mirrored", "--dataset=synthetic",
            f"--model_dir={model_dir}", "--models=a", "--rho=5",
            "--rho_warmup_steps=0", "--base_epochs=0", "--epochs=1",
            "--finetune_epochs=1", "--steps_per_epoch=2", "--batch_size=8",
            "--synthetic_examples=16"]
    processes, logs = [], []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {
                       "type": "worker", "index": index}}))
        log = open(os.path.join(model_dir, f"../worker{index}.log"), "w+")
        logs.append(log)
        processes.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT))
    deadline = time.time() + TIMEOUT
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed or time.time() > deadline:
                break
            time.sleep(1)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n----\n".join(
        o[-3000:] for o in outputs)
    return model_dir, outputs


def test_two_workers_write_one_summary(workers):
    model_dir, outputs = workers
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    assert summary["strategy"] == "multi_worker_mirrored"
    assert summary["replicas"] == 2
    names = [s["name"] for s in summary["stages"]]
    assert names == ["sparse-train-a", "slim-a", "fine-tune-a", "export"]
    sparse, slim = summary["stages"][0], summary["stages"][1]
    assert 0 < slim["params"] < sparse["params"]
    assert 0 < sparse["gamma_zero_fraction"] < 1
    assert all("replicas=2" in output for output in outputs)


def test_only_the_chief_keeps_outputs(workers):
    model_dir, _ = workers
    for stage in ("sparse-train-a", "fine-tune-a"):
        folder = os.path.join(model_dir, stage)
        assert os.path.isfile(os.path.join(folder, "model.keras"))
        entries = os.listdir(os.path.join(folder, "checkpoints"))
        assert "checkpoint" in entries
        assert not [e for e in entries if e.startswith(".worker")]
        assert not [e for e in os.listdir(folder) if e.startswith(".worker")]
    export = os.path.join(model_dir, "export")
    assert os.path.getsize(os.path.join(export, "model.tflite")) > 0
