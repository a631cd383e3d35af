"""Counting a pruned model from its group widths, without building it.

`WidthCounter(model)` reads the channel graph once; then `macs(widths)` and
`params(widths)` give the multiply-accumulates and parameters of the model
`slim_model` would build when each channel group keeps `widths[name]`
channels. Which channels are kept does not change the counts, only how
many, so a budget search can try hundreds of plans for the price of one
graph walk. Keras and NumPy only.
"""

import math
import types

import keras
import numpy as np

from keras_slim.core import rule_registry
from keras_slim.core.counting import count_params
from keras_slim.core.graph import ChannelGraph

__all__ = ["plan_widths", "WidthCounter"]


def plan_widths(plan):
    """dict group name -> kept width of a `PruningPlan`."""
    return {name: int(len(kept)) for name, kept in plan.kept.items()}


class WidthCounter:
    """MACs and parameters of a model as functions of its group widths.

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input
            size, or its `ChannelGraph`.

    Example:

    >>> counter = WidthCounter(model)
    >>> counter.macs(plan_widths(plan)) == count_macs(slim_model(model, plan))
    True

    The parameter count is that of `slim_model(..., fold="none")`;
    folding can add one bias vector to a bias-free layer that has no
    BatchNormalization after it.
    """

    def __init__(self, model):
        graph = model if isinstance(model, ChannelGraph) else ChannelGraph(model)
        self.graph = graph
        self.full = {g.name: g.width for g in graph.groups}
        self._mac_calls = []
        for call in graph.calls:
            rule = rule_registry.rule_for(call.layer)
            if type(rule).macs is rule_registry.Rule.macs:
                continue
            if call.role.kind == rule_registry.BARRIER:
                in_layout = out_layout = None
            else:
                in_layout = graph.layouts[call.inputs[0]]
                out_layout = graph.layouts[call.outputs[0]]
            self._mac_calls.append((
                call, rule, graph.shapes[call.inputs[0]],
                graph.shapes[call.outputs[0]], in_layout, out_layout,
            ))
        self._layers = []
        seen = set()
        for call in graph.calls:
            layer = call.layer
            if not isinstance(layer, keras.layers.Layer) or id(layer) in seen:
                continue
            seen.add(id(layer))
            if call.role.kind == rule_registry.BARRIER or not layer.weights:
                continue
            layer_in = graph.layer_input.get(id(layer))
            if layer_in is None:
                layer_in = graph.layouts[call.inputs[0]]
            out = (graph.layouts[call.outputs[0]]
                   if len(call.outputs) == 1 else None)
            shapes = {v.name: tuple(v.shape) for v in layer.weights}
            self._layers.append((layer, call, layer_in, out, shapes))
        self.dense_params = count_params(graph.model)
        self.dense_macs = self.macs({})

    # -- sizes ---------------------------------------------------------------

    def size(self, layout, widths):
        """Kept positions of `layout` when groups keep `widths`."""
        total = 0
        for seg in layout.segments:
            name = self.graph.group_of_space(seg.space).name
            total += widths.get(name, seg.width) * seg.expand
        return total * layout.tile

    def call_sizes(self, call_index, widths):
        """(kept input size, kept output size) of the `call_index`-th
        counted call."""
        _, _, in_shape, out_shape, in_layout, out_layout = \
            self._mac_calls[call_index]
        if in_layout is None:
            return in_shape[-1], out_shape[-1]
        return self.size(in_layout, widths), self.size(out_layout, widths)

    def calls_by_group(self):
        """dict group name -> indices of the counted calls whose input or
        output width depends on the group."""
        found = {}
        for index, entry in enumerate(self._mac_calls):
            for layout in entry[4:]:
                if layout is None:
                    continue
                for seg in layout.segments:
                    name = self.graph.group_of_space(seg.space).name
                    calls = found.setdefault(name, [])
                    if index not in calls:
                        calls.append(index)
        return found

    @property
    def counted_calls(self):
        """The calls that count MACs, in execution order."""
        return [entry[0] for entry in self._mac_calls]

    # -- counts ----------------------------------------------------------------

    def call_macs(self, call_index, widths):
        call, rule, in_shape, out_shape, _, _ = self._mac_calls[call_index]
        k_in, k_out = self.call_sizes(call_index, widths)
        layer = call.layer
        groups = getattr(layer, "groups", 1)
        if isinstance(groups, int) and groups > 1 and \
                call.role.kind == rule_registry.CHANNELWISE:
            # A depthwise-like grouped convolution keeps one group a channel.
            layer = types.SimpleNamespace(kernel_size=layer.kernel_size,
                                          groups=k_in)
        return int(rule.macs(layer, in_shape[:-1] + (k_in,),
                             out_shape[:-1] + (k_out,)))

    def macs(self, widths):
        """Multiply-accumulates (`count_macs` convention) at `widths`.

        Args:
            widths: dict group name -> kept width; groups not named keep
                their full width.
        """
        return sum(self.call_macs(i, widths)
                   for i in range(len(self._mac_calls)))

    def params(self, widths):
        """Parameters (`count_params`) of the slim model at `widths`."""
        total = self.dense_params
        for layer, call, layer_in, out, shapes in self._layers:
            sizes = {
                "in": self.size(layer_in, widths),
                "mid": self.size(layer_in.expanded(call.role.expand), widths),
                "out": self.size(out, widths) if out is not None else None,
            }
            full = {
                "in": layer_in.size,
                "mid": layer_in.expanded(call.role.expand).size,
                "out": out.size if out is not None else None,
            }
            if all(sizes[k] == full[k] for k in sizes):
                continue
            before = sum(math.prod(s) for s in shapes.values())
            total += self._layer_params(layer, shapes, sizes, full) - before
        return int(total)

    @staticmethod
    def _layer_params(layer, shapes, sizes, full):
        rule = rule_registry.rule_for(layer)
        if type(rule).slice is rule_registry.Rule.slice:
            count = 0
            for name, shape in shapes.items():
                shape = list(shape)
                for axis, which in rule.axes.get(name, {}).items():
                    if sizes[which] is not None:
                        shape[axis] = sizes[which]
                count += math.prod(shape)
            return count
        # A rule with its own slicing: slice stand-in arrays of the same
        # shapes (broadcast zeros take no memory) and count the result.
        weights = {name: np.broadcast_to(np.float32(0), shape)
                   for name, shape in shapes.items()}
        pos = {k: (None if sizes[k] is None or sizes[k] == full[k]
                   else np.arange(sizes[k])) for k in sizes}
        _, sliced = rule.slice(layer, weights, pos)
        return sum(int(np.size(v)) for v in sliced.values())
