"""The channel graph: which channels of a functional model are tied together.

`channel_groups(model)` reads a functional or Sequential Keras model (nested
models, shared layers and several inputs and outputs included) and returns its
coupled channel groups: sets of layer outputs whose channels can only be cut
together. It touches no weights.
"""

import math
import warnings
import weakref

from keras_slim.core import blocks, keras_compat, layer_configs, rule_registry
from keras_slim.core import layout as layout_lib
from keras_slim.core.groups import Call, ChannelGroup, collect_groups
from keras_slim.core.layout import Layout, Segment
from keras_slim.core.models import (  # noqa: F401  (re-exported)
    check_model,
    graph_of,
    is_graph_model,
    leaf_layers,
    ordered_nodes,
    overrides_call,
    unique_names,
)

__all__ = ["Call", "ChannelGraph", "ChannelGroup", "channel_groups",
           "check_model", "graph_of", "is_graph_model", "leaf_layers",
           "ordered_nodes"]

_WARNED = weakref.WeakKeyDictionary()  # model -> layer names warned about


class ChannelGraph:
    """The flattened graph of a model with the channel layout of each tensor.

    Attributes:
        model: the model read.
        calls: every call of a leaf layer or op, in execution order.
        shapes: tensor key -> static shape.
        layouts: tensor key -> `Layout`.
        spaces: the union-find over channel spaces.
        groups: the list of `ChannelGroup`.
        layer_input: id(layer) -> `Layout` of its input (shared layers tied).
        layer_output: id(layer) -> the space a producer creates.
        layer_slots: id(layer) -> {slot: `Layout`} of the inputs of a
            producer with several (`Role.inputs`) besides "in".
        layer_units: id(layer) -> {unit key: `Layout`} of the units inside
            a layer that no tensor carries (`Role.units`: heads).
        unit_spaces: space of such a unit -> (layer name, unit key).
        barriers: (layer name, reason) of each barrier met.
        output_keys: keys of the model's output tensors.
    """

    def __init__(self, model):
        check_model(model)
        self.model = model
        self.calls = []
        self.shapes = {}
        self.layouts = {}
        self.spaces = layout_lib.UnionFind()
        self.layer_input = {}
        self.layer_output = {}
        self.layer_slots = {}
        self.layer_units = {}
        self.unit_spaces = {}
        self.barriers = []
        self._alias = {}
        self._names = unique_names(model)
        graph = graph_of(model)
        input_keys = []
        for tensor in graph.inputs:
            key = ((), id(tensor))
            input_keys.append(key)
            self.shapes[key] = tuple(tensor.shape)
            width = _last_dim(tensor.shape) or 0
            name = keras_compat.produced_by(tensor)
            space = self.spaces.new(width, name, frozen=f"model input `{name}`")
            self.layouts[key] = Layout((Segment(space, width),))
        self.output_keys = self._walk(graph, (), input_keys)
        for key in self.output_keys:
            self._freeze(self.layouts[key], "model output")
        self._warn_barriers()
        self.groups = collect_groups(self)
        self.group_by_name = {g.name: g for g in self.groups}
        self._layer_by_name = {self.name_of(c.layer): c.layer
                               for c in self.calls}
        self._call_counts = {}
        for call in self.calls:
            key = id(call.layer)
            self._call_counts[key] = self._call_counts.get(key, 0) + 1
        self._group_by_root = {g.root: g for g in self.groups}

    # -- reading the graph ---------------------------------------------------

    def _key(self, scope, tensor):
        key = (scope, id(tensor))
        return self._alias.get(key, key)

    def _walk(self, model, scope, input_keys):
        for tensor, key in zip(model.inputs, input_keys):
            if scope:
                self._alias[(scope, id(tensor))] = key
        for node in ordered_nodes(model):
            inputs = [self._key(scope, t) for t in node.input_tensors]
            if any(k not in self.layouts for k in inputs):
                continue  # not reachable from the model's inputs
            op = node.operation
            if is_graph_model(op):
                inner_scope = scope + (id(node),)
                if overrides_call(op):
                    self._freeze_boundary(op, inputs)
                outputs = self._walk(graph_of(op), inner_scope, inputs)
                for tensor, key in zip(node.output_tensors, outputs):
                    self._alias[(scope, id(tensor))] = key
                if overrides_call(op):
                    self._freeze_boundary(op, outputs)
                continue
            outputs = []
            for tensor in node.output_tensors:
                key = (scope, id(tensor))
                self.shapes[key] = tuple(tensor.shape)
                outputs.append(key)
            first = self.shapes[inputs[0]] if inputs else ()
            call = Call(
                layer=op,
                node=node,
                inputs=inputs,
                outputs=outputs,
                input_shape=first,
                input_width=_last_dim(first),
                tensor_count=len(inputs),
            )
            self._process(call)
            self.calls.append(call)
        return [self._key(scope, t) for t in model.outputs]

    def _process(self, call):
        rule = rule_registry.rule_for(call.layer)
        try:
            role = rule.role(call.layer, call)
        except Exception as error:  # a rule that cannot read this layer
            role = rule_registry.Role(rule_registry.BARRIER, reason=str(error),
                                      warn=True)
        role = blocks.barrier_role(call.layer) or role  # an untraceable block
        role = blocks.elementwise_role(call.layer, call) or role  # a scalar affine
        call.role = role
        handler = {
            rule_registry.PRODUCER: self._producer,
            rule_registry.CHANNELWISE: self._channelwise,
            rule_registry.MERGE: self._merge,
            rule_registry.CONCAT: self._concat,
            rule_registry.FLATTEN: self._flatten,
        }.get(role.kind)
        if handler is None or not call.inputs or not handler(call):
            if role.kind != rule_registry.BARRIER:
                call.role = rule_registry.Role(
                    rule_registry.BARRIER,
                    reason=f"cannot follow the channels of {role.kind} "
                    f"layer `{call.layer.name}`",
                )
            self._barrier(call)

    def _out_width(self, call):
        if len(call.outputs) != 1:
            return None
        return _last_dim(self.shapes[call.outputs[0]])

    def _tie_layer_input(self, call, layout):
        previous = self.layer_input.get(id(call.layer))
        if previous is None:
            self.layer_input[id(call.layer)] = layout
        elif layer_configs.width_free(call.layer):
            pass  # its clone is the same whatever channels each call sees
        elif not self._unify(previous, layout):
            reason = f"shared layer `{call.layer.name}` sees different layouts"
            self._freeze(previous, reason)
            self._freeze(layout, reason)

    def _producer(self, call):
        width = self._out_width(call)
        slots = call.role.inputs or ("in",)
        if (width is None or len(slots) != call.tensor_count
                or slots[0] != "in"):
            return False
        self._tie_layer_input(call, self.layouts[call.inputs[0]])
        name = self.name_of(call.layer)
        if call.role.frozen_input:
            self._freeze(self.layouts[call.inputs[0]],
                         f"`{name}`: {call.role.frozen_input}")
        for slot, key in zip(slots[1:], call.inputs[1:]):
            if slot:
                self._tie_slot(call, slot, self.layouts[key])
            else:
                self._freeze(self.layouts[key],
                             f"`{name}` does not read it as channels")
        self._add_units(call)
        space = self.layer_output.get(id(call.layer))
        if space is None:
            frozen = call.role.frozen_output
            if frozen:
                frozen = f"`{call.layer.name}`: {frozen}"
            space = self.spaces.new(width, self.name_of(call.layer),
                                    frozen=frozen or None)
            self.layer_output[id(call.layer)] = space
        self.layouts[call.outputs[0]] = Layout((Segment(space, width),))
        return True

    def _tie_slot(self, call, slot, layout):
        slots = self.layer_slots.setdefault(id(call.layer), {})
        previous = slots.get(slot)
        if previous is None:
            slots[slot] = layout
        elif not self._unify(previous, layout):
            reason = f"shared layer `{call.layer.name}` sees different layouts"
            self._freeze(previous, reason)
            self._freeze(layout, reason)

    def _add_units(self, call):
        """The spaces of the units inside the layer (heads), one per layer
        however often it is called."""
        units = self.layer_units.setdefault(id(call.layer), {})
        name = self.name_of(call.layer)
        for key, width in call.role.units:
            if key in units:
                continue
            space = self.spaces.new(width, f"{name}:{key}")
            self.unit_spaces[space] = (name, key)
            units[key] = Layout((Segment(space, width),))

    def _channelwise(self, call):
        if call.tensor_count != 1:
            return False
        layout = self.layouts[call.inputs[0]]
        out = layout.expanded(call.role.expand)
        if out.size != self._out_width(call):
            return False
        self._tie_layer_input(call, layout)
        self.layouts[call.outputs[0]] = out
        return True

    def _merge(self, call):
        width = self._out_width(call)
        if width is None:
            return False
        layouts = [self.layouts[k] for k in call.inputs]
        full = [lay for lay in layouts if lay.size == width]
        if not full:
            return False
        for lay in layouts:
            if lay.size != width:
                if lay.size != 1:
                    return False
                # A one-channel input broadcast over all channels.
                self._freeze(lay, f"broadcast in `{call.layer.name}`")
        for lay in full[1:]:
            if not full[0].compatible(lay):
                return False
        for lay in full[1:]:
            self._unify(full[0], lay)
        self.layouts[call.outputs[0]] = full[0]
        return True

    def _concat(self, call):
        out = layout_lib.concatenate([self.layouts[k] for k in call.inputs])
        if out is None or out.size != self._out_width(call):
            return False
        self.layouts[call.outputs[0]] = out
        return True

    def _flatten(self, call):
        layout = self.layouts[call.inputs[0]]
        spatial = call.input_shape[1:-1]
        if layout.tile != 1 or any(d is None for d in spatial):
            return False
        out = layout.tiled(int(math.prod(spatial)))
        if out.size != self._out_width(call):
            return False
        self.layouts[call.outputs[0]] = out
        return True

    def _barrier(self, call):
        reason = call.role.reason or "barrier"
        name = self.name_of(call.layer)
        for key in call.inputs:
            self._freeze(self.layouts[key], f"`{name}`: {reason}")
        for key in call.outputs:
            width = _last_dim(self.shapes[key]) or 0
            space = self.spaces.new(width, name, frozen=f"`{name}`: {reason}")
            self.layouts[key] = Layout((Segment(space, width),))
        self.barriers.append((name, reason, call.role.warn))

    def _unify(self, a, b):
        if not a.compatible(b):
            return False
        for sa, sb in zip(a.segments, b.segments):
            self.spaces.union(sa.space, sb.space)
        return True

    def _freeze(self, layout, reason):
        for seg in layout.segments:
            self.spaces.freeze(seg.space, reason)

    def _freeze_boundary(self, model, keys):
        """A nested model that overrides `call` computes what its graph
        does not say; its inputs and outputs keep every channel."""
        reason = (f"nested model `{model.name}` ({type(model).__name__}) "
                  "overrides `call`")
        for key in keys:
            self._freeze(self.layouts[key], reason)

    def name_of(self, layer):
        """The name plans and groups give `layer`: its own, or, where two
        layers of nested models share it, prefixed by the nested model's
        path (`left/conv`)."""
        return self._names.get(id(layer), layer.name)

    def _warn_barriers(self):
        unknown = {}
        for name, reason, warn in self.barriers:
            warned = _WARNED.setdefault(self.model, set())
            if warn and name not in warned:
                warned.add(name)
                layer_type = next(
                    type(c.layer).__name__ for c in self.calls
                    if self.name_of(c.layer) == name
                )
                unknown.setdefault((layer_type, reason), []).append(name)
        for (layer_type, reason), names in unknown.items():
            shown = ", ".join(f"`{n}`" for n in names[:3])
            if len(names) > 3:
                shown += f" and {len(names) - 3} more"
            why = "" if reason == "unknown layer type" else f", {reason}"
            warnings.warn(
                f"keras_slim does not know how channels flow through "
                f"{layer_type} (layer {shown}{why}); the channels it touches "
                "are kept whole. Register a rule for this exact class with "
                "keras_slim.register_rule to prune through it.",
                stacklevel=3,
            )

    # -- groups -------------------------------------------------------------

    def group_of_space(self, space):
        return self._group_by_root[self.spaces.find(space)]

    def layer(self, name):
        """The leaf layer (or op) called `name` in the flattened graph."""
        return self._layer_by_name[name]

    def call_count(self, layer):
        """How many times `layer` is called in the flattened graph."""
        return self._call_counts.get(id(layer), 0)

    def group_of_root(self, root):
        return self._group_by_root[root]

    def kept_positions(self, layout, kept):
        """Kept positions of a layout, or `None` when nothing is cut.

        Args:
            layout: a `Layout`.
            kept: dict group name -> sorted kept channel indices.
        """
        def channels(space):
            return kept.get(self.group_of_space(space).name)

        if all(channels(seg.space) is None for seg in layout.segments):
            return None
        return layout.positions(channels)


def _last_dim(shape):
    shape = tuple(shape)
    if len(shape) < 2:
        return 1 if len(shape) == 1 else None
    return shape[-1]


def channel_groups(model):
    """The coupled channel groups of a functional or Sequential model.

    Args:
        model: a functional or Sequential `keras.Model` (nested models,
            shared layers, several inputs and outputs are fine).

    Returns:
        A list of `ChannelGroup`, one per set of channels that can only be
        cut together, in the order their producers run. Groups that touch a
        model input, a model output or a layer keras_slim does not know are
        `frozen` (kept whole).

    Raises:
        TypeError: `model` is not a Keras model or is a subclassed model.

    Example:

    >>> groups = keras_slim.channel_groups(model)
    >>> [(g.name, g.width) for g in groups if g.prunable]
    """
    return ChannelGraph(model).groups
