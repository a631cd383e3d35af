"""Measured latency: a per-layer lookup table (the runtimes are in
`keras_slim/deploy/runtimes.py`).

Latency is measured on the runtime that will serve the model, never
modelled from MACs. Timing every candidate of a search end to end would
take minutes each, so `build_latency_table` times each layer that counts
MACs alone, at a handful of input and output widths, once; a search then
reads the table (`LatencyTable.predict`) and only the final plan is timed
end to end; `memory=True` prices the merges, pooling and padding a group's
width drives too (`unit_models.py`; off by default, see
docs/budgets-and-latency.md). Layers with the same configuration and
shapes (the repeated blocks of a ResNet stage) share one entry. The table
is plain JSON, saved and loaded with `save` / `load`, and reused for as
many searches as wanted.

A runtime is any object with `time(models) -> list of milliseconds` and
`info() -> dict` (`Runtime`); `LiteRTRuntime` is the default,
`ONNXRuntime` the other built-in one, and tests pass a fake one so that
nothing is timed. TensorFlow, LiteRT and ONNX Runtime are imported only
when a runtime converts or times a model.
"""

import json

import keras
import numpy as np

from keras_slim.core import files, rule_registry
from keras_slim.core.widths import WidthCounter
from keras_slim.deploy.runtimes import (  # noqa: F401  (re-exported)
    RUNTIMES,
    LiteRTRuntime,
    ONNXRuntime,
    Runtime,
    check_litert,
    check_onnxruntime,
    runtime_from_info,
)
from keras_slim.planners.latency_steps import (  # noqa: F401  (re-exported)
    scan_costliest,
    scan_widths,
    suggest_round_to,
)
from keras_slim.planners.unit_models import (
    is_variable,
    memory_calls,
    memory_signature,
    memory_unit_model,
    signature,
    unit_model,
)

__all__ = [
    "build_latency_table",
    "check_litert",
    "check_onnxruntime",
    "LatencyTable",
    "LiteRTRuntime",
    "ONNXRuntime",
    "Runtime",
    "runtime_from_info",
    "scan_widths",
    "suggest_round_to",
]

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def _grid(full, variable, fractions):
    """The widths timed: the fractions of `full` (multiples of 8 from 32
    channels up) and the smallest width a search is likely to reach (8, or
    1 below 32 channels), so that no prediction extrapolates."""
    if not variable:
        return [int(full)]
    sizes = {int(full), min(int(full), 8 if full >= 32 else 1)}
    for fraction in fractions:
        size = full * fraction
        size = int(round(size / 8) * 8) if full >= 32 else int(round(size))
        sizes.add(min(full, max(1, size)))
    return sorted(sizes)


def _interp(x, xs, ys):
    """Piecewise linear in x. Below the narrowest width timed, that width's
    time: a layer costs a runtime a floor of time however few its channels,
    and a table that predicted savings it never measured would send the
    latency-aware search to cut groups to a few channels for nothing."""
    if x <= xs[0]:
        return float(ys[0])
    return float(np.interp(x, xs, ys))


def _monotone(ms):
    """The timings made non-decreasing in each width: a width costs at most
    what any wider one was measured at. Noise can time a layer faster at
    3/4 of its channels than at 1/2; read as measured, such a dip is a
    stretch where removing channels costs time, and it stops the
    latency-aware search there. The saved table keeps the raw timings."""
    grid = np.asarray(ms, dtype="float64")
    grid = np.minimum.accumulate(grid[::-1], axis=0)[::-1]
    if grid.ndim == 2:
        grid = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1]
    return grid.tolist()


class LatencyTable:
    """Measured milliseconds of each layer at a few widths.

    Attributes:
        runtime: the runtime's `info()` (name, threads, batch).
        dense_ms: the whole model timed end to end.
        layers_ms: the table's sum at full widths. Predictions are the
            table's sum at the plan's widths times `dense_ms / layers_ms`:
            what the table leaves out (activations the runtime did not
            fuse, the threads' synchronisation, the invokes themselves) is
            taken to shrink with the layers.
        calls: per counted call: layer name, entry key, full sizes; then
            one per `unit_models.memory_calls` entry (`"kind": "memory"`, its output
            width as `"in"`). A version 1 table (before memory calls were
            priced) has none and prices none.
        entries: key -> {"in": sizes, "out": sizes or None, "ms": grid},
            each timing less the cost of an empty call on the runtime.
        steps: the fine scan of the costliest layer (`None` if not made):
            {"layer", "points": [[width, ms], ...], "round_to",
            "strength"}, `round_to` being what `suggest_round_to` makes of
            the points; `plan_for_budget(..., round_to="auto")` uses it.
        calibration: `None`, or the fit of `calibrate_latency_table` to
            end-to-end timings of random plans: {"kinds": {kind: factor},
            "weights": one factor per call, "intercept": ms, "plans",
            "error", "table_error", ...}. A calibrated table predicts
            `intercept` plus each call's timing times its weight, in place
            of the single `dense_ms / layers_ms`.
    """

    def __init__(self, runtime, dense_ms, calls, entries, steps=None,
                 calibration=None):
        self.runtime = dict(runtime)
        self.steps = None if steps is None else dict(steps)
        self.calibration = None if calibration is None else dict(calibration)
        self.dense_ms = float(dense_ms)
        self.calls = [dict(c) for c in calls]
        self.entries = {k: dict(v) for k, v in entries.items()}
        self.counter = None
        self._mac_count = sum(c.get("kind") != "memory" for c in self.calls)
        self._memory = []
        self._grids = {k: _monotone(v["ms"]) for k, v in self.entries.items()}
        self.layers_ms = float(sum(
            self._entry_ms(c["key"], c["in"], c["out"]) for c in self.calls
        ))
        self._scale = self.dense_ms / self.layers_ms if self.layers_ms else 1.0
        self._weights = [self._scale] * len(self.calls)
        self._intercept = 0.0
        if self.calibration is not None:
            self._weights = [float(w) for w in self.calibration["weights"]]
            self._intercept = float(self.calibration["intercept"])
            if len(self._weights) != len(self.calls):
                raise ValueError("The latency table's calibration has "
                                 f"{len(self._weights)} weights for "
                                 f"{len(self.calls)} calls.")

    def unit_ms(self, index, widths):
        """The `index`-th call's own timing at `widths`, as the table
        measured it alone (no scale, no calibration)."""
        call = self.calls[index]
        if index >= self._mac_count:
            size = self.counter.size(self._memory[index - self._mac_count],
                                     widths)
            return self._entry_ms(call["key"], size, None)
        k_in, k_out = self.counter.call_sizes(index, widths)
        return self._entry_ms(call["key"], k_in,
                              None if call["out"] is None else k_out)

    def _entry_ms(self, key, k_in, k_out):
        entry, grid = self.entries[key], self._grids[key]
        if entry["out"] is None:
            return _interp(k_in, entry["in"], grid)
        rows = [_interp(k_out, entry["out"], row) for row in grid]
        return _interp(k_in, entry["in"], rows)

    def bind(self, counter):
        """Attach the model's `WidthCounter` (checking the table fits)."""
        calls = counter.counted_calls
        mac_rows = self.calls[:self._mac_count]
        memory_rows = self.calls[self._mac_count:]
        memory = memory_calls(counter) if memory_rows else []
        names = [c.layer.name for c in calls]
        if names != [c["layer"] for c in mac_rows] or any(
            counter.call_sizes(i, {}) != (c["in"], c["out"] if c["out"]
                                          is not None else c["in"] *
                                          calls[i].role.expand)
            for i, c in enumerate(mac_rows)
        ) or [(call.layer.name, layout.size) for call, layout in memory] != [
            (c["layer"], c["in"]) for c in memory_rows
        ]:
            raise ValueError(
                "The latency table was built for another model (its layers "
                "or widths differ); build one for this model with "
                "build_latency_table."
            )
        self.counter = counter
        self._memory = [layout for _, layout in memory]
        return self

    def call_ms(self, index, widths):
        """Predicted milliseconds of the `index`-th call of `calls` (the
        counter's MAC calls first, then the memory calls)."""
        return self._weights[index] * self.unit_ms(index, widths)

    def calls_by_group(self):
        """dict group name -> indices of the calls (of `calls`) whose time
        depends on the group's width."""
        if self.counter is None:
            raise ValueError("Call `bind(WidthCounter(model))` first.")
        found = {n: list(v) for n, v in self.counter.calls_by_group().items()}
        for offset, layout in enumerate(self._memory):
            for seg in layout.segments:
                name = self.counter.graph.group_of_space(seg.space).name
                calls = found.setdefault(name, [])
                if self._mac_count + offset not in calls:
                    calls.append(self._mac_count + offset)
        return found

    def predict(self, widths):
        """Predicted milliseconds when each group keeps `widths[name]`."""
        if self.counter is None:
            raise ValueError("Call `bind(WidthCounter(model))` first.")
        return self._intercept + sum(self.call_ms(i, widths)
                                     for i in range(len(self.calls)))

    def to_dict(self):
        data = {"version": 2, "runtime": self.runtime,
                "dense_ms": self.dense_ms, "layers_ms": self.layers_ms,
                "calls": self.calls, "entries": self.entries,
                "steps": self.steps}
        if self.calibration is not None:  # unknown to version 2 readers
            data.update(version=3, calibration=self.calibration)
        return data

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict) or data.get("version") not in (1, 2, 3):
            raise ValueError("Not a keras_slim latency table (version 1 "
                             "to 3).")
        return cls(data["runtime"], data["dense_ms"], data["calls"],
                   data["entries"], data.get("steps"),
                   data.get("calibration"))

    def save(self, path):
        """Write the table as JSON, complete or not at all."""
        files.write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as file:
            return cls.from_dict(json.load(file))


def build_latency_table(model, runtime=None, fractions=FRACTIONS,
                        verbose=True, scan=True, memory=False):
    """Time every layer that counts MACs at a few widths, once.

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input
            size.
        runtime: a `Runtime` (default `LiteRTRuntime()`).
        fractions: the widths timed, as fractions of the full width
            (rounded to multiples of 8 for layers of 32 channels or more),
            with the narrowest width a search reaches (8, or 1 below 32).
        verbose: a progress line while timing.
        scan: also time the costliest convolution at 41 consecutive output
            widths around half its width, for the step size of the runtime
            (`LatencyTable.steps`, `round_to="auto"`).
        memory: also time the merges, concatenations, pooling and padding
            whose width a group sets (`unit_models.memory_calls`), so that they count
            in the table as the group's own cost.

    Returns:
        A `LatencyTable`, bound to the model.
    """
    from keras_slim.deploy.console import ProgressLine

    runtime = runtime or LiteRTRuntime()
    counter = WidthCounter(model)
    calls, jobs = [], {}
    for index, call in enumerate(counter.counted_calls):
        _, _, in_shape, out_shape, in_layout, out_layout = \
            counter._mac_calls[index]
        full_in, full_out = in_shape[-1], out_shape[-1]
        key = signature(call, in_shape, out_shape)
        channelwise = call.role.kind == rule_registry.CHANNELWISE
        calls.append({"layer": call.layer.name, "key": key, "in": full_in,
                      "out": None if channelwise else full_out})
        if key not in jobs:
            jobs[key] = (call, _grid(full_in, is_variable(counter.graph, in_layout),
                               fractions),
                         None if channelwise else
                         _grid(full_out, is_variable(counter.graph, out_layout),
                               fractions))
    memory_jobs = {}
    for call, layout in memory_calls(counter) if memory else ():
        key = "m" + memory_signature(counter.graph, call)
        calls.append({"layer": call.layer.name, "key": key,
                      "in": layout.size, "out": None, "kind": "memory"})
        memory_jobs.setdefault(key, (call, _grid(layout.size, True,
                                                 fractions)))
    progress = ProgressLine(len(jobs) + len(memory_jobs) + 2 + bool(scan),
                           verbose)
    # What any call costs whatever its layer does (the invoke itself):
    # timed on a one-value model and taken off every layer's timing, so
    # that the table's shares are those of the work.
    progress.step("timing the cost of an empty call")
    tiny = keras.Input((1,), batch_size=runtime.batch)
    overhead = float(runtime.time(
        [keras.Model(tiny, keras.layers.ReLU()(tiny))])[0])
    entries = {}
    for key, (call, ins, outs) in jobs.items():
        progress.step(f"timing `{call.layer.name}` "
                      f"({type(call.layer).__name__}) at "
                      f"{len(ins) * len(outs or [1])} widths")
        if outs is None:
            models = [unit_model(call, k, k * call.role.expand,
                                 runtime.batch) for k in ins]
            times = [max(float(t) - overhead, 0.0)
                     for t in runtime.time(models)]
        else:
            models = [unit_model(call, a, b, runtime.batch)
                      for a in ins for b in outs]
            flat = [max(float(t) - overhead, 0.0)
                    for t in runtime.time(models)]
            times = [flat[i * len(outs):(i + 1) * len(outs)]
                     for i in range(len(ins))]
        entries[key] = {"layer": type(call.layer).__name__, "in": ins,
                        "out": outs, "ms": times}
    for key, (call, sizes) in memory_jobs.items():
        progress.step(f"timing `{call.layer.name}` "
                      f"({type(call.layer).__name__}) at {len(sizes)} widths")
        models = [memory_unit_model(counter.graph, call, k, runtime.batch)
                  for k in sizes]
        entries[key] = {"layer": type(call.layer).__name__, "in": sizes,
                        "out": None,
                        "ms": [max(float(t) - overhead, 0.0)
                               for t in runtime.time(models)]}
    steps = None
    if scan:
        steps = scan_costliest(model, counter, calls, entries, runtime,
                                progress)
    progress.step("timing the whole model")
    dense_ms = float(runtime.time([model])[0])
    done = (f"latency table: {len(entries)} layer shapes, dense model "
            f"{dense_ms:.2f} ms on {runtime.name}")
    if steps is not None:
        done += f"; suggested round_to {steps['round_to']}"
    progress.done(done)
    return LatencyTable(runtime.info(), dense_ms, calls, entries,
                        steps).bind(counter)
