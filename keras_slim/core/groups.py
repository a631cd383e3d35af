"""The records the channel graph is made of: a call of a layer, and a group
of channels that must be cut together."""

import dataclasses

from keras_slim.core import rule_registry

__all__ = ["Call", "ChannelGroup", "collect_groups"]


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
        unit: what one index of the group is: `"channel"` (a position of
            the last axis of the tensors that carry it), or the key of a
            unit inside one layer that no tensor carries, such as
            `"heads"`: the heads of a MultiHeadAttention, named
            `"<layer>:heads"`, whose one member is that layer. Planners
            cut such a group like any other; the layer's rule cuts its
            weights (see docs/transformers.md).
    """

    name: str
    width: int
    producers: list
    batchnorms: list
    consumers: list
    members: list
    frozen: object = None
    unit: str = "channel"
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


def collect_groups(graph):
    """The `ChannelGroup`s of a `ChannelGraph`: one per union-find root,
    with the layers that create, scale, read and carry its channels."""
    find = graph.spaces.find
    roots = sorted({find(s) for s in range(len(graph.spaces.parent))})
    info = {r: {"producers": [], "batchnorms": [], "consumers": [],
                "members": [], "bn_positions": {}} for r in roots}

    def add(root, key, name):
        if name not in info[root][key]:
            info[root][key].append(name)

    for call in graph.calls:
        kind = call.role.kind
        name = graph.name_of(call.layer)
        if kind == rule_registry.BARRIER:
            continue
        in_roots = {
            find(seg.space)
            for key in call.inputs
            for seg in graph.layouts[key].segments
        }
        if kind == rule_registry.PRODUCER:
            add(find(graph.layer_output[id(call.layer)]), "producers", name)
            for layout in graph.layer_units.get(id(call.layer), {}).values():
                add(find(layout.segments[0].space), "members", name)
            for root in in_roots:
                add(root, "consumers", name)
            continue
        is_bn = rule_registry.rule_for(call.layer).scales_channels(call.layer)
        for root in in_roots:
            add(root, "batchnorms" if is_bn else "members", name)
            if is_bn and name not in info[root]["bn_positions"]:
                layout = graph.layer_input[id(call.layer)]
                info[root]["bn_positions"][name] = layout.channel_positions(
                    root, find
                )
    groups = []
    names = set()
    for root in roots:
        entry = info[root]
        unit = graph.unit_spaces.get(root)
        if unit is not None:
            name = graph.spaces.origin[root]
        elif entry["producers"]:
            name = entry["producers"][0]
        else:
            name = f"{graph.spaces.origin[root]}:out"
        while name in names:
            name += "'"
        names.add(name)
        groups.append(
            ChannelGroup(
                name=name,
                width=graph.spaces.width[root],
                producers=entry["producers"],
                batchnorms=entry["batchnorms"],
                consumers=entry["consumers"],
                members=entry["members"],
                frozen=graph.spaces.frozen_reason(root),
                unit=unit[1] if unit is not None else "channel",
                root=root,
                bn_positions=entry["bn_positions"],
            )
        )
    return groups
