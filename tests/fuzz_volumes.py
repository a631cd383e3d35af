"""Random three-dimensional models for the fuzzer (see fuzz_models.py)."""

import keras
from hypothesis import strategies as st

from tests.fuzz_sequences import SequenceBuilder

L = keras.layers


class VolumeBuilder(SequenceBuilder):
    """Three-dimensional models: Conv3D (grouped included),
    Conv3DTranspose, 3D pooling, padding, cropping and upsampling; the
    convolution block, merges and activations are the one-dimensional
    builder's with a 3D kernel."""

    CONV = L.Conv3D
    MAX_FILTERS = 5

    def conv_kernel(self, x):
        size = min(x.shape[1:4])
        kernel = self.pick([k for k in (1, 2, 3) if k <= size])
        padding = self.pick(["valid", "same"])
        strides = 2 if size >= 4 and self.flag(0.2) else 1
        dilation = 1
        if strides == 1 and kernel > 1 and self.flag(0.2) and (
                padding == "same" or size >= 1 + 2 * (kernel - 1)):
            dilation = 2
        return dict(kernel_size=kernel, padding=padding, strides=strides,
                    dilation_rate=dilation)

    def transpose(self, x):
        y = L.Conv3DTranspose(
            self.draw(st.integers(2, 4)), self.pick([1, 2]),
            strides=self.pick([1, 2]) if max(x.shape[1:4]) <= 4 else 1,
            padding=self.pick(["valid", "same"]), use_bias=self.flag(),
            name=self.name("convT"))(x)
        return self.batchnorm(y) if self.flag(0.7) else y

    def shape_only(self, x):
        size = min(x.shape[1:4])
        options = ["ZeroPadding3D", "SpatialDropout3D"]
        if size >= 2:
            options += ["MaxPooling3D", "AveragePooling3D"]
        if size >= 4:
            options += ["Cropping3D"]
        if max(x.shape[1:4]) <= 3:
            options += ["UpSampling3D"]
        kind = self.pick(options)
        name = self.name("shape")
        if kind.endswith("Pooling3D"):
            layer = getattr(L, kind)(2, padding=self.pick(["valid", "same"]),
                                     name=name)
        elif kind == "ZeroPadding3D":
            layer = L.ZeroPadding3D(self.pick([1, (1, 0, 1)]), name=name)
        elif kind == "Cropping3D":
            layer = L.Cropping3D(1, name=name)
        elif kind == "UpSampling3D":
            layer = L.UpSampling3D(2, name=name)
        else:
            layer = L.SpatialDropout3D(0.3, name=name)
        return layer(x)

    BLOCKS = ["conv", "conv", "transpose", "activation", "shape_only",
              "merge"]
    GAP = L.GlobalAveragePooling3D


def build_volume(draw):
    """A random three-dimensional model."""
    b = VolumeBuilder(draw)
    size = draw(st.integers(3, 6))
    inputs = keras.Input((size, size, draw(st.integers(3, 5)),
                          draw(st.integers(2, 3))))
    return b.model(inputs, max_blocks=4)
