"""The width sweep's section of the results page: experiments 1, 3 and 4
at each width, one verdict each, read from `records/w<k>/` (the study run
with `--widths` k times 16,32,32,64, `--model_dir=records/w<k>`)."""

import glob
import json
import os

from studies.fashion_mnist import verdicts
from studies.fashion_mnist.claims import claim_parts

SWEPT = ("1_network_slimming", "3_rethinking", "4_architecture")


def _width_folders(records_dir):
    found = []
    for folder in glob.glob(os.path.join(records_dir, "w*")):
        tail = os.path.basename(folder)[1:]
        if tail.isdigit() and os.path.isdir(folder):
            found.append((int(tail), folder))
    return sorted(found)


def _row(width, folder, name):
    path = os.path.join(folder, "results.json")
    results = None
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    if not results or name not in results["experiments"]:
        done = len(glob.glob(os.path.join(folder, "runs", "*.json")))
        return (f"| {width}x | not finished ({done} run records so far) "
                "| – |")
    config = results["config"]
    parts = claim_parts(name, results["experiments"][name], config)
    seeds = sorted({r["seed"] for r in results["experiments"][name]["runs"]})
    cells = "; ".join(verdicts.describe(p) for p in parts) or "–"
    widths = "-".join(str(w) for w in config["widths"])
    return (f"| {width}x ({widths}, seeds {', '.join(map(str, seeds))}) | "
            f"**{verdicts.combine(parts) if parts else 'not measured'}** "
            f"| {cells} |")


def sweep_section(records_dir, titles):
    """Markdown lines: one table per swept experiment, a row per width."""
    folders = _width_folders(records_dir)
    if not folders:
        return []
    lines = ["## Width sweep: the claims as the network widens", "",
             "The same study at 1x, 2x, ... the widths 16-32-32-64, each "
             "in its own records folder (`records/w<k>/`), the epochs (20) "
             "chosen on validation at 1x. Wider networks are closer to the "
             "over-parameterized regime the papers test (VGG-19's 512-wide "
             "layers). Each verdict is the rule above, on paired seeds.", ""]
    for name in SWEPT:
        lines += [f"### {titles[name]}", "",
                  "| width | verdict | differences (points, 95% t interval) |",
                  "|:--|:--|:--|"]
        lines += [_row(width, folder, name) for width, folder in folders]
        lines.append("")
    return lines
