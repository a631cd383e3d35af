"""Random functional models for the property-based fuzzer (test_fuzz.py).

`build(draw)` composes a small functional model from every registered layer
family with random configs, drawing each decision from `draw` (a hypothesis
`data.draw`): convolutions of every kind (activation, softmax-family
included, use_bias, padding, strides, dilation, groups, depth_multiplier,
data_format), BatchNormalization, activations, pooling and padding layers,
stateful preprocessing layers, merges and keras.ops arithmetic, concatenation,
nested and shared models and layers, Flatten/Reshape into Dense, several
inputs and outputs; one model in five is one-dimensional
(tests/fuzz_sequences.py: Conv1D with causal padding and the 1D layers) and
one in ten three-dimensional (tests/fuzz_volumes.py: Conv3D, grouped and
transposed, and the 3D layers).
Layer names are unique (plans name layers), except inside the pairs of
towers one builder function makes (`towers`: equal inner names, as in two
separately trained backbones). One model in eight is a `keras.Model`
subclass (`SUBCLASSES`: overriding `call`, or `train_step` and a property,
or holding a layer outside its graph, which slim_model must refuse naming
the overridden methods); some nested models are subclasses overriding
`call`.
"""

import keras
import numpy as np
from hypothesis import strategies as st

L = keras.layers

ACTIVATIONS = [
    None, "relu", "tanh", "sigmoid", "elu", "gelu", "silu", "softplus",
    "leaky_relu", "hard_sigmoid", "softmax", "log_softmax",
]
MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
OP_MERGES = {
    "ops.add": keras.ops.add,
    "ops.subtract": keras.ops.subtract,
    "ops.multiply": keras.ops.multiply,
    "ops.maximum": keras.ops.maximum,
}


class ScaledOutputs(keras.Model):
    """Overrides `call`: every output scaled by `scale`."""

    def __init__(self, inputs, outputs, scale=1.0, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.scale = scale

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return keras.tree.map_structure(
            lambda t: keras.ops.multiply(t, self.scale), outputs)


class OwnTrainStep(keras.Model):
    """Overrides `train_step` and adds a property; computes its graph."""

    def train_step(self, *args):
        return super().train_step(*args)

    @property
    def depth(self):
        return len(self.layers)


class HoldsOutsideLayer(keras.Model):
    """Holds a layer its graph does not call: cannot be slimmed unshared."""

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.spare = L.Dense(2, name="spare")
        self.spare.build((None, 2))

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=training, mask=mask)


SUBCLASSES = [ScaledOutputs, ScaledOutputs, OwnTrainStep, HoldsOutsideLayer]

# TensorFlow runs an NCHW Conv2D on the CPU only through oneDNN, which it
# enables on some CPUs only (not CI's): there a channels_first Conv2D is
# built as its channels_last twin between Permutes, on every machine alike.
_NO_NCHW = keras.backend.backend() == "tensorflow"


class Builder:
    """Draws a model; `names` keeps layer names unique."""

    def __init__(self, draw):
        self.draw = draw
        self.count = 0
        self.pool = []  # image tensors available for merges
        self.rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def name(self, stem):
        self.count += 1
        return f"{stem}{self.count}"

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def flag(self, p_true=0.5):
        return self.draw(st.floats(0, 1)) < p_true

    # -- image blocks -------------------------------------------------------

    def batchnorm(self, x):
        center = self.flag(0.9)
        scale = self.flag(0.9)
        # called in training mode (batch statistics) one time in ten; a
        # numpy draw, unbiased and leaving hypothesis' draws as they were
        if self.rng.random() < 0.1:
            return L.BatchNormalization(
                center=center, scale=scale, name=self.name("bntrain"))(
                    x, training=True)
        return L.BatchNormalization(
            center=center, scale=scale, name=self.name("bn"))(x)

    def _kernel(self, x, strided=True):
        size = min(x.shape[1], x.shape[2])
        kernel = self.pick([k for k in (1, 2, 3) if k <= size])
        padding = self.pick(["valid", "same"])
        strides = 1
        if strided and size >= 4 and self.flag(0.25):
            strides = 2
        dilation = 1
        if strides == 1 and kernel > 1 and self.flag(0.2):
            if padding == "same" or size >= 1 + 2 * (kernel - 1):
                dilation = 2
        return dict(kernel_size=kernel, padding=padding, strides=strides,
                    dilation_rate=dilation)

    def conv(self, x, filters=None, bn=None):
        channels = x.shape[-1]
        filters = filters or self.draw(st.integers(2, 6))
        kw = self._kernel(x)
        groups = 1
        if self.flag(0.15):
            groups = channels  # one group per input channel
            filters = channels * self.draw(st.integers(1, 2))
        elif self.flag(0.05) and channels % 2 == 0 and channels > 2:
            groups = 2
            filters = 2 * self.draw(st.integers(1, 3))
        data_format = "channels_first" if self.flag(0.04) else "channels_last"
        if data_format == "channels_first":
            kw.update(padding="same", strides=1, dilation_rate=1)
            groups = 1
        conv = L.Conv2D(
            filters, groups=groups, use_bias=self.flag(),
            activation=self.pick(ACTIVATIONS), data_format=data_format,
            name=self.name("conv"), **kw)
        if data_format == "channels_first" and _NO_NCHW:
            # The shapes, and so every later draw, stay the other backends'.
            conv = L.Conv2D(**dict(conv.get_config(),
                                   data_format="channels_last"))
            x = L.Permute((2, 3, 1))(x)
            y = L.Permute((3, 1, 2))(conv(x))
        else:
            y = conv(x)
        if bn if bn is not None else self.flag(0.8):
            y = self.batchnorm(y)
        return y

    def dense_on_image(self, x):
        """A Dense on the last axis of an image: a 1x1 convolution."""
        y = L.Dense(self.draw(st.integers(2, 6)), use_bias=self.flag(),
                    activation=self.pick(ACTIVATIONS), name=self.name("fc"))(x)
        return self.batchnorm(y) if self.flag(0.8) else y

    def depthwise(self, x):
        kw = self._kernel(x)
        y = L.DepthwiseConv2D(
            depth_multiplier=self.draw(st.integers(1, 2)),
            use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
            name=self.name("dw"), **kw)(x)
        return self.batchnorm(y) if self.flag(0.7) else y

    def separable(self, x):
        kw = self._kernel(x)
        y = L.SeparableConv2D(
            self.draw(st.integers(2, 6)),
            depth_multiplier=self.draw(st.integers(1, 2)),
            use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
            name=self.name("sep"), **kw)(x)
        return self.batchnorm(y) if self.flag(0.8) else y

    def transpose(self, x):
        if x.shape[1] > 8:
            return self.conv(x)
        y = L.Conv2DTranspose(
            self.draw(st.integers(2, 5)), self.pick([2, 3]),
            strides=self.pick([1, 2]), padding=self.pick(["valid", "same"]),
            use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
            name=self.name("convt"))(x)
        return self.batchnorm(y) if self.flag(0.8) else y

    def activation(self, x):
        kind = self.pick([
            "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "PReLU_shared",
            "Softmax", "ops.relu", "ops.sigmoid", "ops.tanh", "ops.scale",
        ])
        name = self.name("act")
        if kind == "Activation":
            return L.Activation(self.pick(ACTIVATIONS[1:]), name=name)(x)
        if kind == "PReLU":
            layer = L.PReLU(name=name)
        elif kind == "PReLU_shared":
            layer = L.PReLU(shared_axes=[1, 2], name=name)
        elif kind == "Softmax":
            layer = L.Softmax(axis=self.pick([-1, 1]), name=name)
        elif kind == "ops.relu":
            return keras.ops.relu(x)
        elif kind == "ops.sigmoid":
            return keras.ops.sigmoid(x)
        elif kind == "ops.tanh":
            return keras.ops.tanh(x)
        elif kind == "ops.scale":
            return x * 1.5 + 0.25
        else:
            layer = getattr(L, kind)(name=name)
        y = layer(x)
        if kind.startswith("PReLU"):
            alpha = layer.alpha
            alpha.assign(self.rng.uniform(0.1, 0.5, alpha.shape))
        return y

    def shape_only(self, x):
        size = min(x.shape[1], x.shape[2])
        options = ["Dropout", "SpatialDropout2D", "GaussianNoise", "Identity",
                   "ZeroPadding2D", "ActivityRegularization", "Reshape",
                   "Permute"]
        if size >= 2:
            options += ["MaxPooling2D", "AveragePooling2D"]
        if size >= 4:
            options += ["Cropping2D"]
        if size <= 5:
            options += ["UpSampling2D", "UpSampling2D_bilinear"]
        kind = self.pick(options)
        name = self.name("shape")
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            layer = getattr(L, kind)(2, padding=self.pick(["valid", "same"]),
                                     name=name)
        elif kind in ("Dropout", "SpatialDropout2D"):
            layer = getattr(L, kind)(0.3, name=name)
        elif kind == "GaussianNoise":
            layer = L.GaussianNoise(0.1, name=name)
        elif kind == "ZeroPadding2D":
            layer = L.ZeroPadding2D(self.pick([1, (1, 0)]), name=name)
        elif kind == "Cropping2D":
            layer = L.Cropping2D(1, name=name)
        elif kind == "UpSampling2D":
            layer = L.UpSampling2D(2, name=name)
        elif kind == "UpSampling2D_bilinear":
            layer = L.UpSampling2D(2, interpolation="bilinear", name=name)
        elif kind == "ActivityRegularization":
            layer = L.ActivityRegularization(l1=0.01, name=name)
        elif kind == "Reshape":  # swaps the spatial sizes, keeps channels
            layer = L.Reshape((x.shape[2], x.shape[1], x.shape[3]), name=name)
        elif kind == "Permute":  # a barrier when it moves the channels
            layer = L.Permute(self.pick([(2, 1, 3), (1, 3, 2)]), name=name)
        else:
            layer = getattr(L, kind)(name=name)
        return layer(x)

    def preprocessing(self, x):
        kind = self.pick(["Normalization", "Rescaling", "LayerNormalization",
                          "UnitNormalization", "BatchNormalization",
                          "GroupNormalization"])
        name = self.name("pre")
        channels = x.shape[-1]
        if kind == "Normalization":
            layer = L.Normalization(axis=-1, name=name)
            layer.adapt(self.rng.normal(
                self.rng.normal(0, 2), 1.5, (8,) + tuple(x.shape[1:])
            ).astype("float32"))
            return layer(x)
        if kind == "Rescaling":
            scale = self.rng.uniform(0.5, 2.0, channels).tolist()
            offset = self.rng.normal(0, 0.5, channels).tolist()
            return L.Rescaling(scale, offset=offset, name=name)(x)
        if kind == "BatchNormalization":
            return self.batchnorm(x)
        if kind == "GroupNormalization":
            return L.GroupNormalization(groups=1, name=name)(x)
        return getattr(L, kind)(name=name)(x)

    def _same_shape(self, x):
        """Another tensor of `x`'s shape: from the pool or a new branch."""
        same = [t for t in self.pool if tuple(t.shape) == tuple(x.shape)
                and t is not x]
        if same and self.flag(0.5):
            return self.pick(same)
        y = L.Conv2D(x.shape[-1], self.pick([1, 3]), padding="same",
                     use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
                     name=self.name("branch"))(x)
        return self.batchnorm(y) if self.flag(0.8) else y

    def _extra_branch(self, x):
        """Another tensor of `x`'s shape drawn from the builder's numpy rng,
        so that hypothesis' draws stay those of the models without it."""
        same = [t for t in self.pool if tuple(t.shape) == tuple(x.shape)
                and t is not x]
        if same and self.rng.random() < 0.5:
            return same[self.rng.integers(len(same))]
        y = L.Conv2D(x.shape[-1], 1, padding="same", name=self.name("branch"))(x)
        return L.BatchNormalization(name=self.name("bn"))(y)

    def merge(self, x):
        y = self._same_shape(x)
        kind = self.pick(MERGES + sorted(OP_MERGES))
        if kind in OP_MERGES:
            return OP_MERGES[kind](x, y)
        if kind != "Subtract" and self.rng.random() < 0.3:
            # three or four branches: every input's channels are tied
            more = [self._extra_branch(x)
                    for _ in range(self.rng.integers(1, 3))]
            return getattr(L, kind)(name=self.name("wmerge"))([x, y, *more])
        return getattr(L, kind)(name=self.name("merge"))([x, y])

    def concat(self, x):
        same = [t for t in self.pool if tuple(t.shape[:-1]) == tuple(x.shape[:-1])
                and t is not x]
        if same and self.flag(0.5):
            y = self.pick(same)
        else:
            y = self.conv(x, bn=True) if self.flag(0.7) else self.depthwise(x)
            if tuple(y.shape[:-1]) != tuple(x.shape[:-1]):
                return y
        return L.Concatenate(name=self.name("cat"))([x, y])

    def nested(self, x):
        inner_in = keras.Input(tuple(x.shape[1:]))
        y = self.conv(inner_in, bn=True)
        if self.flag(0.5):
            y = self.activation(y)
        if self.flag(0.2):  # a subclass overriding `call`
            inner = ScaledOutputs(inner_in, y, scale=self.pick([0.5, 2.0]),
                                  name=self.name("inner"))
        else:
            inner = keras.Model(inner_in, y, name=self.name("inner"))
        out = inner(x)
        same = [t for t in self.pool if tuple(t.shape) == tuple(x.shape)
                and t is not x]
        if same and self.flag(0.5):  # the nested model is shared
            other = inner(self.pick(same))
            out = L.Add(name=self.name("merge"))([out, other])
        return out

    def towers(self, x):
        """Two nested models from one builder function, so with equal inner
        layer names, merged: two backbones, a siamese net, unshared."""
        filters = self.draw(st.integers(2, 6))
        kw = self._kernel(x, strided=False)
        config = dict(use_bias=self.flag(), activation=self.pick(ACTIVATIONS))
        center, scale, act = self.flag(0.9), self.flag(0.9), self.flag()
        stem = self.name("tower")

        def tower(name):
            inner_in = keras.Input(tuple(x.shape[1:]))
            y = L.Conv2D(filters, name="conv", **kw, **config)(inner_in)
            y = L.BatchNormalization(center=center, scale=scale, name="bn")(y)
            if act:
                y = L.ReLU(name="relu")(y)
            return keras.Model(inner_in, y, name=name)

        a, b = tower(f"{stem}a")(x), tower(f"{stem}b")(x)
        if self.flag():
            return L.Add(name=self.name("merge"))([a, b])
        return L.Concatenate(name=self.name("cat"))([a, b])

    def shared(self, x):
        layer = L.Conv2D(self.draw(st.integers(2, 5)), self.pick([1, 3]),
                         padding="same", use_bias=self.flag(),
                         activation=self.pick(ACTIVATIONS),
                         name=self.name("sharedconv"))
        y = self._same_shape(x)
        a, b = layer(x), layer(y)
        if self.flag(0.5):
            return L.Add(name=self.name("merge"))([a, b])
        self.pool.append(b)
        return a

    BLOCKS = ["conv", "conv", "conv", "depthwise", "separable", "transpose",
              "dense_on_image",
              "activation", "shape_only", "preprocessing", "merge", "merge",
              "concat", "nested", "towers", "shared"]

    def block(self, x):
        y = getattr(self, self.pick(self.BLOCKS))(x)
        if min(y.shape[1], y.shape[2]) < 1:
            return x
        self.pool.append(y)
        return y

    # -- heads ----------------------------------------------------------------

    def dense(self, v):
        y = L.Dense(self.draw(st.integers(2, 6)), use_bias=self.flag(),
                    activation=self.pick(ACTIVATIONS), name=self.name("fc"))(v)
        return self.batchnorm(y) if self.flag(0.8) else y

    def head(self, x, extra=None):
        kind = self.pick(["gap", "gmp", "flatten", "reshape"])
        if kind == "gap":
            v = L.GlobalAveragePooling2D(name=self.name("gap"))(x)
        elif kind == "gmp":
            v = L.GlobalMaxPooling2D(name=self.name("gmp"))(x)
        elif kind == "flatten":
            v = L.Flatten(name=self.name("flat"))(x)
        else:
            v = L.Reshape((int(np.prod(x.shape[1:])),),
                          name=self.name("reshape"))(x)
        if extra is not None:
            v = L.Concatenate(name=self.name("cat"))([v, extra])
        for _ in range(self.draw(st.integers(0, 2))):
            v = self.dense(v)
        return L.Dense(2, name=self.name("out"))(v)


def build(draw):
    """A random functional model, one in eight of a subclass; see the
    module docstring."""
    model = _build(draw)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    # One in eight, each class alike, drawn by hypothesis itself: the numpy
    # seeds it draws repeat too often to spread the choice.
    choice = draw(st.integers(0, 8 * len(SUBCLASSES) - 1))
    if choice >= 7 * len(SUBCLASSES):
        cls = SUBCLASSES[choice - 7 * len(SUBCLASSES)]
        options = {}
        if cls is ScaledOutputs:
            options["scale"] = float(rng.choice([0.5, 3.0]))
        model = cls(model.input, model.output, **options)
    return model


def _build(draw):
    kind = draw(st.floats(0, 1))
    if kind < 0.2:
        from tests import fuzz_sequences  # pylint: disable=import-outside-toplevel

        return fuzz_sequences.build_sequence(draw)
    if kind < 0.3:
        from tests import fuzz_volumes  # pylint: disable=import-outside-toplevel

        return fuzz_volumes.build_volume(draw)
    b = Builder(draw)
    size = draw(st.integers(5, 9))
    channels = draw(st.integers(2, 4))
    image = keras.Input((size, size, channels), name="image")
    inputs = [image]
    x = image
    if draw(st.booleans()):
        second = keras.Input((size, size, channels), name="image2")
        inputs.append(second)
        b.pool.append(b.conv(second, filters=channels, bn=True) if
                      b.flag() else second)
    b.pool.append(x)
    for _ in range(draw(st.integers(1, 5))):
        x = b.block(x)
    extra = None
    if draw(st.floats(0, 1)) < 0.2:
        vector = keras.Input((3,), name="vector")
        inputs.append(vector)
        extra = b.dense(vector)
    outputs = [b.head(x, extra)]
    if draw(st.floats(0, 1)) < 0.3:
        candidates = [t for t in b.pool if t is not x and len(t.shape) == 4
                      and not any(t is i for i in inputs)]
        if candidates:
            outputs.append(b.pick(candidates))
    used = [t for t in inputs if _reaches(t, outputs)]
    return keras.Model(used if len(used) > 1 else used[0],
                       outputs if len(outputs) > 1 else outputs[0])


def _reaches(tensor, outputs):
    """Whether `outputs` depend on `tensor` (unused inputs are dropped)."""
    seen, stack = set(), list(outputs)
    while stack:
        t = stack.pop()
        if t is tensor:
            return True
        if id(t) in seen:
            continue
        seen.add(id(t))
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        node = history.operation._inbound_nodes[history.node_index]
        stack.extend(node.input_tensors)
    return False


# -- attention blocks (tests/test_attention_fuzz.py) -------------------------


def attention_model(draw):
    """A transformer block around a random MultiHeadAttention: random
    heads, key_dim, value_dim, attention_axes (over one or two axes of an
    image-like input), bias and output_shape, cross-attention, in a
    pre-norm, post-norm or norm-free block (whose residual stream is then
    a prunable group), followed by an MLP and a Dense head.

    Returns:
        The model and the name of its attention layer ("mha").
    """
    integers = lambda low, high: draw(st.integers(low, high))  # noqa: E731
    image = draw(st.booleans())
    spatial = (integers(2, 3), integers(2, 3)) if image else (integers(2, 5),)
    width = integers(3, 6)
    inputs = [keras.Input(spatial + (integers(2, 4),), name="tokens")]
    embed = L.Conv2D if image else L.Conv1D
    x = embed(width, 1, name="embed")(inputs[0])
    source = x
    if draw(st.booleans()):  # cross-attention on a second input
        inputs.append(keras.Input(spatial + (integers(2, 4),), name="memory"))
        source = L.Dense(integers(2, 5), name="memory_in")(inputs[1])
    axes = None
    if image:
        axes = draw(st.sampled_from([None, (1,), (2,), (1, 2)]))
    out_width = draw(st.sampled_from([None, integers(2, 6)]))
    norm = draw(st.sampled_from(["pre", "post", "none"]))
    query = L.LayerNormalization(name="ln1")(x) if norm == "pre" else x
    if source is x:
        source = query
    value_dim = draw(st.sampled_from([None, integers(1, 4)]))
    if keras.backend.backend() == "jax":
        value_dim = None  # Keras 3.15 on JAX fails on value_dim != key_dim
    attention = L.MultiHeadAttention(
        integers(1, 4), integers(1, 4), value_dim=value_dim,
        use_bias=draw(st.booleans()), output_shape=out_width,
        attention_axes=axes, name="mha")
    a = attention(query, source)
    if out_width is not None:
        a = L.Dense(width, name="proj")(L.ReLU(name="proj_act")(a))
    x = L.Add(name="res1")([x, a])
    if norm == "post":
        x = L.LayerNormalization(name="ln1")(x)
    n = L.LayerNormalization(name="ln2")(x) if norm == "pre" else x
    up = L.Dense(integers(2, 8), activation=draw(st.sampled_from(
        ["relu", "gelu", None])), name="mlp_up")(n)
    x = L.Add(name="res2")([x, L.Dense(width, name="mlp_down")(up)])
    if norm == "post":
        x = L.LayerNormalization(name="ln2")(x)
    pool = L.GlobalAveragePooling2D if image else L.GlobalAveragePooling1D
    outputs = L.Dense(2, name="logits")(pool(name="pool")(x))
    return keras.Model(inputs, outputs), "mha"
