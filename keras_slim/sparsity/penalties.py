"""Per-channel penalty weights `lambda_l` for ISTA on BatchNormalization gammas.

Ye et al. (ICLR 2018, Section 4.2) weight the lasso term of each layer by its
memory cost per channel:

    lambda_l = (k_w * k_h * c_in                 # the channel's filter
                + sum over consumers of k_w' * k_h' * c_out'   # its slices
                + I_w^l * I_h^l)                 # its feature map
               / (I_w * I_h)

Here the terms are read from the channel graph: the kernels of every layer
that creates the channel (all producers of its group, so both branches of a
residual sum), the kernel slices of every layer that reads it (a Dense after
`Flatten` reads a channel at each spatial position, and a separable
convolution counts its depthwise and pointwise parts), the depthwise kernels
the channel passes through, and the spatial size of the BatchNormalization's
input. keras_slim then divides the weights by their mean over all penalised
channels (instead of by the input image size), so that `penalty="memory"`
and `penalty="uniform"` put the same average weight on a gamma and one `rho`
scale works across model sizes.
"""

import math
import numbers

import numpy as np

from keras_slim.core.graph import ChannelGraph

__all__ = ["memory_costs", "penalty_weights"]

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _kernel_sizes(layer):
    sizes = []
    for name in KERNELS:
        weight = getattr(layer, name, None)
        if weight is not None and hasattr(weight, "shape"):
            sizes.append(math.prod(weight.shape))
    return sizes


def _producer_cost(layer, width):
    """Weights per output channel of a layer that creates channels."""
    weight = getattr(layer, "kernel", None)
    if weight is None:
        weight = getattr(layer, "pointwise_kernel", None)
    if weight is None or not width:
        return 0.0
    return math.prod(weight.shape) / width


def _input_side_cost(graph, layer, root):
    """Weights one channel of group `root` owns in a layer that reads it:
    its slice of a consumer's kernel, or the depthwise kernel of a
    channelwise layer (depthwise or one-channel-a-group convolution) it
    passes through; zero for layers without kernels."""
    layout = graph.layer_input.get(id(layer))
    if layout is None or not layout.size:
        return 0.0
    matrix = layout.channel_positions(root, graph.spaces.find)
    if matrix is None:
        return 0.0
    positions = matrix.shape[1]
    return sum(_kernel_sizes(layer)) / layout.size * positions


def memory_costs(model, batchnorms):
    """Un-normalised memory cost of each gamma entry of each BatchNormalization.

    Args:
        model: a functional or Sequential `keras.Model`.
        batchnorms: the BatchNormalization layers to weigh.

    Returns:
        dict layer name -> float64 array shaped like the layer's gamma.
    """
    graph = ChannelGraph(model)
    layers = {}
    bn_input_shape = {}
    for call in graph.calls:
        layers.setdefault(call.layer.name, call.layer)
        if call.inputs:
            bn_input_shape.setdefault(call.layer.name, graph.shapes[call.inputs[0]])
    costs = {}
    wanted = {layer.name for layer in batchnorms}
    for layer in batchnorms:
        costs[layer.name] = np.zeros(int(np.prod(layer.gamma.shape)))
    for group in graph.groups:
        touched = [name for name in group.batchnorms if name in wanted]
        if not touched:
            continue
        kernel_terms = sum(
            _producer_cost(layers[name], group.width) for name in group.producers
        )
        kernel_terms += sum(
            _input_side_cost(graph, layers[name], group.root)
            for name in group.consumers + group.members
        )
        for name in touched:
            shape = bn_input_shape.get(name, ())
            spatial = [d for d in shape[1:-1] if d is not None]
            feature_map = float(math.prod(spatial)) if spatial else 1.0
            matrix = group.bn_positions[name]
            costs[name][np.asarray(matrix).ravel()] = kernel_terms + feature_map
    missing = [layer.name for layer in batchnorms if layer.name not in layers]
    if missing:
        raise ValueError(
            f"BatchNormalization layers {missing} are not called in the graph "
            f"of model `{model.name}`; their memory cost cannot be read."
        )
    return costs


def penalty_weights(model, batchnorms, penalty="memory"):
    """Per-gamma penalty weights `lambda`, one array per BatchNormalization.

    Args:
        model: the `keras.Model` holding `batchnorms`.
        batchnorms: the BatchNormalization layers to penalise.
        penalty: `"memory"` (Ye et al.'s memory cost per channel, divided by
            its mean over all penalised channels), `"uniform"` (every
            weight 1), or a dict mapping layer names to a number or an array
            shaped like that layer's gamma (used as given; layers it does
            not name get 0).

    Returns:
        dict layer name -> float64 array shaped like the layer's gamma.

    Raises:
        ValueError: `penalty` is an unknown name, or has negative, NaN or
            wrongly shaped weights.
        TypeError: `penalty` is neither a name nor a dict, or `"memory"` was
            asked of a model whose graph cannot be read.
    """
    sizes = {}
    for layer in batchnorms:
        if sizes.get(layer.name, layer) is not layer:
            raise ValueError(
                f"Two different BatchNormalization layers are named "
                f"`{layer.name}` in model `{model.name}`; penalty weights "
                "are kept by layer name. Give each nested model's layers "
                "unique names."
            )
        sizes[layer.name] = layer
    sizes = {name: int(np.prod(layer.gamma.shape)) for name, layer in sizes.items()}
    if isinstance(penalty, str):
        if penalty == "uniform":
            return {name: np.ones(size) for name, size in sizes.items()}
        if penalty != "memory":
            raise ValueError(
                'Expected `penalty` to be "memory", "uniform" or a dict of '
                f"per-layer weights. Received: penalty={penalty!r}"
            )
        costs = memory_costs(model, batchnorms)
        mean = np.mean(np.concatenate(list(costs.values())))
        if not mean > 0:
            return {name: np.ones(size) for name, size in sizes.items()}
        return {name: cost / mean for name, cost in costs.items()}
    if not isinstance(penalty, dict):
        raise TypeError(
            'Expected `penalty` to be "memory", "uniform" or a dict of '
            f"per-layer weights. Received: penalty={penalty!r}"
        )
    unknown = sorted(set(penalty) - set(sizes))
    if unknown:
        raise ValueError(
            "Expected `penalty` to name penalised BatchNormalization layers. "
            f"Received unknown names: {unknown}"
        )
    weights = {}
    for name, size in sizes.items():
        value = penalty.get(name, 0.0)
        if isinstance(value, numbers.Real):
            array = np.full(size, float(value))
        else:
            array = np.asarray(value, dtype="float64").ravel()
        if array.shape != (size,) or np.any(np.isnan(array)) or np.any(array < 0):
            raise ValueError(
                f"Expected `penalty[{name!r}]` to be a number >= 0 or {size} "
                f"such numbers. Received: {value!r}"
            )
        weights[name] = array
    return weights
