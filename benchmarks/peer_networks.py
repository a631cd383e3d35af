"""The networks `benchmarks/peer.py` builds in two frameworks.

Each is written in Keras and in PyTorch in torchvision's layout (its
strides, its symmetric padding as a `ZeroPadding2D` before a "valid"
convolution, BatchNormalization epsilon 1e-5), the Keras weights copied
into the PyTorch model; `check_same` compares their logits and
`tests/test_peer_benchmark.py` checks both pairs. Names follow
torchvision's, "." written "_".
"""

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

L = keras.layers
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


# -- ResNet-50 ------------------------------------------------------------------


def _conv_bn(x, filters, kernel, stride, name, relu=True):
    pad = kernel // 2
    if pad:
        x = L.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = L.Conv2D(filters, kernel, strides=stride, use_bias=False,
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def keras_resnet50(size):
    inputs = keras.Input((size, size, 3))
    x = _conv_bn(inputs, 64, 7, 2, "stem")
    x = L.ZeroPadding2D(1)(x)  # after a ReLU: zeros pad a max like -inf
    x = L.MaxPooling2D(3, 2)(x)
    width = 64
    for stage, (planes, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            name = f"layer{stage}_{block}"
            s = stride if block == 0 else 1
            y = _conv_bn(x, planes, 1, 1, f"{name}_1")
            y = _conv_bn(y, planes, 3, s, f"{name}_2")
            y = _conv_bn(y, planes * 4, 1, 1, f"{name}_3", relu=False)
            if s != 1 or width != planes * 4:
                x = _conv_bn(x, planes * 4, 1, s, f"{name}_down", relu=False)
            x = L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))
            width = planes * 4
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(1000, name="fc")(x), name="resnet50")


def torch_resnet50(model):
    """A PyTorch ResNet-50 of `model`'s layout holding its weights."""
    import torch
    from torch import nn

    def conv_bn(name, relu=True):
        return _torch_conv_bn(model, name, nn.ReLU if relu else None)

    class Bottleneck(nn.Module):
        def __init__(self, name, down):
            super().__init__()
            self.body = nn.Sequential(conv_bn(f"{name}_1"),
                                      conv_bn(f"{name}_2"),
                                      conv_bn(f"{name}_3", relu=False))
            self.down = conv_bn(f"{name}_down", relu=False) if down else None

        def forward(self, x):
            shortcut = x if self.down is None else self.down(x)
            return torch.relu(self.body(x) + shortcut)

    layers = [conv_bn("stem"), nn.MaxPool2d(3, 2, 1)]
    width = 64
    for stage, (planes, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            s = stride if block == 0 else 1
            layers.append(Bottleneck(f"layer{stage}_{block}",
                                     s != 1 or width != planes * 4))
            width = planes * 4
    head = _torch_dense(model.get_layer("fc"))
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return net.eval()


def check_same(model, net, size):
    """Largest difference of the two networks' logits over the largest."""
    import torch

    x = np.random.default_rng(1).uniform(size=(2, size, size, 3))
    x = x.astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return float(np.abs(got - expected).max() / np.abs(expected).max())


# -- MobileNetV2 --------------------------------------------------------------

# torchvision's inverted residual settings: expansion, width, blocks, stride.
INVERTED = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _mobile_conv_bn(x, filters, kernel, stride, name, relu6=True,
                    depthwise=False):
    if kernel > 1:
        x = L.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    if depthwise:
        x = L.DepthwiseConv2D(kernel, strides=stride, use_bias=False,
                              name=f"{name}_conv")(x)
    else:
        x = L.Conv2D(filters, kernel, strides=stride, use_bias=False,
                     name=f"{name}_conv")(x)
    x = L.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x) if relu6 else x


def keras_mobilenetv2(size):
    inputs = keras.Input((size, size, 3))
    x = _mobile_conv_bn(inputs, 32, 3, 2, "features_0")
    width, index = 32, 1
    for expansion, out, blocks, stride in INVERTED:
        for block in range(blocks):
            name = f"features_{index}"
            s = stride if block == 0 else 1
            y = x
            if expansion != 1:
                y = _mobile_conv_bn(y, width * expansion, 1, 1,
                                    f"{name}_expand")
            y = _mobile_conv_bn(y, None, 3, s, f"{name}_dw", depthwise=True)
            y = _mobile_conv_bn(y, out, 1, 1, f"{name}_project", relu6=False)
            if s == 1 and width == out:
                y = L.Add(name=f"{name}_add")([x, y])
            x, width, index = y, out, index + 1
    x = _mobile_conv_bn(x, 1280, 1, 1, "features_18")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(1000, name="classifier")(x),
                       name="mobilenetv2")


def torch_mobilenetv2(model):
    """A PyTorch MobileNetV2 of `model`'s layout holding its weights."""
    from torch import nn

    class Inverted(nn.Module):
        def __init__(self, name, expand, residual):
            super().__init__()
            parts = [_torch_conv_bn(model, f"{name}_expand", nn.ReLU6)] \
                if expand else []
            parts += [_torch_conv_bn(model, f"{name}_dw", nn.ReLU6),
                      _torch_conv_bn(model, f"{name}_project", None)]
            self.body = nn.Sequential(*parts)
            self.residual = residual

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    layers = [_torch_conv_bn(model, "features_0", nn.ReLU6)]
    width, index = 32, 1
    for expansion, out, blocks, stride in INVERTED:
        for block in range(blocks):
            s = stride if block == 0 else 1
            layers.append(Inverted(f"features_{index}", expansion != 1,
                                   s == 1 and width == out))
            width, index = out, index + 1
    layers.append(_torch_conv_bn(model, "features_18", nn.ReLU6))
    head = _torch_dense(model.get_layer("classifier"))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         head).eval()


# -- shared ---------------------------------------------------------------------


def _torch_conv_bn(model, name, activation):
    """PyTorch's conv + BN (+ `activation`) holding the Keras `name`'s."""
    import torch
    from torch import nn

    conv = model.get_layer(f"{name}_conv")
    bn = model.get_layer(f"{name}_bn")
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    k = kernel.shape[0]
    if isinstance(conv, L.DepthwiseConv2D):  # (k, k, C, 1) -> (C, 1, k, k)
        channels = kernel.shape[2]
        torch_conv = nn.Conv2d(channels, channels, k, conv.strides[0], k // 2,
                               groups=channels, bias=False)
        weight = kernel.transpose(2, 3, 0, 1)
    else:
        torch_conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], k,
                               conv.strides[0], k // 2, bias=False)
        weight = kernel.transpose(3, 2, 0, 1)
    torch_bn = nn.BatchNorm2d(weight.shape[0], eps=1e-5)
    torch_bn.keras_name = bn.name  # to match gammas after pruning
    with torch.no_grad():
        torch_conv.weight.copy_(torch.from_numpy(weight.copy()))
        for target, source in ((torch_bn.weight, bn.gamma),
                               (torch_bn.bias, bn.beta),
                               (torch_bn.running_mean, bn.moving_mean),
                               (torch_bn.running_var, bn.moving_variance)):
            target.copy_(torch.from_numpy(
                keras.ops.convert_to_numpy(source).copy()))
    parts = [torch_conv, torch_bn] + ([activation()] if activation else [])
    return nn.Sequential(*parts)


def _torch_dense(layer):
    import torch
    from torch import nn

    kernel = keras.ops.convert_to_numpy(layer.kernel)
    head = nn.Linear(*kernel.shape)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(kernel.T.copy()))
        head.bias.copy_(torch.from_numpy(
            keras.ops.convert_to_numpy(layer.bias)))
    return head


NETWORKS = {"resnet50": (keras_resnet50, torch_resnet50),
            "mobilenetv2": (keras_mobilenetv2, torch_mobilenetv2)}
