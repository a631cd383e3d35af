"""The gamma-W rescaling trick of Ye et al. (ICLR 2018).

`rescale_gammas(model, alpha)` multiplies the gamma and beta of each
BatchNormalization by `alpha` and the weights of the layers that read its
output by `1 / alpha`. For `alpha > 0` the model computes the same function
wherever the BatchNormalization output reaches those layers only through
positively homogeneous operations (`f(alpha * x) = alpha * f(x)`: ReLU,
LeakyReLU, PReLU, linear activations, max and average pooling, dropout,
reshapes and padding, and sums or concatenations of tensors all scaled by
`alpha`). ReLU6 and other capped, saturating or shifted activations are not
homogeneous, nor is a sum with an unscaled tensor (an identity shortcut), a
second normalization, or a model output; BatchNormalization layers whose
output meets one are left alone.
"""

import math
import numbers
import warnings

import keras

from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rule_registry import rule_for
from keras_slim.sparsity import regularizers as regularizers_lib

__all__ = ["rescale_gammas"]


def _trace(graph, candidates):
    """Follow the scale of each candidate BatchNormalization through `graph`.

    Returns:
        `(bad, absorbers)`: dict of BatchNormalization names whose scale
        meets a layer it cannot pass (name -> that layer), and the list of
        absorbing layers reached by a scaled input.
    """
    state = {}
    bad = {}
    absorber_calls = {}

    def spoil(names, where):
        for name in names:
            bad.setdefault(name, where)

    for call in graph.calls:
        layer = call.layer
        rule = rule_for(layer)
        inputs = [state.get(key, frozenset()) for key in call.inputs]
        scaled = frozenset().union(*inputs) if inputs else frozenset()
        out = frozenset()
        if layer.name in candidates:  # chosen BatchNormalization layers
            spoil(scaled, layer.name)
            out = frozenset([layer.name])
        elif not scaled:
            pass
        elif rule.passes_scale(layer, len(inputs)):
            if all(inputs):
                out = scaled
            else:
                spoil(scaled, f"{layer.name} (adds an unscaled tensor)")
        elif len(inputs) == 1 and rule.absorbed_weight(layer) is not None:
            absorber_calls.setdefault(id(layer), (layer, []))[1].append(scaled)
        else:
            spoil(scaled, layer.name)
        for key in call.outputs:
            state[key] = out
    for key in graph.output_keys:
        spoil(state.get(key, frozenset()), "a model output")
    absorbers = []
    for layer, scales in absorber_calls.values():
        calls = graph.call_count(layer)
        if len(scales) != calls:
            spoil(frozenset().union(*scales), f"{layer.name} (shared layer)")
        else:
            absorbers.append(layer)
    return bad, absorbers


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(
            f"Expected `alpha` to be a positive number. Received: alpha={alpha!r}"
        )
    alpha = float(alpha)
    if math.isnan(alpha) or math.isinf(alpha) or alpha <= 0:
        raise ValueError(
            "Expected `alpha` to be a finite number > 0 (a negative scale "
            f"does not pass through ReLU). Received: alpha={alpha!r}"
        )
    return alpha


def rescale_gammas(model, alpha, layers=None):
    """A copy of `model` with BatchNormalization scales multiplied by `alpha`.

    Each rescalable BatchNormalization's gamma and beta are multiplied by
    `alpha` and the input-side weights of the layers that read its output
    (convolutions, Dense, the depthwise kernel of separable and depthwise
    convolutions) by `1 / alpha`, so the copy computes the same function.
    A BatchNormalization whose output reaches a layer through something
    that is not positively homogeneous (ReLU6, sigmoid, an identity
    shortcut, another normalization, a model output) is left alone; all
    such layers are named in one warning. `rescale_gammas(copy, 1 / alpha)`
    undoes the change. Ye et al. use `alpha = 0.01` before ISTA on a
    pretrained network, so that a small `rho` moves gammas quickly.

    The training objective is preserved too: an `L2` weight decay on a
    weight scaled by `1 / alpha` gets its coefficient times `alpha**2`, an
    `L1` times `alpha` (both parts of `L1L2`), so the penalty keeps its
    value and its pull (without this, `alpha = 0.01` makes a weight decay
    10,000 times stronger). A regularizer of another kind is left as it is
    and named in a warning.

    Args:
        model: a functional or Sequential `keras.Model`; left untouched.
        alpha: the factor, a finite number > 0.
        layers: names of the BatchNormalization layers to rescale, or
            `None` for all of them.

    Returns:
        A new, uncompiled `keras.Model` with the same layer names.

    Raises:
        TypeError: `model` is not a functional or Sequential model, or
            `alpha` is not a number.
        ValueError: `alpha` is not a finite positive number, or the model
            has no BatchNormalization layer with a gamma.

    Example:

    >>> scaled = keras_slim.rescale_gammas(model, 0.01)
    >>> # ... ISTA training, pruning ...
    >>> restored = keras_slim.rescale_gammas(slim, 100.0)
    """
    alpha = _check_alpha(alpha)
    copy = regularizers_lib.copy_model(model)
    chosen = regularizers_lib.select_batchnorms(copy, layers)
    candidates = {layer.name for layer in chosen}
    graph = ChannelGraph(copy)
    reasons = {}
    while True:
        bad, absorbers = _trace(graph, candidates)
        if not bad:
            break
        reasons.update(bad)
        candidates -= set(bad)
    if reasons:
        listed = ", ".join(f"`{n}` (reaches {w})" for n, w in reasons.items())
        warnings.warn(
            "rescale_gammas left these BatchNormalization layers alone, "
            f"since rescaling them would change the model: {listed}.",
            stacklevel=2,
        )
    for layer in chosen:
        if layer.name not in candidates:
            continue
        layer.gamma.assign(regularizers_lib.to_array(layer.gamma) * alpha)
        if layer.center:
            layer.beta.assign(regularizers_lib.to_array(layer.beta) * alpha)
    unknown = []
    for layer in absorbers:
        weight = getattr(layer, rule_for(layer).absorbed_weight(layer))
        weight.assign(regularizers_lib.to_array(weight) / alpha)
        if not _rescale_penalty(layer, weight, alpha):
            unknown.append(layer.name)
    if unknown:
        warnings.warn(
            "rescale_gammas scaled the weights of these layers by 1 / alpha "
            "but could not rescale their regularizer (not L1, L2 or L1L2), "
            "so the training objective changed: "
            + ", ".join(f"`{n}`" for n in unknown) + ".",
            stacklevel=2,
        )
    return copy


def _rescale_penalty(layer, weight, alpha):
    """Scale the regularizer of `weight` (just divided by `alpha`) so that
    its penalty keeps its value; False for a kind it cannot scale."""
    penalty = getattr(weight, "regularizer", None)
    if penalty is None:
        return True
    kinds = keras.regularizers
    if type(penalty) is kinds.L2:
        scaled = kinds.L2(float(penalty.l2) * alpha**2)
    elif type(penalty) is kinds.L1:
        scaled = kinds.L1(float(penalty.l1) * alpha)
    elif type(penalty) is kinds.L1L2:
        scaled = kinds.L1L2(l1=float(penalty.l1) * alpha,
                            l2=float(penalty.l2) * alpha**2)
    else:
        return False
    weight.regularizer = scaled
    for name, value in vars(layer).items():  # what get_config saves
        if value is penalty and name.endswith("regularizer"):
            setattr(layer, name, scaled)
    return True
