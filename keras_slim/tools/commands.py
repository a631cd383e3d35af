"""What each `keras-slim` subcommand does (`run_inspect`, `run_prune`,
`run_export`, `run_bench`); the parser and the entry point are in `cli.py`.
Every failure the user can fix is a `CommandError`."""

import os

from keras_slim.core.files import atomic_path, write_text
from keras_slim.planners import methods
from keras_slim.tools.arguments import (
    CommandError,
    budget_values,
    check_paths,
    make_folder,
    output_path,
    planner_kwargs,
    report_images,
)

__all__ = [
    "CommandError",
    "run_bench",
    "run_export",
    "run_inspect",
    "run_prune",
]


def _load(path, unsafe):
    from keras_slim.deploy.loading import load_model

    try:
        return load_model(path, unsafe=unsafe)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _check_model_graph(model):
    from keras_slim.core.graph import check_model

    try:
        check_model(model)
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None


def run_inspect(args):
    from keras_slim.tools import summary

    if args.plot:
        output_path(args.plot, (".png",), "--plot")
        check_paths([("MODEL", args.model)], [("--plot", args.plot)])
        make_folder(args.plot)
    model = _load(args.model, args.unsafe)
    _check_model_graph(model)
    rows = summary.summarize(model)
    shapes = ", ".join(str(tuple(t.shape)) for t in model.inputs)
    print(f"model `{model.name}`: inputs {shapes}, "
          f"{summary.human(sum(r.params for r in rows))} params, "
          f"{summary.human(sum(r.macs for r in rows))} MACs per example")
    print(summary.inspect_table(rows))
    from keras_slim.core.graph import channel_groups

    frozen = [g for g in channel_groups(model) if not g.prunable]
    if frozen:
        print(f"{len(frozen)} channel group(s) cannot be cut (model inputs "
              "and outputs, unknown layers); their layers are in (other).")
    if args.plot:
        from keras_slim.tools.report import plot_model

        print(f"plot written to {plot_model(model, args.plot)}")


def _has_target(args):
    return any(v is not None for v in (args.target_macs, args.target_params,
                                       args.target_latency))


def _latency_setup(args, latency):
    """The runtime and the latency table read with --table (or `None`),
    checked before the model is loaded; nothing is timed here."""
    if latency is None and args.cost != "latency":
        return None, None
    from keras_slim.deploy import runtimes
    from keras_slim.planners import latency_table

    runtime = runtimes.make_runtime(args.runtime, threads=args.threads,
                                    runs=args.runs)
    if not (args.table and os.path.exists(args.table)):
        return runtime, None
    table = latency_table.LatencyTable.load(args.table)
    name, threads = table.runtime.get("name"), table.runtime.get("threads")
    if name != args.runtime:
        raise CommandError(
            f"{args.table} was timed on {name}, not --runtime "
            f"{args.runtime}; pass the same --runtime or another --table.")
    if threads != args.threads:
        raise CommandError(
            f"{args.table} was timed with {threads} thread(s), not "
            f"--threads {args.threads}; pass the same --threads or another "
            "--table.")
    return runtime, table


def _budget_plan(args, model, checked):
    """The plan meeting the --target-* budgets, with the table of figures."""
    from keras_slim.planners import latency_table
    from keras_slim.planners.budget import plan_for_budget

    method, kwargs, latency, runtime, table = checked
    if runtime is not None:
        if table is not None:
            print(f"latency table read from {args.table}")
            table = _calibrated(args, model, table, runtime)
        else:
            table = latency_table.build_latency_table(model, runtime)
            table = _calibrated(args, model, table, runtime)
            if args.table:
                table.save(args.table)
                print(f"latency table written to {args.table}")
    result = plan_for_budget(
        model, method, macs=args.target_macs, params=args.target_params,
        latency=latency, table=table, runtime=runtime, verbose=True,
        cost=args.cost, **kwargs,
    )
    print(result.summary())
    if args.round_to == "auto":
        steps = table.steps
        print(f"round_to {result.round_to}: the step size the table's scan "
              f"of `{steps['layer']}` suggests (steps "
              f"{steps['strength']:.1f}x the typical change)")
    return result.plan


def _calibrated(args, model, table, runtime):
    """The table fitted to --calibrate random slim models (a table read
    with --table is not overwritten)."""
    if args.calibrate is None:
        return table
    from keras_slim.planners.latency_fit import calibrate_latency_table

    round_to = args.round_to if isinstance(args.round_to, int) else 8
    return calibrate_latency_table(model, table, runtime,
                                   plans=args.calibrate, round_to=round_to)


def _prune_checks(args):
    """Every argument of `prune`, checked before anything is loaded:
    `(planner kwargs, None)` for --method with --ratio, `(None, budget)`
    for --target-*."""
    if args.round_to == "auto" and args.target_latency is None:
        raise CommandError(
            "--round-to auto takes the step size from a latency table's "
            "scan of the runtime: use it with --target-latency, or give "
            "a number."
        )
    if _has_target(args):
        method, kwargs, latency = budget_values(args)
        budget = (method, kwargs, latency, *_latency_setup(args, latency))
        kwargs = None
    elif args.method is None or methods.method_for(args.method).budget_only:
        raise CommandError(
            "prune needs --method (with --ratio) or a budget: --target-macs, "
            "--target-params or --target-latency (--method "
            f"{args.method or 'latency_aware'} works only with a budget)."
        )
    else:
        kwargs, budget = planner_kwargs(args), None
    output_path(args.output, (".keras",))
    if args.plan:
        output_path(args.plan, (".json",), "--plan")
    writes = [("-o", args.output), ("--plan", args.plan),
              ("--table", args.table)]
    if args.report:
        output_path(args.report, (".html", ".md"), "--report")
        writes += [("--report", args.report)] + [
            ("--report", image) for image in report_images(args.report)]
    check_paths([("MODEL", args.model)], writes)
    for _, path in writes:
        if path is not None:
            make_folder(path)
    return kwargs, budget


def run_prune(args):
    from keras_slim.core.surgery import slim_model
    from keras_slim.sparsity.regularizers import remove_gamma_regularizer
    from keras_slim.tools import summary

    kwargs, budget = _prune_checks(args)
    model = _load(args.model, args.unsafe)
    _check_model_graph(model)
    if kwargs is None:
        plan = _budget_plan(args, model, budget)
    else:
        plan = methods.plan_for(model, args.method, **kwargs)
    # The slim model is fine-tuned without the sparsity penalty.
    slim = remove_gamma_regularizer(
        slim_model(model, plan, fold=args.fold, verify=args.verify))
    cut = sum(plan.widths[n] - len(k) for n, k in plan.kept.items())
    print(f"{args.method or 'global_gamma'}: {cut} channels cut in "
          f"{len(plan.kept)} group(s)")
    if args.verify:
        print("verified: the slim model computes what the original does "
              "with the cut channels' gammas at zero")
    print(summary.compare_table(summary.summarize(model),
                                summary.summarize(slim)))
    with atomic_path(args.output) as temporary:
        slim.save(temporary)
    print(f"slim model written to {args.output}")
    if args.plan:
        write_text(args.plan, plan.to_json())
        print(f"plan written to {args.plan}")
    if args.report:
        from keras_slim.tools.report import report

        print(f"report written to {report(model, slim, args.report).page}")


def _representative(path, model):
    import numpy as np

    if not os.path.isfile(path):
        raise CommandError(f"No such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise CommandError(
            f"--representative-data {path} is not a .npy or .npz file: "
            f"{str(error).splitlines()[0]}"
        ) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        names = [t.name for t in model.inputs]
        if set(names) <= set(data.files):
            return {n: data[n] for n in names}
        return [data[f] for f in data.files]
    return data


def run_export(args):
    from keras_slim.deploy.export import export

    fmt = args.format
    if fmt is None:
        suffix = os.path.splitext(args.output.lower())[1]
        if suffix not in (".tflite", ".onnx"):
            raise CommandError(
                "Expected -o to end with .tflite or .onnx (or pass --format "
                f"saved_model for a SavedModel directory). Received: "
                f"{args.output}"
            )
        fmt = suffix[1:]
    if fmt != "tflite" and args.quantize:
        raise CommandError("--quantize applies to TFLite exports only.")
    if args.quantize == "int8" and not args.representative_data:
        raise CommandError(
            "--quantize int8 needs --representative-data X.npy: a few "
            "hundred example inputs to calibrate activations."
        )
    data = args.representative_data
    if data is not None and not os.path.isfile(data):
        raise CommandError(f"No such file: {data}")
    check_paths([("MODEL", args.model), ("--representative-data", data)],
                [("-o", args.output)],
                folders=("-o",) if fmt == "saved_model" else ())
    model = _load(args.model, args.unsafe)
    _check_model_graph(model)
    data = None
    if args.representative_data:
        data = _representative(args.representative_data, model)
    result = export(model, args.output, format=fmt, quantize=args.quantize,
                    representative_data=data, check=args.check, verbose=True)
    if result.agreement is not None:
        print(f"check passed (top-1 agreement with Keras >= "
              f"{result.tolerance:.0%})")
    elif result.tolerance is not None:
        print(f"check passed (difference within {result.tolerance:g} of the "
              "output range)")


def run_bench(args):
    from keras_slim.deploy.timing import time_model_files
    from keras_slim.tools import summary

    for path in args.files:
        if not os.path.isfile(path):
            raise CommandError(f"No such file: {path}")
        if not path.lower().endswith((".tflite", ".onnx")):
            raise CommandError(
                f"Expected a .tflite or .onnx file. Received: {path}"
            )
    for flag, value, low in (("--runs", args.runs, 1),
                             ("--warmup", args.warmup, 0),
                             ("--turn-warmup", args.turn_warmup, 0),
                             ("--threads", args.threads or 1, 1)):
        if value < low:
            raise CommandError(f"Expected {flag} >= {low}. Received: {value}")
    results = time_model_files(args.files, runs=args.runs,
                               warmup=args.warmup, num_threads=args.threads,
                               verbose=True, turn_warmup=args.turn_warmup)
    base = results[0].median_ms
    # Microseconds for small models, milliseconds otherwise.
    unit, scale = ("us", 1000.0) if max(r.p90_ms for r in results) < 1 \
        else ("ms", 1.0)
    rows = [[r.path, summary.human(os.path.getsize(r.path)) + "B",
             f"{r.median_ms * scale:.1f}", f"{r.p10_ms * scale:.1f}",
             f"{r.p90_ms * scale:.1f}", f"{base / r.median_ms:.2f}x"]
            for r in results]
    print(summary.format_table(
        ["file", "size", f"median {unit}", f"p10 {unit}", f"p90 {unit}",
         "speedup"], rows))
    warm = (f", {args.turn_warmup} untimed before each"
            if args.turn_warmup else "")
    print(f"{args.runs} interleaved runs after {args.warmup} warm-up{warm}, "
          f"threads {args.threads or 'default'}; speedup against the first "
          "file")


# -- parser ---------------------------------------------------------------
