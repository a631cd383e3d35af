"""Per-group tables of a model: widths, parameters, MACs, gamma statistics.

Plain Keras and NumPy; `report.py` draws them and the CLI prints them.
"""

import dataclasses
import math

import keras
import numpy as np

from keras_slim.core import counting, propagation
from keras_slim.core.counting import count_macs, count_params
from keras_slim.core.graph import ChannelGraph
from keras_slim.planners.criteria import bn_gamma_scores

__all__ = [
    "batchnorm_gammas",
    "compare_rows",
    "compare_table",
    "format_table",
    "GroupSummary",
    "human",
    "inspect_table",
    "summarize",
]

OTHER = "(other)"  # layers of frozen groups, heads, inputs


@dataclasses.dataclass
class GroupSummary:
    """One prunable channel group (or the rest of the model).

    Attributes:
        name: the group's name (its first producer), or "(other)".
        layers: names of its producers and BatchNormalization layers.
        width: number of channels (`None` for "(other)").
        params: parameters of the layers whose output carries its channels.
        macs: their multiply-accumulates for one example.
        gammas: per channel, the largest |gamma| over its BatchNormalization
            layers (empty when none scales it).
    """

    name: str
    layers: list
    width: object
    params: float
    macs: float
    gammas: np.ndarray

    @property
    def gamma_min(self):
        return float(self.gammas.min()) if self.gammas.size else None

    @property
    def gamma_median(self):
        return float(np.median(self.gammas)) if self.gammas.size else None

    @property
    def gamma_zeros(self):
        return int(np.sum(self.gammas == 0)) if self.gammas.size else None


def _layer_costs(graph):
    """Parameters (once per layer) and MACs (every call) by layer name."""
    params = {}
    for call in graph.calls:
        layer = call.layer
        if isinstance(layer, keras.layers.Layer) and layer.name not in params:
            params[layer.name] = sum(math.prod(v.shape) for v in layer.weights)
    return params, counting.macs_by_layer(graph, strict=False)


def summarize(model):
    """One `GroupSummary` per prunable channel group, then "(other)".

    The parameters and MACs of a layer go to the group its output channels
    belong to (shared in proportion to width when it carries several, as a
    BatchNormalization after a concatenation does); "(other)" holds the
    rest, so that the rows add up to `count_params` and `count_macs`.

    Args:
        model: a functional or Sequential `keras.Model`.

    Returns:
        A list of `GroupSummary`.
    """
    graph = ChannelGraph(model)
    params, macs = _layer_costs(graph)
    owners = {}
    for group in graph.groups:
        if not group.prunable:
            continue
        for name in group.producers + group.batchnorms + group.members:
            owners.setdefault(name, []).append(group)
    shares = {}
    for name, groups in owners.items():
        total = sum(g.width for g in groups)
        for g in groups:
            shares.setdefault(g.name, []).append((name, g.width / total))
    rows = []
    for group in graph.groups:
        if not group.prunable:
            continue
        entries = shares.get(group.name, [])
        gammas = np.zeros(0)
        if group.batchnorms:
            scores = bn_gamma_scores(graph, group)
            if np.all(np.isfinite(scores)):
                gammas = scores
        rows.append(GroupSummary(
            name=group.name,
            layers=group.producers + group.batchnorms,
            width=group.width,
            params=sum(params.get(n, 0) * s for n, s in entries),
            macs=sum(macs.get(n, 0) * s for n, s in entries),
            gammas=gammas,
        ))
    total_params = count_params(model)
    try:
        total_macs = count_macs(model)
    except ValueError:  # unknown input size: MACs of the known layers only
        total_macs = sum(macs.values())
    rows.append(GroupSummary(
        name=OTHER, layers=[], width=None,
        params=total_params - sum(r.params for r in rows),
        macs=total_macs - sum(r.macs for r in rows),
        gammas=np.zeros(0),
    ))
    return rows


def batchnorm_gammas(model):
    """|gamma| of every BatchNormalization layer with a scale, by name."""
    graph = ChannelGraph(model)
    result = {}
    for call in graph.calls:
        layer = call.layer
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            result.setdefault(
                layer.name, np.abs(propagation.to_numpy(layer.gamma)).ravel()
            )
    return result


def human(number):
    """12345678 -> '12.3M'."""
    if number is None:
        return "-"
    number = float(number)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= size:
            return f"{number / size:.3g}{unit}"
    return f"{number:.3g}" if number != int(number) else str(int(number))


def format_table(header, rows, align=None):
    """A plain-text table; `align` is a string of "<" and ">" per column."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align = align or "<" + ">" * (len(header) - 1)
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(
            f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)
        ).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _gamma(value):
    return "-" if value is None else f"{value:.3g}"


def _short(names, limit=40):
    text = ", ".join(names)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def inspect_table(rows):
    """The `keras-slim inspect` table of `summarize(model)`."""
    body = []
    for r in rows:
        body.append([
            r.name, _short(r.layers), "-" if r.width is None else r.width,
            human(r.params), human(r.macs), _gamma(r.gamma_min),
            _gamma(r.gamma_median),
            "-" if r.gamma_zeros is None else r.gamma_zeros,
        ])
    body.append(["total", "", sum(r.width or 0 for r in rows),
                 human(sum(r.params for r in rows)),
                 human(sum(r.macs for r in rows)), "", "",
                 sum(r.gamma_zeros or 0 for r in rows)])
    header = ["group", "layers", "width", "params", "MACs", "gamma min",
              "gamma median", "zero gammas"]
    return format_table(header, body, "<<>>>>>>")


def _change(before, after):
    if not before:
        return "-"
    return f"{(after - before) / before:+.1%}"


def compare_rows(dense_rows, slim_rows, extra=None):
    """The rows of the before/after tables.

    Args:
        dense_rows, slim_rows: `summarize` of the dense and slim models.
        extra: optional rows `(label, before, after)` or `(label, before,
            after, change)` (numbers or formatted strings), e.g. accuracy;
            without `change`, numbers get their relative change.

    Returns:
        `(groups, totals)`: rows `[group, width before, width after,
        change]` for the groups that lost channels, and rows `[label,
        before, after, change]` for params, MACs and `extra`, as strings.
    """
    slim_by_name = {r.name: r for r in slim_rows}
    groups = []
    for r in dense_rows:
        if r.width is None:
            continue
        after = slim_by_name.get(r.name)
        width = after.width if after is not None else r.width
        if width != r.width:
            groups.append([r.name, str(r.width), str(width),
                           _change(r.width, width)])
    totals = []
    for label, attr in (("params", "params"), ("MACs", "macs")):
        before = sum(getattr(r, attr) for r in dense_rows)
        after = sum(getattr(r, attr) for r in slim_rows)
        totals.append([label, human(before), human(after),
                       _change(before, after)])
    for row in extra or []:
        label, before, after = row[:3]
        if len(row) > 3:
            change = row[3]
        elif _is_number(before) and _is_number(after):
            change = _change(before, after)
        else:
            change = ""
        totals.append([str(label), _fmt(before), _fmt(after), str(change)])
    return groups, totals


GROUP_HEADER = ["group", "width before", "width after", "change"]
TOTAL_HEADER = ["", "before", "after", "change"]


def compare_table(dense_rows, slim_rows, extra=None):
    """Before/after as text: group widths, then params, MACs and `extra`
    (see `compare_rows`)."""
    groups, totals = compare_rows(dense_rows, slim_rows, extra)
    text = (format_table(GROUP_HEADER, groups, "<>>>") if groups
            else "(no group was cut)")
    return text + "\n\n" + format_table(TOTAL_HEADER, totals, "<>>>")


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
