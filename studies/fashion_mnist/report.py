r"""Turn the Fashion-MNIST study's results.json into its results page + plots.

    python -m studies.fashion_mnist.report \
        --results=studies/fashion_mnist/records/w1/results.json

Writes `OUT/results.md` (default `studies/fashion_mnist/`: one table per
experiment, mean ± std over seeds, parameters, MACs, wall time; the paper's
claim next to a comparison and a verdict computed from the numbers) and one
PNG per experiment (`OUT/exp<N>.png`); every number in the page traces to
the results file and the run records beside it. Prose written after
reading the numbers lives in the notes file and is included as it is.
"""

import json
import os

if not __package__:  # run as a file: import this repository
    import _bootstrap  # noqa: F401

from absl import app, flags  # noqa: E402

from keras_slim.core import files  # noqa: E402
from studies.fashion_mnist.claims import (  # noqa: E402
    channels,
    choices_section,
    commits_line,
    dense_section,
    progress_page,
    run_mean,
    verdict,
)
from studies.fashion_mnist.plots import plot  # noqa: E402
from studies.fashion_mnist.sweep import sweep_section  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TITLES = {
    "1_network_slimming": "1. Network Slimming (Liu et al. 2017)",
    "2_ista": "2. ISTA on gammas (Ye et al. 2018)",
    "3_rethinking": "3. Rethinking: fine-tuned vs Scratch-E vs Scratch-B "
                    "(Liu et al. 2019)",
    "4_architecture": "4. Architecture: slimming widths vs uniform widths "
                      "(Rethinking, Figure 3)",
    "5_lottery_ticket": "5. Lottery ticket vs random re-initialisation "
                        "(Rethinking, Section 6)",
    "6_budget": "6. Accuracy at equal measured latency: latency-aware vs "
                "global gamma",
}
PAPER = {
    "1_network_slimming": "VGG-19 on CIFAR-10 keeps its accuracy with 70% of "
                          "the channels pruned (93.77% -> 93.78% after "
                          "fine-tuning).",
    "2_ista": "Table 1: model A at or above the base network; model B "
              "smaller than the reference network and more accurate.",
    "3_rethinking": "for these methods, training the pruned architecture "
                    "from scratch (Scratch-E, Scratch-B) matches or beats "
                    "fine-tuning the pruned model.",
    "4_architecture": "the widths Network Slimming finds train (from "
                      "scratch) to a better accuracy than uniformly pruned "
                      "widths with the same parameter count.",
    "5_lottery_ticket": "the winning-ticket initialisation beats a random "
                        "re-initialisation only at the small initial "
                        "learning rate (0.01), not at 0.1.",
    "6_budget": "no paper claim; keras_slim's own: at an equal measured "
                "latency the latency-aware plan (HALP-style knapsack over "
                "|gamma| per unit of latency) keeps more importance than one "
                "global threshold, which should show as accuracy after "
                "fine-tuning.",
}


def _pm(stat, scale=100.0, digits=2):
    if stat is None:
        return "–"
    mean = f"{scale * stat['mean']:.{digits}f}"
    if stat["std"] is None:
        return f"{mean} (n=1)"
    return f"{mean} ± {scale * stat['std']:.{digits}f} (n={stat['n']})"


def table(experiment, name):
    """Markdown table of an experiment's summary rows."""
    lines = ["| run | test accuracy % (mean ± std) | validation % | params | "
             "MACs | epochs | wall s per run (mean) |",
             "|:--|--:|--:|--:|--:|--:|--:|"]
    for entry in experiment["summary"]:
        label = entry["label"]
        if entry.get("method") not in (None, "-", label):
            label = f"{entry['method']}: {label}"
        if name == "5_lottery_ticket":
            label = f"lr {entry['learning_rate']:g}: {label}"
        if name == "4_architecture":
            label = f"{label} ({entry['ratio']:.0%} of channels pruned)"
        params, macs = entry["params"], entry["macs"]
        params_text = f"{params['mean']:,.0f}"
        if params["std"]:
            params_text += f" ± {params['std']:,.0f}"
        macs_text = f"{macs['mean']:,.0f}"
        if macs["std"]:
            macs_text += f" ± {macs['std']:,.0f}"
        wall = entry.get("wall_seconds")
        epochs = entry.get("epochs")
        epochs_text = "–" if not epochs else (
            f"{epochs['mean']:.0f}" if not epochs["std"]
            else f"{epochs['mean']:.1f}")
        lines.append(f"| {label} | {_pm(entry['accuracy'])} | "
                     f"{_pm(entry.get('val_accuracy'))} | {params_text} | "
                     f"{macs_text} | {epochs_text} | {wall['mean']:.0f} |")
    return "\n".join(lines)


def _find(summary, **match):
    for entry in summary:
        if all(entry.get(k) == v for k, v in match.items()):
            return entry
    return None


def _acc(entry):
    return 100 * entry["accuracy"]["mean"] if entry else float("nan")


def comparison(name, experiment, config):
    """One computed sentence: the measured counterpart of the paper's claim."""
    s = experiment["summary"]
    if name == "1_network_slimming":
        dense = _find(s, label="dense")
        parts = []
        for ratio in config["ratios"]:
            tuned = _find(s, label=f"pruned {ratio:.0%} + fine-tune")
            if tuned:
                share = tuned["params"]["mean"] / dense["params"]["mean"]
                parts.append(f"{ratio:.0%} pruned: "
                             f"{_acc(tuned) - _acc(dense):+.2f} points at "
                             f"{share:.0%} of the parameters")
        return (f"Fine-tuned against dense ({_acc(dense):.2f}%): "
                + "; ".join(parts) + ".")
    if name == "2_ista":
        base = _find(s, label="base")
        out = []
        for letter in "ABC":
            tuned = _find(s, label=f"{letter}: slim + fine-tune")
            if tuned:
                out.append(f"{letter} {_acc(tuned) - _acc(base):+.2f} points at "
                           f"{tuned['params']['mean']:,.0f} params")
        ref = _find(s, label="reference (B's size, uniform, scratch)")
        b = _find(s, label="B: slim + fine-tune")
        text = f"Against the base ({_acc(base):.2f}%): " + "; ".join(out) + "."
        kept = {r["label"][0]: channels(r) for r in experiment["runs"]
                if r["label"].endswith(": slim + fine-tune")}
        base_rows = [r for r in experiment["runs"] if r["label"] == "base"]
        if kept and base_rows:
            text += (" Channels kept (of the base's "
                     f"{channels(base_rows[0])}): " + ", ".join(
                         f"{k} {v}" for k, v in sorted(kept.items())) + ".")
        if ref and b:
            size = ref["params"]["mean"]
            text += (f" B against the reference of its size ({size:,.0f} "
                     f"params): {_acc(b) - _acc(ref):+.2f} points.")
        return text
    if name == "3_rethinking":
        out = []
        for method in ("global_gamma", "l1_norm"):
            tuned = _find(s, label="fine-tuned", method=method)
            if not tuned:
                continue
            e = _find(s, label="Scratch-E", method=method)
            b = _find(s, label="Scratch-B", method=method)
            out.append(f"{method}: Scratch-E {_acc(e) - _acc(tuned):+.2f}, "
                       f"Scratch-B {_acc(b) - _acc(tuned):+.2f} points against "
                       "fine-tuned")
        return "; ".join(out) + "."
    if name == "4_architecture":
        out = []
        for ratio in config["ratios"]:
            found = _find(s, label="slimming widths", ratio=ratio)
            uniform = _find(s, label="uniform widths", ratio=ratio)
            if found and uniform:
                out.append(f"at {found['params']['mean']:,.0f} params "
                           f"({ratio:.0%} of channels): slimming widths "
                           f"{_acc(found) - _acc(uniform):+.2f} points against uniform")
        return "; ".join(out) + "."
    if name == "5_lottery_ticket":
        out = []
        for lr in config["lottery_learning_rates"]:
            ticket = _find(s, label="winning ticket", learning_rate=lr)
            random = _find(s, label="random re-init", learning_rate=lr)
            if ticket and random:
                out.append(f"lr {lr:g}: ticket {_acc(ticket) - _acc(random):+.2f} "
                           "points against random re-init")
        return "; ".join(out) + "."
    if name == "6_budget":
        aware = _find(s, label="latency_aware")
        plain = _find(s, label="global_gamma")
        if aware and plain:
            parts = {label: {key: run_mean(experiment, label, key)
                             for key in ("latency_ms", "latency_of_dense",
                                         "importance_kept")}
                     for label in ("latency_aware", "global_gamma")}
            return (f"latency-aware {_acc(aware):.2f}% against global gamma "
                    f"{_acc(plain):.2f}% ({_acc(aware) - _acc(plain):+.2f} "
                    f"points), at {aware['params']['mean']:,.0f} against "
                    f"{plain['params']['mean']:,.0f} params; LiteRT latency "
                    + " against ".join(
                        f"{p['latency_ms']:.2f} ms ({p['latency_of_dense']:.2f}"
                        f" of dense, {p['importance_kept']:.3f} of the |gamma| "
                        "kept)" for p in parts.values()) + " (means over seeds)."
                    + _spread(experiment))
    return ""


def _spread(experiment):
    """Per seed, the latency-aware over global-gamma latency ratio's range
    over the repeated timing rounds (records that have them)."""
    spread = {r["seed"]: r["latency_ratio_spread"] for r in experiment["runs"]
              if r.get("latency_ratio_spread")}
    if not spread:
        return ""
    return (" Latency-aware over global gamma across the timing rounds: "
            + ", ".join(f"{lo:.3f} to {hi:.3f} (seed {seed})"
                        for seed, (lo, hi) in sorted(spread.items())) + ".")


def write(results_path, out_dir, notes_path=None, sweep_dir=None):
    """Write results.md and the plots into `out_dir`; with `sweep_dir`
    (the records' folder, `records/`) also the width sweep's section."""
    with open(results_path) as f:
        results = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    folder = os.path.relpath(os.path.dirname(os.path.abspath(results_path)),
                             os.path.abspath(out_dir)).replace(os.sep, "/")
    notes = {}
    if notes_path and os.path.exists(notes_path):
        notes = _read_notes(notes_path)
    config = results["config"]
    lines = [notes.get("header", "# Evidence: Fashion-MNIST"), ""]
    lines += [commits_line(results),
              f"Command: `{results['command']}`. "
              f"Backend: {config['backend']}, CPU only (no GPU machine was "
              "lent to this task). Training time of all runs: "
              f"{results['wall_seconds_runs'] / 3600:.1f} h. Every number "
              f"below is in [`{folder}/results.json`]({folder}/results.json);"
              " each run's own record (commit, seed, settings, validation "
              f"and test accuracy) is in [`{folder}/runs/`]({folder}/runs/).",
              ""]
    if notes.get("setup"):
        lines += [notes["setup"], ""]
    lines += choices_section(results)
    lines += dense_section(results, out_dir)
    missing = [n for n in TITLES if n not in results["experiments"]]
    if missing:
        lines += ["**Not in this results file (not finished):** "
                  + ", ".join(TITLES[n] for n in missing) + ". Their "
                  f"finished runs are in [`{folder}/runs/`]({folder}/runs/), "
                  "one record each; the study resumes from them.", ""]
    for name, experiment in results["experiments"].items():
        image = f"exp{name[0]}.png"
        plot(name, experiment, config, os.path.join(out_dir, image),
             TITLES[name])
        lines += [f"## {TITLES[name]}", "",
                  f"Paper: {PAPER[name]}", "",
                  table(experiment, name), "",
                  f"Measured: {comparison(name, experiment, config)}", "",
                  f"**Verdict:** {verdict(name, experiment, config)}", ""]
        if notes.get(name):
            lines += [notes[name], ""]
        lines += [f"Training time of this experiment's runs: "
                  f"{experiment['wall_seconds'] / 60:.1f} min (runs shared "
                  "with other experiments counted in each). Alone: "
                  f"`{results['command']} --experiments={name}`.", "",
                  f"![{TITLES[name]}]({image})", ""]
    if sweep_dir:
        lines += sweep_section(sweep_dir, TITLES)
    if notes.get("limits"):
        lines += ["## What this scale cannot show", "", notes["limits"], ""]
    path = os.path.join(out_dir, "results.md")
    files.write_text(path, "\n".join(lines))
    return path


def _read_notes(path):
    """Sections of the notes file: `<!-- key -->` lines start each one."""
    notes, key = {}, None
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("<!--") and stripped.endswith("-->"):
                key = stripped[4:-3].strip()
                notes[key] = ""
            elif key is not None:
                notes[key] += line
    return {k: v.strip() for k, v in notes.items()}


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("results", None, "The study's results.json.",
                        flag_values=flag_values)
    flags.DEFINE_string("runs", None, "Instead of --results: the study's "
                        "runs/ folder, for a progress page while no "
                        "experiment has finished.", flag_values=flag_values)
    flags.DEFINE_string("sweep", os.path.join(HERE, "records"), "Folder of "
                        "the width sweep's records (w1/, w2/, ...); empty: "
                        "no sweep section.", flag_values=flag_values)
    flags.DEFINE_string("out", HERE, "Output folder.", flag_values=flag_values)
    flags.DEFINE_string("notes", os.path.join(HERE, "notes.md"), "Prose by "
                        "section (<!-- key --> lines).", flag_values=flag_values)


def main(_):
    f = flags.FLAGS
    if f.runs:
        notes = _read_notes(f.notes) if os.path.exists(f.notes) else {}
        print(progress_page(f.runs, f.out, notes))
        return
    if not f.results:
        raise app.UsageError("Expected `--results` or `--runs`.")
    print(write(f.results, f.out, f.notes, f.sweep))


if __name__ == "__main__":
    define_flags()
    app.run(main)
