"""The records the channel graph is made of: a call of a layer, and a group
of channels that must be cut together."""

import dataclasses

__all__ = ["Call", "ChannelGroup"]


@dataclasses.dataclass
class ChannelGroup:
    """Channels that must be cut together.

    Attributes:
        name: the group's name, that of its first producer layer (or of the
            input or barrier it comes from). Plans are keyed by it.
        width: number of channels.
        producers: names of the layers that create these channels
            (convolutions, Dense, the pointwise part of SeparableConv).
        batchnorms: names of the BatchNormalization layers that scale them.
        consumers: names of the layers that read them and mix them into new
            channels; their input side is cut.
        members: names of the other layers these channels pass through
            (activations, pooling, depthwise convolutions, merges, ...).
        frozen: why the group cannot be cut (a model input or output, a
            barrier layer), or `None` when it can.
    """

    name: str
    width: int
    producers: list
    batchnorms: list
    consumers: list
    members: list
    frozen: object = None
    root: int = dataclasses.field(default=-1, repr=False)
    bn_positions: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def prunable(self):
        return self.frozen is None


@dataclasses.dataclass
class Call:
    """One call of a leaf layer (or op) in the flattened graph."""

    layer: object
    node: object
    inputs: list
    outputs: list
    input_shape: tuple
    input_width: object
    tensor_count: int
    role: object = None
