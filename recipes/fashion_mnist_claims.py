"""The parts of docs/results.md read from the study's choices and runs:
the commits, the choices made on validation, the dense baseline's curve,
and one verdict per claim (computed, so that a rerun cannot keep a stale
sentence)."""

import os

NOISE_POINTS = 0.2  # differences smaller than this are never a finding


def _acc(entry, key="accuracy"):
    return 100 * entry[key]["mean"]


def _std(entry, key="accuracy"):
    return 100 * (entry[key]["std"] or 0.0)


def _find(summary, **match):
    for entry in summary:
        if all(entry.get(k) == v for k, v in match.items()):
            return entry
    return None


def _compare(a, b):
    """`a - b` in points and whether it exceeds the noise (the two seeds'
    spreads combined, at least `NOISE_POINTS`)."""
    diff = _acc(a) - _acc(b)
    noise = max(NOISE_POINTS, (_std(a) ** 2 + _std(b) ** 2) ** 0.5)
    return diff, abs(diff) > noise, noise


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
    path = os.path.join(out_dir, "fashion_mnist_dense_curve.png")
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
                        "(fashion_mnist_dense_curve.png)", ""]


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


def _sentence(agrees, text):
    return ("Agrees" if agrees else "Disagrees") + f": {text}"


def verdict(name, experiment, config):
    """One plain sentence: does the measurement agree with the claim?"""
    s = experiment["summary"]
    if name == "1_network_slimming":
        dense = _find(s, label="dense")
        ratio = max(config["ratios"])
        tuned = _find(s, label=f"pruned {ratio:.0%} + fine-tune")
        if not (dense and tuned):
            return "not measured."
        diff, real, noise = _compare(tuned, dense)
        return _sentence(not real or diff > 0,
                         f"with {ratio:.0%} of the channels pruned and "
                         f"fine-tuned the network is {diff:+.2f} points from "
                         f"the dense one (noise {noise:.2f}).")
    if name == "2_ista":
        base, a = _find(s, label="base"), _find(s, label="A: slim + fine-tune")
        b = _find(s, label="B: slim + fine-tune")
        ref = _find(s, label="reference (B's size, uniform, scratch)")
        if not (base and a and b and ref):
            return "not measured."
        da, real_a, _ = _compare(a, base)
        db, real_b, _ = _compare(b, ref)
        agrees = (not real_a or da > 0) and db > 0
        return _sentence(agrees, f"model A is {da:+.2f} points from the base"
                         f" and model B {db:+.2f} points from the uniform "
                         "network of its size trained from scratch.")
    if name == "3_rethinking":
        out, agrees = [], True
        for method in ("global_gamma", "l1_norm"):
            tuned = _find(s, label="fine-tuned", method=method)
            e = _find(s, label="Scratch-E", method=method)
            b = _find(s, label="Scratch-B", method=method)
            if not (tuned and e and b):
                continue
            de, real_e, _ = _compare(e, tuned)
            db, real_b, _ = _compare(b, tuned)
            agrees &= (not real_e or de > 0) or (not real_b or db > 0)
            out.append(f"{method}: Scratch-E {de:+.2f}, Scratch-B {db:+.2f} "
                       "points against fine-tuning")
        if not out:
            return "not measured."
        return _sentence(agrees, "; ".join(out) + ".")
    if name == "4_architecture":
        wins, out = 0, []
        for ratio in config["ratios"]:
            found = _find(s, label="slimming widths", ratio=ratio)
            uniform = _find(s, label="uniform widths", ratio=ratio)
            if found and uniform:
                diff, real, _ = _compare(found, uniform)
                wins += real and diff > 0
                out.append(f"{ratio:.0%}: {diff:+.2f}")
        if not out:
            return "not measured."
        return _sentence(wins * 2 > len(out), "slimming widths against "
                         "uniform widths, points: " + ", ".join(out) + ".")
    if name == "5_lottery_ticket":
        diffs = {}
        for lr in config["lottery_learning_rates"]:
            ticket = _find(s, label="winning ticket", learning_rate=lr)
            random = _find(s, label="random re-init", learning_rate=lr)
            if ticket and random:
                diffs[lr] = _compare(ticket, random)
        if len(diffs) < 2:
            return "not measured."
        high, low = max(diffs), min(diffs)
        agrees = (not (diffs[high][1] and diffs[high][0] > 0)
                  and diffs[low][1] and diffs[low][0] > 0)
        return _sentence(agrees, f"the ticket is {diffs[high][0]:+.2f} points"
                         f" from random re-initialisation at lr {high:g} and "
                         f"{diffs[low][0]:+.2f} at lr {low:g}.")
    if name == "6_budget":
        aware = _find(s, label="latency_aware")
        plain = _find(s, label="global_gamma")
        if not (aware and plain):
            return "not measured."
        diff, real, noise = _compare(aware, plain)
        fast = {label: run_mean(experiment, label, "latency_of_dense")
                for label in ("latency_aware", "global_gamma")}
        equal = fast["latency_aware"] <= (1 + LATENCY_MATCH) * fast[
            "global_gamma"]
        text = (f"the latency-aware plan is {diff:+.2f} points from global "
                f"gamma after fine-tuning (noise {noise:.2f}), running at "
                f"{fast['latency_aware']:.2f} of the dense latency against "
                f"global gamma's {fast['global_gamma']:.2f}")
        if not equal:
            text += (": the search for global gamma's ratio ended at a "
                     "faster plan, so the latencies are not equal")
        return _sentence(real and diff > 0 and equal, text + ".")
    return ""


# Latencies within this share of each other count as equal (experiment 6).
LATENCY_MATCH = 0.05


def run_mean(experiment, label, key):
    """The mean of `key` over an experiment's runs labelled `label`."""
    values = [row[key] for row in experiment["runs"]
              if row.get("label") == label and row.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


def progress_page(runs_folder, out_dir, notes=None):
    """docs/results.md while the study runs: every finished run's record
    and the dense runs' curves, before any experiment is complete."""
    import json

    rows = []
    for name in sorted(os.listdir(runs_folder)):
        if name.endswith(".json"):
            with open(os.path.join(runs_folder, name)) as f:
                rows.append(dict(json.load(f), name=name[:-5]))
    notes = notes or {}
    lines = [notes.get("header", "# Evidence: Fashion-MNIST"), "",
             "**Status: in progress.** No experiment has finished yet; this "
             f"page lists the {len(rows)} runs finished so far, each read "
             "from its record in [`study/runs/`](study/runs/). The tables, "
             "choices and verdicts of each experiment replace it when the "
             "experiments finish (`python recipes/fashion_mnist_report.py "
             "--results=docs/study/results.json --out=docs`).", ""]
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
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
