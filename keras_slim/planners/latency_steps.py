"""The runtime's steps: latency falls in steps as widths cross a runtime's
vector sizes. `scan_widths` times one layer at consecutive widths,
`suggest_round_to` names the step size, and `build_latency_table` scans its
costliest layer with `scan_costliest` (`LatencyTable.steps`,
`plan_for_budget(..., round_to="auto")`).
"""

import numpy as np

from keras_slim.core import rule_registry
from keras_slim.core.widths import WidthCounter
from keras_slim.deploy.runtimes import LiteRTRuntime
from keras_slim.planners.unit_models import unit_model

__all__ = ["scan_costliest", "scan_widths", "suggest_round_to"]


def scan_costliest(model, counter, calls, entries, runtime, progress):
    """Scan the output width of the convolution or Dense layer that takes
    longest at full width (among those whose output can be pruned)."""
    best, best_ms, full = None, 0.0, 0
    for index, call in enumerate(counter.counted_calls):
        entry = entries[calls[index]["key"]]
        if call.role.kind != rule_registry.PRODUCER or entry["out"] is None or \
                len(entry["out"]) < 2:
            continue
        ms = entry["ms"][-1][-1]
        if ms > best_ms:
            best, best_ms, full = call, ms, int(calls[index]["out"])
    if best is None:
        return None
    middle = full // 2
    widths = range(max(1, middle - 20), min(full, middle + 20) + 1)
    progress.step(f"scanning `{best.layer.name}` at {len(widths)} output "
                  "widths for the runtime's steps")
    points = scan_widths(model, best.layer.name, widths, runtime)
    round_to, strength = suggest_round_to(points)
    return {"layer": best.layer.name, "points": [list(p) for p in points],
            "round_to": int(round_to), "strength": float(strength)}


def scan_widths(model, layer, widths, runtime=None):
    """Time one layer of `model` alone at each output width in `widths`.

    Latency falls in steps as widths cross the runtime's vector sizes; a
    fine scan of one layer shows where.

    Args:
        model: the model.
        layer: name of a convolution or Dense layer of it.
        widths: output widths to time (its input keeps its full width).
        runtime: a `Runtime` (default `LiteRTRuntime()`).

    Returns:
        A list of (width, milliseconds).
    """
    runtime = runtime or LiteRTRuntime()
    counter = WidthCounter(model)
    calls = [c for c in counter.counted_calls if c.layer.name == layer]
    if not calls or calls[0].role.kind != rule_registry.PRODUCER:
        raise ValueError(
            f"Expected `layer` to name a convolution or Dense layer of the "
            f"model. Received: layer={layer!r}"
        )
    call = calls[0]
    models = [unit_model(call, call.input_shape[-1], w, runtime.batch)
              for w in widths]
    return list(zip([int(w) for w in widths],
                    [float(t) for t in runtime.time(models)]))


def suggest_round_to(points, candidates=(32, 16, 8, 4, 2)):
    """The `round_to` a width scan suggests: the step size `r` for which
    going from a multiple of `r` to one channel more costs most, relative to
    the typical change between neighbouring widths.

    Args:
        points: (width, ms) pairs at consecutive widths (`scan_widths`).

    Returns:
        `(round_to, strength)`: the smallest candidate whose steps are
        nearly (3/4) as strong as the strongest (1 when no step stands out:
        strength below 2), and how many times the typical change its steps
        are.
    """
    table = dict(points)
    diffs = {w: table[w + 1] - table[w] for w in table if w + 1 in table}
    if not diffs:
        return 1, 0.0
    typical = float(np.median(np.abs(list(diffs.values())))) or 1e-9
    values = {}
    for r in candidates:
        jumps = [d for w, d in diffs.items() if w % r == 0]
        if len(jumps) >= 2:
            values[r] = float(np.mean(jumps)) / typical
    if not values:
        return 1, 0.0
    strongest = max(values.values())
    if strongest < 2:
        return 1, max(strongest, 0.0)
    # Steps every r also show at every multiple of r: take the smallest r
    # whose steps are nearly as strong as the strongest.
    best = min(r for r, v in values.items() if v >= 0.75 * strongest)
    return best, values[best]
