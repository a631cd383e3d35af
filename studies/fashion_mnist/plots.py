"""The results page's plots: one per experiment, read at a glance.

Every mean is drawn with its error bar (sample SD over seeds) and every
seed's own run as a small dot beside it; arms measured at the same size
(pruned with and without fine-tuning, fine-tuned against Scratch-E/B,
slimming against uniform widths) are offset sideways so that none hides
another; the parameter axis is labelled in plain thousands, on a log scale
only where the sizes span more than a factor of 3.
"""

from studies.fashion_mnist.claims import LATENCY_MATCH

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _find(summary, **match):
    for entry in summary:
        if all(entry.get(k) == v for k, v in match.items()):
            return entry
    return None


def _points(axis, entries, label, offset=1.0, fmt="o-", color=None):
    """Means with SD bars at `params * offset`, each seed a dot."""
    entries = [e for e in entries if e]
    if not entries:
        return
    xs = [e["params"]["mean"] * offset for e in entries]
    line = axis.errorbar(
        xs, [100 * e["accuracy"]["mean"] for e in entries],
        yerr=[100 * (e["accuracy"]["std"] or 0) for e in entries],
        fmt=fmt, color=color, capsize=3, markersize=6,
        label=f"{label} (n={entries[0]['accuracy']['n']})")
    color = line[0].get_color()
    for x, e in zip(xs, entries):
        values = e["accuracy"]["values"]
        axis.plot([x * 1.006] * len(values), [100 * v for v in values], ".",
                  color=color, alpha=0.6, markersize=4)


def _thousands(axis):
    """Parameters in thousands; a log scale only over a wide range."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    low, high = axis.get_xlim()
    wide = low > 0 and high / low > 3
    if wide:
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())
    else:
        axis.xaxis.set_major_locator(MaxNLocator(6))
    axis.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 1000:.3g}k"))
    axis.set_xlabel("parameters" + (" (log scale)" if wide else ""))


def _lottery(axis, experiment, config):
    """Points with SD bars and every seed, ticket and random side by side
    at each learning rate; the dense network as a dashed line."""
    s, rates = experiment["summary"], config["lottery_learning_rates"]
    for offset, label, color, fmt in ((-0.12, "winning ticket", COLORS[0], "o"),
                                      (0.12, "random re-init", COLORS[1], "s")):
        entries = [(i + offset, _find(s, label=label, learning_rate=lr))
                   for i, lr in enumerate(rates)]
        entries = [(x, e) for x, e in entries if e]
        if not entries:
            continue
        axis.errorbar([x for x, _ in entries],
                      [100 * e["accuracy"]["mean"] for _, e in entries],
                      yerr=[100 * (e["accuracy"]["std"] or 0)
                            for _, e in entries], fmt=fmt, color=color,
                      capsize=4, label=f"{label} (mean ± SD, "
                                       f"n={entries[0][1]['accuracy']['n']})")
        for x, e in entries:
            values = e["accuracy"]["values"]
            axis.plot([x + 0.04] * len(values), [100 * v for v in values],
                      ".", color=color, alpha=0.7, markersize=5)
    for i, lr in enumerate(rates):
        dense = _find(s, label="dense", learning_rate=lr)
        if dense:
            axis.hlines(100 * dense["accuracy"]["mean"], i - 0.35, i + 0.35,
                        colors="k", linestyles="--",
                        label="dense (mean)" if i == 0 else None)
    axis.set_xticks(range(len(rates)))
    axis.set_xticklabels([f"initial lr {lr:g}" for lr in rates])
    axis.set_xlim(-0.5, len(rates) - 0.5)


def _budget(axis, experiment):
    for (label, fmt), color in zip((("latency_aware", "o"),
                                    ("global_gamma", "s")), COLORS):
        runs = [r for r in experiment["runs"] if r["label"] == label]
        axis.plot([r["latency_of_dense"] for r in runs],
                  [100 * r["accuracy"] for r in runs], fmt, color=color,
                  label=f"{label} (one point a seed)")
    axis.set_xlabel("LiteRT latency, share of the dense network's "
                    f"(equal: within {LATENCY_MATCH:.0%})")


def _sized(name, axis, s, config):
    ratios = config["ratios"]
    if name == "1_network_slimming":
        _points(axis, [_find(s, label="dense")], "dense", fmt="ks")
        _points(axis, [_find(s, label="sparse-trained")], "sparse-trained",
                fmt="D", color="#7f7f7f")
        for suffix, fmt, offset in ((" + fine-tune", "o-", 0.96),
                                    (", paper's fine-tune", "^-", 1.0),
                                    (", no fine-tune", "x:", 1.04)):
            _points(axis, [_find(s, label=f"pruned {r:.0%}{suffix}")
                           for r in ratios], "pruned" + suffix, offset, fmt)
    elif name == "2_ista":
        _points(axis, [_find(s, label="base")], "base", fmt="ks")
        for kind, fmt, offset in (("slim + fine-tune", "o-", 0.97),
                                  ("slim, no fine-tune", "x:", 1.03)):
            _points(axis, [_find(s, label=f"{x}: {kind}") for x in "ABC"],
                    f"A, B, C: {kind}", offset, fmt)
        _points(axis, [_find(s, label="reference (B's size, uniform, "
                                      "scratch)")], "reference (scratch)",
                fmt="D")
    elif name == "3_rethinking":
        _points(axis, [_find(s, label="unpruned")], "unpruned", fmt="ks")
        for m, (method, marker) in enumerate((("global_gamma", "o"),
                                              ("l1_norm", "^"))):
            for k, (label, color) in enumerate(zip(
                    ("fine-tuned", "Scratch-E", "Scratch-B"), COLORS)):
                _points(axis, [_find(s, label=label, method=method)],
                        f"{method}: {label}", 0.88 + 0.06 * (3 * m + k),
                        marker, color)
    elif name == "4_architecture":
        for label, fmt, offset in (("slimming widths", "o-", 0.97),
                                   ("uniform widths", "s--", 1.03)):
            _points(axis, [_find(s, label=label, ratio=r) for r in ratios],
                    label + " (scratch)", offset, fmt)
    _thousands(axis)


def plot(name, experiment, config, path, title):
    """Accuracy against parameters (experiments 1-4), the lottery's bars
    or accuracy against latency (experiment 6), saved at `path`."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    if name == "5_lottery_ticket":
        _lottery(axis, experiment, config)
    elif name == "6_budget":
        _budget(axis, experiment)
    else:
        _sized(name, axis, experiment["summary"], config)
    axis.set_ylabel(f"test accuracy % ({config['test_examples']:,} images)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best", framealpha=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
