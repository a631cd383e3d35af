"""The networks of the recipes, as the papers describe them.

- `convnet`: the 4-layer BN ConvNet of Ye et al. (2018), Table 1: three
  convolutions (5x5, 5x5, 3x3) each followed by a 3x3 stride-2 max pool, a
  4x4 "valid" convolution acting as the fully connected layer, and a linear
  classifier. Base widths 96-192-192-384; the reference is 32-64-64-128
  (224,008 parameters in the paper; 223,978 here, the paper also counts a
  normalization on the classifier).
- `resnet20`: ResNet-20 for CIFAR as Ye et al. prune it: only the first
  convolution of each residual block has a BatchNormalization with a gamma
  (the channels pruned "inside the residual modules"); the stem, the second
  convolution of each block and the 2x2 stride-2 projection shortcuts use
  BatchNormalization without a gamma, so ISTA leaves them alone. 281,274
  parameters (281,304 in the paper).
- `vgg`: VGG-11/13/16/19 with BatchNormalization for CIFAR, as in Network
  Slimming: 3x3 convolutions without bias, max pools, a 2x2 average pool and
  one linear layer (VGG-19 on CIFAR-10: 20.04M parameters).
- `resnet_v1`: the bottleneck ResNet v1 of `keras.applications` (same layer
  names and weight shapes), with configurable blocks per stage and width, so
  that the ImageNet recipe can run at toy size in tests.

Every convolution has `use_bias=False` when a BatchNormalization follows,
and `momentum` sets the BatchNormalization momentum (0.9 trains well in few
steps; the papers' frameworks use 0.9 (PyTorch's 0.1) or 0.997).
"""

import keras

L = keras.layers

CONVNET_BASE = (96, 192, 192, 384)
CONVNET_REFERENCE = (32, 64, 64, 128)
RESNET20_WIDTHS = (16, 32, 64)
VGG_CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512,
         512, "M", 512, 512, 512, 512),
}
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _l2(weight_decay):
    # PyTorch's SGD weight decay `wd` adds `wd * w` to the gradient; Keras'
    # L2(l) adds `2 * l * w`.
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _conv_bn_relu(x, filters, kernel, name, momentum, weight_decay,
                  padding="same", strides=1, scale=True, relu=True):
    x = L.Conv2D(filters, kernel, strides=strides, padding=padding,
                 use_bias=False, kernel_regularizer=_l2(weight_decay),
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=momentum, scale=scale,
                             name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def convnet(widths=CONVNET_BASE, classes=10, input_shape=(32, 32, 3),
            momentum=0.9, weight_decay=0.0, name="convnet"):
    """The 4-layer BN ConvNet of Ye et al. (2018).

    Args:
        widths: output channels of conv1, conv2, conv3 and fc1.
        classes: number of classes.
        input_shape: image shape; 32x32 gives a 4x4 map before fc1.
        momentum: BatchNormalization momentum.
        weight_decay: L2 weight decay on the kernels (PyTorch convention).
        name: model name.

    Returns:
        A functional `keras.Model` returning logits.
    """
    if len(widths) != 4:
        raise ValueError(
            f"Expected `widths` to have 4 entries. Received: widths={widths!r}"
        )
    x = inputs = keras.Input(input_shape, name="image")
    for index, (width, kernel) in enumerate(zip(widths[:3], (5, 5, 3))):
        x = _conv_bn_relu(x, width, kernel, f"conv{index + 1}", momentum,
                          weight_decay)
        x = L.MaxPooling2D(3, strides=2, padding="same",
                           name=f"pool{index + 1}")(x)
    x = _conv_bn_relu(x, widths[3], x.shape[1], "fc1", momentum, weight_decay,
                      padding="valid")
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(classes, kernel_regularizer=_l2(weight_decay),
                      name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet20(classes=10, input_shape=(32, 32, 3), widths=RESNET20_WIDTHS,
             blocks=3, momentum=0.9, weight_decay=0.0, name="resnet20"):
    """ResNet-20 for CIFAR with gammas only inside the residual blocks.

    Args:
        classes: number of classes.
        input_shape: image shape.
        widths: channels of the three stages.
        blocks: residual blocks per stage (3 gives ResNet-20).
        momentum: BatchNormalization momentum.
        weight_decay: L2 weight decay on the kernels (PyTorch convention).
        name: model name.

    Returns:
        A functional `keras.Model` returning logits.
    """
    x = inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(x, widths[0], 3, "stem", momentum, weight_decay,
                      scale=False)
    for stage, width in enumerate(widths):
        for block in range(blocks):
            prefix = f"g{stage}b{block}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = _conv_bn_relu(x, width, 3, f"{prefix}c0", momentum,
                              weight_decay, strides=strides)
            y = _conv_bn_relu(y, width, 3, f"{prefix}c1", momentum,
                              weight_decay, scale=False, relu=False)
            if strides != 1 or x.shape[-1] != width:
                x = _conv_bn_relu(x, width, strides, f"{prefix}proj",
                                  momentum, weight_decay, padding="valid",
                                  strides=strides, scale=False, relu=False)
            x = L.Add(name=f"{prefix}_add")([x, y])
            x = L.ReLU(name=f"{prefix}_out")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(classes, kernel_regularizer=_l2(weight_decay),
                      name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def vgg(depth=19, classes=10, input_shape=(32, 32, 3), momentum=0.9,
        weight_decay=0.0, name=None):
    """VGG with BatchNormalization for CIFAR (Network Slimming's variant).

    Args:
        depth: 11, 13, 16 or 19.
        classes: number of classes.
        input_shape: image shape (32x32: the last map is 2x2, pooled to 1).
        momentum: BatchNormalization momentum.
        weight_decay: L2 weight decay on the kernels (PyTorch convention).
        name: model name (default `vgg{depth}`).

    Returns:
        A functional `keras.Model` returning logits.
    """
    if depth not in VGG_CONFIGS:
        raise ValueError(
            f"Expected `depth` in {sorted(VGG_CONFIGS)}. Received: depth={depth!r}"
        )
    x = inputs = keras.Input(input_shape, name="image")
    index = 0
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            x = L.MaxPooling2D(2, name=f"pool{index}")(x)
        else:
            index += 1
            x = _conv_bn_relu(x, item, 3, f"block{index}", momentum,
                              weight_decay)
    x = L.AveragePooling2D(2, padding="same", name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(classes, kernel_regularizer=_l2(weight_decay),
                      name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"vgg{depth}")


def resnet_v1(blocks=RESNET_BLOCKS[101], width=64, classes=1000,
              input_shape=(224, 224, 3), weight_decay=0.0, name="resnet101"):
    """Bottleneck ResNet v1 laid out as `keras.applications.ResNet101`.

    With `blocks=(3, 4, 23, 3)` and `width=64` the layers, their names and
    their weight shapes are those of `keras.applications.ResNet101`, so its
    weight files load into it; other values give smaller or larger networks
    of the same design.

    Args:
        blocks: bottleneck blocks in each of the four stages.
        width: channels of the first stage's bottleneck (doubling per stage;
            the block outputs are four times wider).
        classes: number of classes.
        input_shape: image shape.
        weight_decay: L2 weight decay on the kernels (PyTorch convention).
        name: model name.

    Returns:
        A functional `keras.Model` returning logits (no softmax).
    """
    bn = dict(axis=-1, epsilon=1.001e-5)
    decay = _l2(weight_decay)
    x = inputs = keras.Input(input_shape, name="image")
    x = L.ZeroPadding2D(3, name="conv1_pad")(x)
    x = L.Conv2D(width, 7, strides=2, kernel_regularizer=decay,
                 name="conv1_conv")(x)
    x = L.BatchNormalization(name="conv1_bn", **bn)(x)
    x = L.Activation("relu", name="conv1_relu")(x)
    x = L.ZeroPadding2D(1, name="pool1_pad")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, count in enumerate(blocks):
        filters = width * 2**stage
        for block in range(count):
            prefix = f"conv{stage + 2}_block{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            if block == 0:
                shortcut = L.Conv2D(4 * filters, 1, strides=strides,
                                    kernel_regularizer=decay,
                                    name=f"{prefix}_0_conv")(x)
                shortcut = L.BatchNormalization(name=f"{prefix}_0_bn",
                                                **bn)(shortcut)
            else:
                shortcut = x
            y = L.Conv2D(filters, 1, strides=strides, kernel_regularizer=decay,
                         name=f"{prefix}_1_conv")(x)
            y = L.BatchNormalization(name=f"{prefix}_1_bn", **bn)(y)
            y = L.Activation("relu", name=f"{prefix}_1_relu")(y)
            y = L.Conv2D(filters, 3, padding="same", kernel_regularizer=decay,
                         name=f"{prefix}_2_conv")(y)
            y = L.BatchNormalization(name=f"{prefix}_2_bn", **bn)(y)
            y = L.Activation("relu", name=f"{prefix}_2_relu")(y)
            y = L.Conv2D(4 * filters, 1, kernel_regularizer=decay,
                         name=f"{prefix}_3_conv")(y)
            y = L.BatchNormalization(name=f"{prefix}_3_bn", **bn)(y)
            x = L.Add(name=f"{prefix}_add")([shortcut, y])
            x = L.Activation("relu", name=f"{prefix}_out")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = L.Dense(classes, kernel_regularizer=decay, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def bottleneck_batchnorms(model):
    """Names of the BatchNormalization layers inside bottleneck blocks.

    These (`*_1_bn`, `*_2_bn`) scale channels that no residual sum ties, the
    ones Ye et al. prune in ResNet-101.
    """
    return [
        layer.name for layer in model.layers
        if isinstance(layer, L.BatchNormalization)
        and layer.name.endswith(("_1_bn", "_2_bn")) and "_block" in layer.name
    ]
