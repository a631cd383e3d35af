"""benchmarks/peer.py builds a ResNet-50 and a MobileNetV2 in two
frameworks (benchmarks/peer_networks.py): the claim that each pair
computes the same function is checked here, so that the peer comparison
times like against like."""

import numpy as np
import pytest

pytestmark = pytest.mark.backend("tensorflow")

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def peer(benchmark_module):
    return benchmark_module("peer_networks")


def test_the_two_resnet50s_compute_the_same_function(peer):
    import keras

    keras.utils.set_random_seed(0)
    model = peer.keras_resnet50(32)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # a spread of gammas, as the benchmark sets
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(size=layer.gamma.shape))
            layer.moving_mean.assign(rng.normal(size=layer.gamma.shape) * 0.1)
    net = peer.torch_resnet50(model)
    assert peer.check_same(model, net, 32) < 1e-4
    # The check can fail: one gamma changed in PyTorch only shows.
    with torch.no_grad():
        net[0][1].weight[0] += 1.0
    assert peer.check_same(model, net, 32) > 1e-4  # the benchmark refuses
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 53  # torchvision's ResNet-50: 49 + 4 downsamples


def test_the_two_mobilenetv2s_compute_the_same_function(peer):
    import keras

    keras.utils.set_random_seed(0)
    model = peer.keras_mobilenetv2(32)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(size=layer.gamma.shape))
            layer.moving_mean.assign(rng.normal(size=layer.gamma.shape) * 0.1)
    net = peer.torch_mobilenetv2(model)
    assert peer.check_same(model, net, 32) < 1e-4
    # A depthwise kernel copied wrongly would show: change the last one's
    # centre taps in PyTorch only.
    depthwise = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)
                 and m.groups > 1]
    with torch.no_grad():
        depthwise[-1].weight[:, 0, 1, 1] += 1.0
    assert peer.check_same(model, net, 32) > 1e-4
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 52 and len(depthwise) == 17  # torchvision's
    assert sum(isinstance(m, torch.nn.ReLU6) for m in net.modules()) == 35
