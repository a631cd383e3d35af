"""Tiny model factories shared by the tests, and the masking helpers of the
main invariant: kill channels in the original, slim, outputs match."""

import keras
import numpy as np

import keras_slim

L = keras.layers


def conv_bn(x, filters, name, kernel=3, padding="same", act="relu", **kw):
    x = L.Conv2D(filters, kernel, padding=padding, use_bias=False,
                 name=f"{name}_conv", **kw)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.Activation(act, name=f"{name}_act")(x) if act else x


def chain(padding="same"):
    x = inputs = keras.Input((12, 12, 3))
    x = conv_bn(x, 8, "a", padding=padding)
    x = conv_bn(x, 12, "b", padding=padding)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(5, name="head")(x), name="chain")


def residual():
    x = inputs = keras.Input((16, 16, 3))
    x = conv_bn(x, 8, "stem")
    y = conv_bn(x, 8, "r1a")
    y = conv_bn(y, 8, "r1b", act=None)
    x = L.ReLU(name="r1_out")(L.Add(name="r1_add")([x, y]))
    shortcut = conv_bn(x, 16, "r2s", kernel=1, strides=2, act=None)
    y = conv_bn(x, 16, "r2a", strides=2)
    y = conv_bn(y, 16, "r2b", act=None)
    x = L.ReLU(name="r2_out")(L.Add(name="r2_add")([shortcut, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x), name="residual")


def merges():
    """Subtract, Multiply, Average, Maximum, Minimum tie their inputs."""
    x = inputs = keras.Input((10, 10, 3))
    a = conv_bn(x, 8, "ma", act=None)
    b = conv_bn(x, 8, "mb", act=None)
    c = conv_bn(x, 8, "mc", act=None)
    s = L.Subtract(name="sub")([a, b])
    m = L.Maximum(name="max")([a, c])
    n = L.Minimum(name="min")([b, c])
    v = L.Average(name="avg")([s, m, n])
    p = L.Multiply(name="mul")([v, L.Activation("sigmoid")(c)])
    x = conv_bn(p, 6, "after")
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="merges")


def concat():
    """DenseNet-style concatenations, a concat of a concat."""
    x = inputs = keras.Input((12, 12, 3))
    x = conv_bn(x, 6, "c0")
    y = conv_bn(x, 4, "c1")
    x = L.Concatenate(name="cat1")([x, y])
    y = conv_bn(x, 5, "c2")
    x = L.Concatenate(name="cat2")([y, x])
    x = conv_bn(x, 8, "c3")
    x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="concat")


def depthwise(multiplier=2):
    x = inputs = keras.Input((12, 12, 3))
    x = conv_bn(x, 8, "pw1")
    x = L.DepthwiseConv2D(3, depth_multiplier=multiplier, padding="same",
                          name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0)(x)
    x = L.Conv2D(8 * multiplier, 3, padding="same", groups=8 * multiplier,
                 name="grouped_dw")(x)
    x = L.BatchNormalization(name="gdw_bn")(x)
    x = L.ReLU()(x)
    x = L.SeparableConv2D(10, 3, depth_multiplier=2, padding="same",
                          name="sep")(x)
    x = L.BatchNormalization(name="sep_bn")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(12, 3, padding="same", groups=2, name="grouped")(x)
    x = L.BatchNormalization(name="grouped_bn")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="depthwise")


def flatten_dense(reshape=False, padding="same"):
    x = inputs = keras.Input((10, 10, 2) if padding == "valid" else (6, 6, 2))
    x = conv_bn(x, 8, "f1", padding=padding)
    x = L.MaxPooling2D(2)(x)
    x = conv_bn(x, 6, "f2", padding=padding)
    if reshape:
        x = L.Reshape((-1,), name="to_vector")(x)
    else:
        x = L.Flatten(name="flat")(x)
    x = L.Dense(16, name="fc1")(x)
    x = L.BatchNormalization(name="fc1_bn")(x)
    x = L.ReLU()(x)
    x = L.Dropout(0.3)(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x), name="flatten")


def shared():
    """One Conv and one BN called on two inputs; one Dense on both paths."""
    a = keras.Input((8, 8, 3), name="left")
    b = keras.Input((8, 8, 3), name="right")
    conv = L.Conv2D(8, 3, padding="same", use_bias=False, name="shared_conv")
    bn = L.BatchNormalization(name="shared_bn")
    ya = L.ReLU()(bn(conv(a)))
    yb = L.ReLU()(bn(conv(b)))
    post = L.Conv2D(6, 1, name="post")
    za = L.GlobalAveragePooling2D()(post(ya))
    zb = L.GlobalAveragePooling2D()(post(yb))
    return keras.Model([a, b], L.Add()([za, zb]), name="shared")


def backbone():
    x = inputs = keras.Input((10, 10, 3))
    x = conv_bn(x, 8, "bb1")
    x = conv_bn(x, 8, "bb2")
    return keras.Model(inputs, x, name="backbone")


def nested():
    """A backbone model used as a layer twice, and a nested Sequential."""
    inner = backbone()
    a = keras.Input((10, 10, 3), name="img_a")
    b = keras.Input((10, 10, 3), name="img_b")
    fa, fb = inner(a), inner(b)
    x = L.Concatenate()([fa, fb])
    head = keras.Sequential(
        [
            keras.Input((10, 10, 16)),
            L.Conv2D(6, 3, use_bias=False, name="seq_conv"),
            L.BatchNormalization(name="seq_bn"),
            L.ReLU(),
            L.GlobalAveragePooling2D(),
        ],
        name="seq_head",
    )
    return keras.Model([a, b], L.Dense(3, name="out")(head(x)), name="nested")


def sequential():
    return keras.Sequential(
        [
            keras.Input((9, 9, 2)),
            L.Conv2D(8, 3, use_bias=False, name="s1"),
            L.BatchNormalization(name="s1_bn"),
            L.LeakyReLU(0.1),
            L.Conv2D(8, 3, name="s2"),
            L.BatchNormalization(name="s2_bn"),
            L.ELU(),
            L.Flatten(),
            L.Dense(3, name="out"),
        ],
        name="seq",
    )


def multi_io():
    a = keras.Input((8, 8, 3), name="image")
    b = keras.Input((4,), name="vector")
    x = conv_bn(a, 8, "m1")
    x = conv_bn(x, 8, "m2")
    pooled = L.GlobalAveragePooling2D()(x)
    v = L.Dense(6, name="vec_fc")(b)
    v = L.BatchNormalization(name="vec_bn")(v)
    v = L.ReLU()(v)
    joined = L.Concatenate()([pooled, v])
    out1 = L.Dense(3, name="cls")(joined)
    out2 = L.Conv2D(2, 1, name="seg")(x)
    return keras.Model({"image": a, "vector": b}, [out1, out2], name="multi_io")


def squeeze_excite():
    x = inputs = keras.Input((8, 8, 3))
    x = conv_bn(x, 12, "se_in", act="swish")
    s = L.GlobalAveragePooling2D(keepdims=False)(x)
    s = L.Reshape((1, 1, 12))(s)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(12, 1, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se_mul")([x, s])
    x = conv_bn(x, 6, "se_out", act=None)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="se")


def pass_through():
    """Every kind of channel-preserving layer between two convolutions,
    each of them on the path of the dead channels of `p0` (a Softmax over
    space, whose constants are not followed, is in `softmax_over_space`)."""
    x = inputs = keras.Input((12, 12, 3))
    x = conv_bn(x, 8, "p0", act=None)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.Rescaling(2.0, offset=0.5)(x)
    x = L.Reshape((12, 12, 8))(x)
    x = L.Activation("gelu")(x)
    x = L.SpatialDropout2D(0.2)(x)
    x = L.GaussianNoise(0.1)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.UpSampling2D()(x)
    # Value-changing layers come first: after a zero border the maps of the
    # dead channels are alike only through linear layers (exact folding).
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.AveragePooling2D(2)(x)
    x = conv_bn(x, 6, "p1", act="tanh")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="pass")


def softmax_over_space():
    """A Softmax over the rows keeps channels apart: cut through it."""
    x = inputs = keras.Input((8, 8, 3))
    x = conv_bn(x, 8, "sm0")
    x = L.Softmax(axis=1, name="row_softmax")(x)
    x = conv_bn(x, 4, "sm1")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="softmax")


def one_and_three_d():
    a = keras.Input((16, 3), name="seq")
    x = L.Conv1D(8, 3, use_bias=False, name="c1d")(a)
    x = L.BatchNormalization(name="c1d_bn")(x)
    x = L.ReLU()(x)
    x = L.Conv1D(4, 3, name="c1d_2")(x)
    x = L.GlobalAveragePooling1D()(x)
    b = keras.Input((6, 6, 6, 2), name="vol")
    y = L.Conv3D(6, 3, use_bias=False, name="c3d")(b)
    y = L.BatchNormalization(name="c3d_bn")(y)
    y = L.ReLU()(y)
    y = L.Conv3D(4, 3, name="c3d_2")(y)
    y = L.GlobalAveragePooling3D()(y)
    return keras.Model([a, b], L.Add()([x, y]), name="dims")


def transpose():
    x = inputs = keras.Input((6, 6, 3))
    x = conv_bn(x, 8, "t0")
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", use_bias=False,
                          name="up")(x)
    x = L.BatchNormalization(name="up_bn")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, x, name="transpose")


def ops_model():
    """Keras ops in a functional graph, as in MobileNetV3's hard sigmoid."""
    x = inputs = keras.Input((8, 8, 3))
    x = conv_bn(x, 8, "o1", act=None)
    x = x * (L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0))
    x = conv_bn(x, 4, "o2")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="ops")


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class Mystery(L.Layer):
    """A custom layer keras_slim knows nothing about."""

    def call(self, x):
        # keras.ops.flip, not x[..., ::-1]: PyTorch has no negative step.
        return keras.ops.flip(x, axis=-1)


def with_barrier():
    x = inputs = keras.Input((8, 8, 3))
    x = conv_bn(x, 8, "before")
    x = Mystery(name="mystery")(x)
    x = conv_bn(x, 8, "middle")
    x = conv_bn(x, 6, "after")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="barrier")


def valid_padding():
    """Consumers of every kind, all with `padding="valid"`: bias consumer,
    bias-free conv followed by BN, bias-free conv without BN (a bias is
    created), depthwise in the group, separable consumer, Flatten + Dense."""
    x = inputs = keras.Input((20, 20, 3))
    x = conv_bn(x, 8, "v0", padding="valid")
    x = L.DepthwiseConv2D(3, name="v_dw")(x)
    x = L.BatchNormalization(name="v_dw_bn")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, name="v1_conv")(x)  # has a bias
    x = L.BatchNormalization(name="v1_bn")(x)
    x = L.ReLU()(x)
    x = L.SeparableConv2D(8, 3, name="v2_sep")(x)
    x = L.BatchNormalization(name="v2_bn")(x)
    x = L.ReLU()(x)
    a = L.Conv2D(6, 3, use_bias=False, name="v3_nobias")(x)
    a = L.ReLU()(a)
    a = L.Conv2D(4, 3, use_bias=False, name="v4_conv")(a)
    a = L.BatchNormalization(name="v4_bn")(a)
    a = L.ReLU()(a)
    a = L.Flatten()(a)
    return keras.Model(inputs, L.Dense(3, name="head")(a), name="valid")


def per_channel_preprocessing():
    """Rescaling and Normalization with per-channel values inside a group."""
    x = inputs = keras.Input((8, 8, 3))
    x = conv_bn(x, 6, "pp0")
    x = L.Rescaling(scale=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
                    offset=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])(x)
    x = L.Normalization(mean=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                        variance=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])(x)
    x = conv_bn(x, 4, "pp1", padding="valid")  # offsets: nonzero constants
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name="prep")


def mixed_kernels():
    """3x3 and 1x1 convolutions: a channel of `c1` (between 3x3
    convolutions) counts 72 MACs a pixel, one of `c4` (between 1x1
    convolutions) 128; a runtime on which a 3x3 MAC costs more than a 1x1
    one ranks the two groups the other way round. Gammas randomized."""
    x = inputs = keras.Input((12, 12, 3))
    for i, (width, kernel) in enumerate(((4, 3), (16, 3), (4, 3), (64, 1),
                                         (32, 1), (64, 1))):
        x = conv_bn(x, width, f"c{i}", kernel=kernel)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(4, name="head")(x))
    randomize_batchnorms(model, np.random.default_rng(0))
    return model


FACTORIES = {
    "per_channel_preprocessing": per_channel_preprocessing,
    "chain": chain,
    "residual": residual,
    "merges": merges,
    "concat": concat,
    "depthwise": depthwise,
    "flatten": flatten_dense,
    "reshape_flatten": lambda: flatten_dense(reshape=True),
    "shared": shared,
    "nested": nested,
    "sequential": sequential,
    "multi_io": multi_io,
    "squeeze_excite": squeeze_excite,
    "pass_through": pass_through,
    "one_and_three_d": one_and_three_d,
    "transpose": transpose,
    "ops": ops_model,
    "barrier": with_barrier,
}


# -- the invariant ----------------------------------------------------------


def batchnorms(model):
    """Every BatchNormalization of `model`: in nested models and inside
    custom block layers too."""
    return [layer for layer in keras_slim.core.keras_compat.flatten_layers(model)
            if isinstance(layer, L.BatchNormalization)]


def randomize_batchnorms(model, rng):
    """Random statistics and affine parameters in every BN."""
    for bn in batchnorms(model):
        values = {v.name: v for v in bn.weights}
        n = bn.moving_mean.shape[0]
        values["moving_mean"].assign(rng.normal(0, 0.5, n))
        values["moving_variance"].assign(rng.uniform(0.5, 2.0, n))
        if bn.scale:
            values["gamma"].assign(rng.uniform(0.5, 1.5, n) * rng.choice([-1, 1], n))
        if bn.center:
            values["beta"].assign(rng.normal(0, 0.5, n))


def kill_random_half(model, rng, kill_beta=True):
    """Zero gamma (and beta) of a random half of the channels of every BN."""
    for bn in batchnorms(model):
        n = bn.moving_mean.shape[0]
        dead = rng.permutation(n)[: n // 2]
        kill(bn, dead, kill_beta)


def kill_coherently(model, rng, kill_beta=True):
    """Zero a random half of each prunable group in all of its BNs, so the
    channel is dead in every branch and the model must get smaller."""
    graph = keras_slim.core.graph.ChannelGraph(model)
    for group in graph.groups:
        if not group.prunable or not group.batchnorms:
            continue
        dead = rng.permutation(group.width)[: group.width // 2]
        for name, matrix in group.bn_positions.items():  # `tower3a/bn`
            kill(graph.layer(name), matrix[dead].ravel(), kill_beta)


def zero_cut_gammas(model, plan):
    """Zero, in place, the gamma of every channel `plan` cuts (betas as
    they are): the reference a plan that cuts live channels is held to."""
    graph = keras_slim.core.graph.ChannelGraph(model)
    for group in graph.groups:
        kept = plan.kept.get(group.name)
        if kept is None:
            continue
        cut = np.setdiff1d(np.arange(group.width), kept)
        for name, matrix in group.bn_positions.items():
            kill(graph.layer(name), matrix[cut].ravel())


def kill(bn, positions, kill_beta=False):
    """Zero the gamma (and, with `kill_beta`, the beta) of `positions`."""
    for variable in bn.weights:
        if variable.name == "gamma" or (kill_beta and variable.name == "beta"):
            value = keras.ops.convert_to_numpy(keras.ops.copy(variable))
            value[positions] = 0.0
            variable.assign(value)


def random_inputs(model, rng, batch=3):
    def make(tensor):
        shape = (batch,) + tuple(d or 32 for d in tensor.shape[1:])
        return rng.normal(0, 1, shape).astype("float32")

    graph = model._functional if isinstance(model, keras.Sequential) else model
    return keras.tree.map_structure(make, graph._inputs_struct)


def outputs(model, inputs):
    result = model(inputs, training=False)
    return [keras.ops.convert_to_numpy(r) for r in keras.tree.flatten(result)]


def assert_close(expected, actual, rtol=1e-4):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert a.shape == b.shape
        scale = max(float(np.abs(a).max()), 1e-6)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * scale)
