"""The parts of the results page (studies/fashion_mnist/results.md) read
from the study's choices and runs:
the commits, the choices made on validation, the dense baseline's curve,
and one verdict per claim (computed, so that a rerun cannot keep a stale
sentence)."""

import os

from keras_slim.core import files
from studies.fashion_mnist import verdicts


def commits_line(results):
    commits = {}
    for experiment in results["experiments"].values():
        for row in experiment["runs"]:
            commits.setdefault(row.get("commit", "unknown"), set()).add(
                row["name"])
    parts = [f"`{c}` ({len(n)} run{'' if len(n) == 1 else 's'})"
             for c, n in sorted(commits.items())]
    return ("Produced at commit " + ", ".join(parts) + "; the report was "
            f"assembled at `{results['commit']}`.")


def choices_section(results):
    choices = results.get("choices") or {}
    if not choices:
        return []
    lines = ["## Choices made on the validation split", "",
             f"{results['dataset'].get('validation_examples', 0):,} of the "
             "training images are held out (a fixed, seeded draw); every "
             "choice below is read from them, never from the test images.",
             ""]
    epochs = choices.get("epochs")
    if epochs:
        lines.append(f"- **Epochs: {epochs['value']}** ({epochs['rule']}).")
        for e in epochs.get("candidates", []):
            lines.append(f"  - {e['epochs']} epochs: validation "
                         f"{100 * e['val_accuracy']:.2f}%")
    s = choices.get("slimming_s")
    if s:
        lines.append(f"- **Network Slimming's s = {s['value']:.3g}** "
                     f"({s['rule']}).")
        for e in s.get("candidates", []):
            lines.append(
                f"  - s = {e['s']:.3g}: sparse-trained "
                f"{100 * e['sparse_val_accuracy']:.2f}%, pruned "
                f"{100 * e['pruned_val_accuracy']:.2f}%, fine-tuned "
                f"{100 * e['val_accuracy']:.2f}% (validation)")
    full = choices.get("slimming_s_full_finetune")
    if full:
        lines.append(f"- **s for the paper's fine-tune = {full['value']:.3g}**"
                     f" ({full['rule']}; "
                     + ("interior" if full.get("interior") else
                        "at the edge of the grid after its extensions")
                     + ").")
        for e in full.get("candidates", []):
            lines.append(f"  - s = {e['s']:.3g}: fine-tuned (full schedule) "
                         f"{100 * e['val_accuracy']:.2f}% (validation)")
    rho = choices.get("rho")
    if rho:
        lines.append(f"- **ISTA's rho for model A = {rho['value']:.3g}** "
                     f"({rho['rule']}); B and C: x"
                     + ", x".join(f"{m:g}" for m in rho["multiples"][1:])
                     + ".")
    for stop in choices.get("ista_stops", []):
        lines.append(f"  - model {stop['model']} (rho {stop['rho']:.3g}): "
                     f"stopped after {stop['epochs']} epochs "
                     f"({stop['stopped'] or 'the epoch limit'}); validation "
                     f"{100 * stop['val_accuracy']:.2f}%")
    return lines + [""]


def dense_section(results, out_dir):
    dense = {}
    for experiment in results["experiments"].values():
        for row in experiment["runs"]:
            if row["name"].startswith("dense-") and row.get("validation_curve"):
                dense[row["name"]] = row
    if not dense:
        return []
    path = os.path.join(out_dir, "dense_curve.png")
    _plot_curves(dense, path)
    lines = ["## The dense baseline", "",
             "| run | epochs | test accuracy % | validation % | best "
             "validation % (epoch) |", "|:--|--:|--:|--:|--:|"]
    for name, row in sorted(dense.items()):
        curve = row["validation_curve"]
        best = max(range(len(curve)), key=curve.__getitem__)
        lines.append(f"| {name} | {row['epochs']} | "
                     f"{100 * row['accuracy']:.2f} | "
                     f"{100 * row['val_accuracy']:.2f} | "
                     f"{100 * curve[best]:.2f} ({best + 1}) |")
    return lines + ["", "![Validation accuracy of the dense runs per epoch]"
                        "(dense_curve.png)", ""]


def _plot_curves(rows, path):
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, row in sorted(rows.items()):
        curve = row["validation_curve"]
        axis.plot(range(1, len(curve) + 1), [100 * v for v in curve],
                  label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy %")
    axis.set_title("Dense network: validation accuracy per epoch", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def channels(row):
    """Convolution channels a run's network keeps (the classifier's units
    left out)."""
    return sum(v for k, v in row["widths"].items() if k != "logits")


def _latency_gaps(experiment):
    """Per seed: latency-aware's latency over global gamma's, minus one."""
    by = {}
    for row in experiment["runs"]:
        if row.get("latency_of_dense") is not None:
            by.setdefault(row["seed"], {})[row["label"]] = row["latency_of_dense"]
    return {seed: pair["latency_aware"] / pair["global_gamma"] - 1
            for seed, pair in sorted(by.items())
            if {"latency_aware", "global_gamma"} <= set(pair)}


def claim_parts(name, experiment, config):
    """The parts of an experiment's claim, each a `verdicts.decide` (or
    `verdicts.not_as_designed`) dict, from the paired per-seed runs."""
    rows, margin = experiment["runs"], verdicts.MARGIN
    decide, paired = verdicts.decide, verdicts.paired
    parts = []

    def part(first, second, threshold, side, what):
        diffs = paired(rows, first, second)
        if diffs:
            parts.append(decide(diffs, threshold, side, what))

    if name == "1_network_slimming":
        ratio = max(config["ratios"])
        for label, what in (("pruned {:.0%} + fine-tune", "fine-tuned"),
                            ("pruned {:.0%}, paper's fine-tune",
                             "fine-tuned the paper's way")):
            part({"label": label.format(ratio)}, {"label": "dense"}, -margin,
                 "above", f"{ratio:.0%} pruned, {what}, minus dense")
    elif name == "2_ista":
        base = [r for r in rows if r["label"] == "base"]
        for letter in "AB":
            slim = [r for r in rows if r["label"] == f"{letter}: slim + fine-tune"]
            if base and slim and channels(slim[0]) > 0.95 * channels(base[0]):
                return [verdicts.not_as_designed(
                    f"model {letter} keeps {channels(slim[0])} of "
                    f"{channels(base[0])} channels (under 5% pruned)")]
        part({"label": "A: slim + fine-tune"}, {"label": "base"}, -margin,
             "above", "model A minus the base")
        part({"label": "B: slim + fine-tune"},
             {"label": "reference (B's size, uniform, scratch)"}, 0.0,
             "above", "model B minus the uniform network of its size")
    elif name == "3_rethinking":
        for method in ("global_gamma", "l1_norm"):
            for kind in ("E", "B"):
                part({"label": f"Scratch-{kind}", "method": method},
                     {"label": "fine-tuned", "method": method}, -margin,
                     "above", f"{method}: Scratch-{kind} minus fine-tuned")
    elif name == "4_architecture":
        for ratio in config["ratios"]:
            part({"label": "slimming widths", "ratio": ratio},
                 {"label": "uniform widths", "ratio": ratio}, 0.0, "above",
                 f"{ratio:.0%} pruned: slimming widths minus uniform")
    elif name == "5_lottery_ticket":
        rates = config["lottery_learning_rates"]
        for lr in rates:
            small = lr == min(rates) and len(rates) > 1
            part({"label": "winning ticket", "learning_rate": lr},
                 {"label": "random re-init", "learning_rate": lr},
                 0.0 if small else margin, "above" if small else "below",
                 f"lr {lr:g}: ticket minus random re-init")
    elif name == "6_budget":
        gaps = _latency_gaps(experiment)
        off = {s: g for s, g in gaps.items() if abs(g) > LATENCY_MATCH}
        if off:
            return [verdicts.not_as_designed(
                "latencies not within 2%: latency-aware over global gamma "
                + ", ".join(f"{g:+.1%} (seed {s})" for s, g in off.items()))]
        part({"label": "latency_aware"}, {"label": "global_gamma"}, 0.0,
             "above", "latency-aware minus global gamma at equal latency")
    return parts


def verdict(name, experiment, config):
    """The verdict (agrees, disagrees, inconclusive, not run as designed)
    with each part's mean difference and 95% t interval."""
    parts = claim_parts(name, experiment, config)
    if not parts:
        return "not measured."
    return (f"**{verdicts.combine(parts)}**. "
            + "; ".join(verdicts.describe(p) for p in parts) + ".")


# Latencies within this share of each other count as equal (experiment 6).
LATENCY_MATCH = 0.02


def run_mean(experiment, label, key):
    """The mean of `key` over an experiment's runs labelled `label`."""
    values = [row[key] for row in experiment["runs"]
              if row.get("label") == label and row.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


def progress_page(runs_folder, out_dir, notes=None):
    """The results page while the study runs: every finished run's record
    and the dense runs' curves, before any experiment is complete."""
    import json

    rows = []
    for name in sorted(os.listdir(runs_folder)):
        if name.endswith(".json"):
            with open(os.path.join(runs_folder, name)) as f:
                rows.append(dict(json.load(f), name=name[:-5]))
    notes = notes or {}
    folder = os.path.relpath(os.path.abspath(runs_folder),
                             os.path.abspath(out_dir)).replace(os.sep, "/")
    lines = [notes.get("header", "# Evidence: Fashion-MNIST"), "",
             "**Status: in progress.** No experiment has finished yet; this "
             f"page lists the {len(rows)} runs finished so far, each read "
             f"from its record in [`{folder}/`]({folder}/). The tables, "
             "choices and verdicts of each experiment replace it when the "
             "experiments finish (`python -m studies.fashion_mnist.report "
             "--results=DIR/results.json`).", ""]
    if notes.get("setup"):
        lines += [notes["setup"], ""]
    lines += ["## Runs finished", "",
              "| run | commit | seed | epochs | validation % | test % | "
              "params | wall min |", "|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        val = row.get("val_accuracy")
        test = row.get("accuracy")
        lines.append(
            f"| {row['name']} | `{str(row.get('commit', ''))[:10]}` | "
            f"{row.get('seed', '')} | {row.get('epochs', '')} | "
            + (f"{100 * val:.2f}" if val is not None else "–") + " | "
            + (f"{100 * test:.2f}" if test is not None else "–") + " | "
            + f"{row.get('params', 0):,} | "
            f"{row.get('wall_seconds', 0) / 60:.1f} |")
    lines.append("")
    dense = {"experiments": {"progress": {"runs": rows}}}
    lines += dense_section(dense, out_dir)
    path = os.path.join(out_dir, "results.md")
    files.write_text(path, "\n".join(lines))
    return path
