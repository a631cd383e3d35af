"""Pictures of a pruning: gamma histograms, widths, parameters and MACs.

`report(dense, slim, path)` writes an HTML or Markdown page with the
before/after table and PNG plots; `plot_model(model, path)` draws one
model's gamma distribution and widths per layer (`keras-slim inspect
--plot`). Needs matplotlib (drawn with the Agg backend, no display).
"""

import dataclasses
import html
import os

import numpy as np

from keras_slim.core.files import atomic_path, write_text
from keras_slim.core.graph import check_model
from keras_slim.tools import summary as summary_lib

__all__ = [
    "plot_budget",
    "plot_costs",
    "plot_gamma_histogram",
    "plot_model",
    "plot_widths",
    "Report",
    "report",
]

DENSE_COLOR = "#9aa5b1"
SLIM_COLOR = "#1f77b4"


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Plots need matplotlib: pip install matplotlib"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _check_png(path, argument="path"):
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(
            f"Expected `{argument}` to end with .png. Received: "
            f"{argument}={path!r}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def _save(figure, path):
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=110, format="png")
    finally:
        _pyplot().close(figure)


def _label_axis(axis, names):
    size = 8 if len(names) <= 30 else 6
    axis.set_xticks(np.arange(len(names)))
    axis.set_xticklabels(names, rotation=75, ha="right", fontsize=size)
    axis.set_xlim(-0.7, len(names) - 0.3)


def _draw_gammas_per_layer(axis, gammas):
    names = list(gammas)
    values = [gammas[n] for n in names]
    axis.boxplot(values, positions=np.arange(len(names)), widths=0.6,
                 showfliers=False, patch_artist=True,
                 boxprops={"facecolor": "#cfe2f3", "edgecolor": SLIM_COLOR},
                 medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        jitter = rng.uniform(-0.2, 0.2, v.size)
        axis.scatter(i + jitter, v, s=4, color=SLIM_COLOR, alpha=0.35,
                     linewidths=0)
        zeros = int(np.sum(v == 0))
        if zeros:
            axis.annotate(str(zeros), (i, 0), xytext=(0, -2),
                          textcoords="offset points", ha="center", va="top",
                          fontsize=6, color="crimson")
    _label_axis(axis, names)
    axis.set_ylabel("|gamma|")
    axis.set_title("BatchNormalization |gamma| per layer "
                   "(red: exact zeros)")


def plot_model(model, path):
    """Draw `model`'s |gamma| distribution per layer and widths per group.

    Args:
        model: a functional or Sequential `keras.Model`.
        path: the `.png` file to write.

    Returns:
        `path`.

    Raises:
        ValueError: `path` does not end with .png.

    Example:

    >>> from keras_slim.tools.report import plot_model
    >>> plot_model(model, "gammas.png")
    """
    check_model(model)
    path = _check_png(path)
    plt = _pyplot()
    gammas = summary_lib.batchnorm_gammas(model)
    rows = [r for r in summary_lib.summarize(model) if r.width is not None]
    count = max(len(gammas), len(rows), 1)
    panels = 2 if gammas else 1
    figure, axes = plt.subplots(panels, 1,
                                figsize=(max(8, 0.28 * count), 4.2 * panels),
                                squeeze=False)
    if gammas:
        _draw_gammas_per_layer(axes[0, 0], gammas)
    axis = axes[-1, 0]
    axis.bar(np.arange(len(rows)), [r.width for r in rows], color=SLIM_COLOR)
    _label_axis(axis, [r.name for r in rows])
    axis.set_ylabel("channels")
    axis.set_title(f"Width of each prunable channel group of `{model.name}`")
    _save(figure, path)
    return path


def plot_gamma_histogram(dense, slim, path, before_label="before"):
    """Histogram of all |gamma|, before and after pruning.

    `dense` is the model the plan was made on: for a sparse-trained model
    (ISTA, GammaL1) its gammas at zero are the channels that were cut.
    """
    plt = _pyplot()
    before = summary_lib.batchnorm_gammas(dense)
    after = summary_lib.batchnorm_gammas(slim)
    figure, axis = plt.subplots(figsize=(7, 3.8))
    values = [np.concatenate(list(g.values())) if g else np.zeros(0)
              for g in (before, after)]
    top = max([float(v.max()) for v in values if v.size] + [1e-6])
    bins = np.linspace(0, top, 41)
    axis.hist(values[0], bins=bins, color=DENSE_COLOR,
              label=f"{before_label} ({values[0].size} channels, "
                    f"{int(np.sum(values[0] == 0))} at zero)")
    axis.hist(values[1], bins=bins, color=SLIM_COLOR, alpha=0.8,
              label=f"after ({values[1].size} channels)")
    axis.set_xlabel("|gamma|")
    axis.set_ylabel("channels")
    axis.set_title("BatchNormalization |gamma|, all layers")
    axis.legend(frameon=False)
    _save(figure, path)


def plot_widths(dense_rows, slim_rows, path):
    """Bars of each group's width before and after."""
    plt = _pyplot()
    rows = [r for r in dense_rows if r.width is not None]
    after = {r.name: r.width for r in slim_rows}
    x = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(7, 0.32 * len(rows)), 4.2))
    axis.bar(x - 0.2, [r.width for r in rows], 0.4, color=DENSE_COLOR,
             label="before")
    axis.bar(x + 0.2, [after.get(r.name, r.width) for r in rows], 0.4,
             color=SLIM_COLOR, label="after")
    _label_axis(axis, [r.name for r in rows])
    axis.set_ylabel("channels")
    axis.set_title("Width of each channel group")
    axis.legend(frameon=False)
    _save(figure, path)


def plot_costs(dense_rows, slim_rows, path):
    """Bars of total parameters and MACs before and after."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for axis, attr, label in zip(axes, ("params", "macs"),
                                 ("parameters", "MACs per example")):
        values = [sum(getattr(r, attr) for r in rows)
                  for rows in (dense_rows, slim_rows)]
        bars = axis.bar(["before", "after"], values,
                        color=[DENSE_COLOR, SLIM_COLOR])
        for bar, value in zip(bars, values):
            axis.annotate(summary_lib.human(value),
                          (bar.get_x() + bar.get_width() / 2, value),
                          xytext=(0, 2), textcoords="offset points",
                          ha="center", va="bottom", fontsize=9)
        if values[0]:
            axis.set_title(f"{label}: {values[1] / values[0]:.1%} remain")
        axis.set_ylim(0, max(values + [1]) * 1.15)
        axis.set_yticks([])
        for side in ("top", "right", "left"):
            axis.spines[side].set_visible(False)
    _save(figure, path)


def plot_budget(candidates, path, title=None):
    """Latency against MACs for the candidates a budget search tried.

    Args:
        candidates: dicts with "macs" and "predicted_ms" (optionally
            "measured_ms", "chosen" and "label"), as in
            `BudgetResult.candidates`; several searches may be concatenated,
            each named by its "label".
        path: the PNG to write.
        title: the plot's title.

    Raises:
        ValueError: no candidate has a predicted latency, or `path` is not
            a .png.
    """
    path = _check_png(path)
    timed = [c for c in candidates if c.get("predicted_ms") is not None]
    if not timed:
        raise ValueError(
            "plot_budget needs candidates with a predicted latency "
            "(`predicted_ms`): search with a `latency` budget."
        )
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    labels = list(dict.fromkeys(c.get("label", "candidates") for c in timed))
    for index, label in enumerate(labels):
        rows = sorted((c for c in timed if c.get("label", "candidates")
                       == label), key=lambda c: c["macs"])
        color = f"C{index}"
        axis.plot([c["macs"] / 1e6 for c in rows],
                  [c["predicted_ms"] for c in rows], ".", color=color,
                  alpha=0.5, label=f"{label}: predicted (table)")
        measured = [c for c in rows if c.get("measured_ms") is not None]
        if measured:
            axis.plot([c["macs"] / 1e6 for c in measured],
                      [c["measured_ms"] for c in measured], "x",
                      color=color, markersize=9,
                      label=f"{label}: measured end to end")
    axis.set_xlabel("MACs per example (M)")
    axis.set_ylabel("latency (ms)")
    axis.set_title(title or "Budget search: latency against MACs")
    axis.legend(frameon=False, fontsize=8)
    _save(figure, path)
    return path


@dataclasses.dataclass
class Report:
    """The files `report` wrote: the page and its images."""

    page: str
    images: list


def report(dense, slim, path, metrics=None, title="keras_slim report",
           sparse=None):
    """Write a page comparing `dense` and `slim`: table and plots.

    Next to the page go three PNGs, named after it: `<name>_gammas.png`
    (histogram of |gamma|), `<name>_widths.png` (width of each channel group
    before and after) and `<name>_costs.png` (parameters and MACs). Each
    file is written complete or not at all (`keras_slim.core.files`).

    Args:
        dense: the model before pruning.
        slim: the model after (`slim_model` keeps the group names).
        path: the page, ending with `.html` or `.md` (Markdown).
        metrics: optional rows `(label, before, after)` or `(label, before,
            after, change)` added to the table, e.g.
            `[("test accuracy", "97.8%", "97.1%")]`.
        title: the page's title.
        sparse: the sparse-trained model the plan was made on (after ISTA
            or GammaL1), when it is not `dense`: the gamma histogram shows
            its gammas, whose zeros are the channels cut, instead of the
            dense model's.

    Returns:
        A `Report` with the paths of the page and its images.

    Raises:
        ValueError: `path` ends with neither .html nor .md.
        TypeError: `dense` or `slim` is not a functional or Sequential model.

    Example:

    >>> keras_slim.report(model, slim, "report/index.html")
    """
    check_model(dense, "dense")
    check_model(slim, "slim")
    if sparse is not None:
        check_model(sparse, "sparse")
    path = os.fspath(path)
    stem, extension = os.path.splitext(path)
    if extension.lower() not in (".html", ".md"):
        raise ValueError(
            "Expected `path` to end with .html or .md. "
            f"Received: path={path!r}"
        )
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    dense_rows = summary_lib.summarize(dense)
    slim_rows = summary_lib.summarize(slim)
    images = {
        "gamma histogram": f"{stem}_gammas.png",
        "channel widths": f"{stem}_widths.png",
        "parameters and MACs": f"{stem}_costs.png",
    }
    paths = list(images.values())
    if sparse is None:
        plot_gamma_histogram(dense, slim, paths[0])
    else:
        plot_gamma_histogram(sparse, slim, paths[0], "sparse-trained")
    plot_widths(dense_rows, slim_rows, paths[1])
    plot_costs(dense_rows, slim_rows, paths[2])
    groups, totals = summary_lib.compare_rows(dense_rows, slim_rows, metrics)
    links = {label: os.path.basename(p) for label, p in images.items()}
    cut = f" pruned: {len(groups)} channel groups cut"
    if extension.lower() == ".md":
        text = _markdown(title, f"`{dense.name}`{cut}", totals, groups, links)
    else:
        subtitle = f"<code>{html.escape(dense.name)}</code>{html.escape(cut)}"
        text = _html(title, subtitle, totals, groups, links)
    write_text(path, text)
    return Report(page=path, images=paths)


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":--" if i == 0 else "--:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(title, subtitle, totals, groups, links):
    parts = [f"# {title}", "", subtitle, "",
             _markdown_table(summary_lib.TOTAL_HEADER, totals), ""]
    for label, link in links.items():
        parts += [f"![{label}]({link})", ""]
    if groups:
        parts += ["## Channel groups cut", "",
                  _markdown_table(summary_lib.GROUP_HEADER, groups), ""]
    return "\n".join(parts)


def _html_table(header, rows):
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
    "color:#222}table{border-collapse:collapse;margin:1rem 0}"
    "td,th{padding:.25rem .8rem;border-bottom:1px solid #ddd;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%;"
    "display:block;margin:1rem 0}"
)


def _html(title, subtitle, totals, groups, links):
    parts = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>",
        f"<p>{subtitle}</p>",  # escaped by report()
        _html_table(summary_lib.TOTAL_HEADER, totals),
    ]
    for label, link in links.items():
        parts.append(f"<img src='{html.escape(link)}' alt='{html.escape(label)}'>")
    if groups:
        parts += ["<h2>Channel groups cut</h2>",
                  _html_table(summary_lib.GROUP_HEADER, groups)]
    parts.append("</body></html>")
    return "\n".join(parts)
