"""Random one-dimensional models for the fuzzer (see fuzz_models.py)."""

import keras
from hypothesis import strategies as st

from tests.fuzz_models import ACTIVATIONS, MERGES, Builder

L = keras.layers


class SequenceBuilder(Builder):
    """One-dimensional models: Conv1D (causal padding included),
    DepthwiseConv1D, SeparableConv1D, 1D pooling, padding and cropping."""

    def _kernel1d(self, x, causal="causal"):
        """A kernel config valid for `x`; `causal` is the padding a layer
        without causal padding uses instead (checked before dilating)."""
        length = x.shape[1]
        kernel = self.pick([k for k in (1, 2, 3) if k <= length])
        padding = self.pick(["valid", "same", "causal"])
        if padding == "causal":
            padding = causal
        strides = 2 if length >= 4 and self.flag(0.2) else 1
        dilation = 2 if strides == 1 and kernel > 1 and self.flag(0.2) else 1
        if dilation == 2 and padding == "valid" and length < 1 + 2 * (kernel - 1):
            dilation = 1
        return dict(kernel_size=kernel, padding=padding, strides=strides,
                    dilation_rate=dilation)

    CONV = L.Conv1D
    MAX_FILTERS = 6

    def conv_kernel(self, x):
        return self._kernel1d(x)

    def conv(self, x, filters=None, bn=None):
        kw = self.conv_kernel(x)
        groups = 1
        filters = filters or self.draw(st.integers(2, self.MAX_FILTERS))
        if self.flag(0.15):
            groups = x.shape[-1]
            filters = groups * self.draw(st.integers(1, 2))
        y = self.CONV(filters, groups=groups, use_bias=self.flag(),
                     activation=self.pick(ACTIVATIONS),
                     name=self.name("conv"), **kw)(x)
        if bn if bn is not None else self.flag(0.8):
            y = self.batchnorm(y)
        return y

    def depthwise(self, x):
        kw = self._kernel1d(x, causal="same")
        y = L.DepthwiseConv1D(
            depth_multiplier=self.draw(st.integers(1, 2)),
            use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
            name=self.name("dw"), **kw)(x)
        return self.batchnorm(y) if self.flag(0.7) else y

    def separable(self, x):
        kw = self._kernel1d(x, causal="valid")
        y = L.SeparableConv1D(
            self.draw(st.integers(2, 6)),
            depth_multiplier=self.draw(st.integers(1, 2)),
            use_bias=self.flag(), activation=self.pick(ACTIVATIONS),
            name=self.name("sep"), **kw)(x)
        return self.batchnorm(y) if self.flag(0.8) else y

    def shape_only(self, x):
        options = ["ZeroPadding1D", "Dropout"]
        if x.shape[1] >= 2:
            options += ["MaxPooling1D", "AveragePooling1D"]
        if x.shape[1] >= 4:
            options += ["Cropping1D"]
        if x.shape[1] <= 6:
            options += ["UpSampling1D"]
        kind = self.pick(options)
        name = self.name("shape")
        if kind.endswith("Pooling1D"):
            layer = getattr(L, kind)(2, padding=self.pick(["valid", "same"]),
                                     name=name)
        elif kind == "ZeroPadding1D":
            layer = L.ZeroPadding1D(self.pick([1, (1, 0)]), name=name)
        elif kind == "Cropping1D":
            layer = L.Cropping1D(1, name=name)
        elif kind == "UpSampling1D":
            layer = L.UpSampling1D(2, name=name)
        else:
            layer = L.Dropout(0.3, name=name)
        return layer(x)

    def merge(self, x):
        y = self.conv(x, filters=x.shape[-1], bn=True)
        if tuple(y.shape) != tuple(x.shape):
            return y
        kind = self.pick(MERGES)
        return getattr(L, kind)(name=self.name("merge"))([x, y])

    BLOCKS = ["conv", "conv", "depthwise", "separable", "activation",
              "shape_only", "merge"]

    GAP = L.GlobalAveragePooling1D

    def block(self, x):
        y = getattr(self, self.pick(self.BLOCKS))(x)
        return x if min(y.shape[1:-1]) < 1 else y

    def model(self, inputs, max_blocks):
        """Blocks on `inputs`, pooled or flattened into a Dense head."""
        x = inputs
        for _ in range(self.draw(st.integers(1, max_blocks))):
            x = self.block(x)
        if self.draw(st.booleans()):
            v = self.GAP(name=self.name("gap"))(x)
        else:
            v = L.Flatten(name=self.name("flat"))(x)
        if self.draw(st.booleans()):
            v = self.dense(v)
        return keras.Model(inputs, L.Dense(2, name=self.name("out"))(v))

    def activation(self, x):
        kind = self.pick(["Activation", "PReLU", "ops.relu", "ops.scale"])
        if kind == "Activation":
            return L.Activation(self.pick(ACTIVATIONS[1:]),
                                name=self.name("act"))(x)
        if kind == "PReLU":
            layer = L.PReLU(name=self.name("act"))
            y = layer(x)
            layer.alpha.assign(self.rng.uniform(0.1, 0.5, layer.alpha.shape))
            return y
        if kind == "ops.relu":
            return keras.ops.relu(x)
        return x * 1.5 + 0.25


def build_sequence(draw):
    """A random one-dimensional model."""
    b = SequenceBuilder(draw)
    inputs = keras.Input((draw(st.integers(5, 10)), draw(st.integers(2, 4))))
    return b.model(inputs, max_blocks=5)
