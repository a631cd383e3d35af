"""`keras-slim`: inspect, prune, export and time models from the shell.

    keras-slim inspect MODEL.keras [--plot FILE.png]
    keras-slim prune MODEL.keras --method global_gamma --ratio 0.5
        [--round-to 8] [--reduction mean] [--normalize mean] -o OUT.keras
        [--plan PLAN.json] [--report REPORT.html] [--fold exact] [--verify]
    keras-slim prune MODEL.keras --target-macs 0.5 | --target-params 5e6 |
        --target-latency 8ms [--threads 2] [--runtime litert|onnxruntime]
        [--table T.json] [--calibrate 24]
        [--method latency_aware [--cost latency]]
        -o OUT.keras
    keras-slim export MODEL.keras -o OUT.tflite [--quantize dynamic|int8]
        [--representative-data X.npy]
    keras-slim export MODEL.keras -o OUT.onnx
    keras-slim bench A.tflite B.tflite C.onnx [--runs 50] [--threads 2]

Models load with `safe_mode=True`; a model holding a Lambda layer (Python
code that would run on loading) is refused unless `--unsafe` is given.
`--import MODULE` (repeatable, before or after the command) imports a
module first: its registered custom layers, rules, methods and runtimes
reach every command. Every path a command reads or writes is checked for
distinctness (links included) and every value checked before any work;
every file is written complete or not at all.
Errors are one line on stderr and a non-zero exit status (1 for a failed
command, 2 for bad usage), never a traceback (`--traceback` shows it).
"""

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Nothing here imports Keras at module level: `keras-slim --help` and
# `--version` answer without starting TensorFlow (keras_slim/__init__.py
# defers its imports when started as this command).
from keras_slim import __version__  # noqa: E402

__all__ = ["build_parser", "main"]

PROG = "keras-slim"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} "
                         f"(see `{self.prog} --help`)\n")
        sys.exit(2)


def _round_to(text):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or 'auto', not {text!r}") from None


def _model_command(commands, name, help_text):
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("model", metavar="MODEL", help="a .keras file")
    sub.add_argument("--unsafe", action="store_true",
                     help="allow Lambda layers (runs their code)")
    _add_import(sub)
    return sub


def _add_import(parser):
    # Read by main() before parsing (the registries must be full first).
    parser.add_argument("--import", dest="imports", action="append",
                        metavar="MODULE", default=argparse.SUPPRESS,
                        help="import MODULE first (repeatable): its "
                        "registered layers, rules, methods and runtimes "
                        "become known; searched on sys.path and in the "
                        "current folder")


def _registries():
    """The choices the registries offer now: methods, runtimes, folds,
    importances."""
    from keras_slim.core.folding import FOLDS
    from keras_slim.deploy.runtimes import RUNTIMES
    from keras_slim.planners.importance import IMPORTANCES
    from keras_slim.planners.methods import METHODS

    return METHODS, RUNTIMES, FOLDS, IMPORTANCES


def build_parser(registries=True):
    """The `keras-slim` parser; `--method` and `--runtime` choices come from
    the method and runtime registries as they are now (`registries=False`:
    no choices, no Keras import, for `--help` and `--version`). Each
    command's `run` default names its function in `commands.py`."""
    choices = _registries() if registries else (None,) * 4
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__}")
    _add_import(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_Parser)
    commands.required = True
    sub = _model_command(commands, "inspect",
                         "table of the prunable channel groups")
    sub.add_argument("--plot", metavar="FILE.png",
                     help="draw |gamma| and width per layer")
    sub.set_defaults(run="run_inspect")

    _add_prune(commands, *choices).set_defaults(run="run_prune")
    _add_export(commands).set_defaults(run="run_export")
    _add_bench(commands).set_defaults(run="run_bench")
    return parser


def _add_prune(commands, METHODS, RUNTIMES, FOLDS, IMPORTANCES):  # noqa: N803
    sub = _model_command(commands, "prune",
                         "cut channels and save the slim model")
    sub.add_argument("--method", choices=METHODS and sorted(METHODS),
                     help="pruning method (default with --target-*: "
                     "global_gamma): " + "; ".join(
                         f"{name}: {METHODS[name].summary}"
                         for name in sorted(METHODS or ())))
    sub.add_argument("--ratio", type=float,
                     help="share of channels to cut, in [0, 1)")
    sub.add_argument("--round-to", type=_round_to, metavar="N",
                     help="kept widths are multiples of N (e.g. 8); 'auto' "
                     "with --target-latency: the step size the latency "
                     "table's scan of the runtime suggests")
    sub.add_argument("--min-channels", type=int, default=1,
                     help="channels every group keeps (default 1)")
    sub.add_argument("--tol", type=float, default=0.0,
                     help="zero_gamma: |gamma| <= TOL counts as zero")
    sub.add_argument("--score", choices=IMPORTANCES and sorted(IMPORTANCES),
                     help="the importance that ranks the channels (default: "
                     "the method's own): " + "; ".join(
                         f"{name}: {IMPORTANCES[name].summary}"
                         for name in sorted(IMPORTANCES or ())))
    sub.add_argument("--reduction", choices=("max", "mean", "sum"),
                     help="how a group tied by residual adds scores a "
                     "channel from its several BatchNormalizations "
                     "(default max; mean and sum cut residual streams "
                     "harder)")
    sub.add_argument("--normalize", choices=("mean", "max", "sum"),
                     help="global_gamma, latency_aware: divide each group's "
                     "scores by their mean, max or sum before ranking "
                     "them network-wide")
    sub.add_argument("--cost", choices=("macs", "params", "latency"),
                     help="latency_aware with a budget: what the knapsack "
                     "saves (default: the budget's own); latency at a MAC "
                     "budget gives the fastest plan of that size")
    sub.add_argument("--target-macs", type=float, metavar="X",
                     help="MAC budget: a fraction (0.5) or a count (3e8)")
    sub.add_argument("--target-params", type=float, metavar="X",
                     help="parameter budget: a fraction or a count (5e6)")
    sub.add_argument("--target-latency", metavar="T",
                     help="latency budget, measured on --runtime: 8ms, or "
                     "a fraction of the dense model's measured latency (0.6)")
    sub.add_argument("--runtime", choices=RUNTIMES and sorted(RUNTIMES),
                     default="litert",
                     help="--target-latency, --cost latency: the runtime "
                     "that times the models (default litert; onnxruntime "
                     "needs keras-slim[onnx])")
    sub.add_argument("--threads", type=int, default=None,
                     help="--target-latency, --cost latency: the "
                     "runtime's threads")
    sub.add_argument("--runs", type=int, default=None,
                     help="--target-latency, --cost latency: timed runs "
                     "per model (default: the runtime's, 30 for litert and "
                     "onnxruntime)")
    sub.add_argument("--calibrate", type=int, metavar="N",
                     help="--target-latency, --cost latency: fit the "
                     "table to N random slim models timed end to end "
                     "(calibrate_latency_table; 24 is a good start)")
    sub.add_argument("--table", metavar="TABLE.json",
                     help="--target-latency, --cost latency: latency "
                     "table to reuse, or where to save the one built")
    sub.add_argument("-o", "--output", required=True, metavar="OUT.keras")
    sub.add_argument("--plan", metavar="PLAN.json",
                     help="also write the pruning plan")
    sub.add_argument("--report", metavar="REPORT.html",
                     help="also write a report page (.html or .md)")
    sub.add_argument("--fold", choices=FOLDS,
                     help="how the constant output of cut channels is "
                     "folded (slim_model's `fold`): bias (default), exact "
                     "(exact at zero-padded borders too, one carrier "
                     "channel per group) or none (dropped)")
    sub.add_argument("--verify", action="store_true",
                     help="check the slim model against the original "
                     "(slim_model's `verify`); fail naming the first "
                     "layer that differs")
    return sub


def _add_export(commands):
    sub = _model_command(commands, "export",
                        "write TFLite, ONNX or SavedModel, checked")
    sub.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                     help="a .tflite or .onnx file (format from the suffix)")
    sub.add_argument("--format", choices=("tflite", "onnx", "saved_model"))
    sub.add_argument("--quantize", choices=("dynamic", "int8"))
    sub.add_argument("--representative-data", metavar="X.npy",
                     help="example inputs (.npy, or .npz by input name)")
    sub.add_argument("--no-check", dest="check", action="store_false",
                     help="skip the comparison with Keras")
    return sub


def _add_bench(commands):
    sub = commands.add_parser(
        "bench", help="time TFLite and ONNX files",
        description="time TFLite (LiteRT) and ONNX (ONNX Runtime) files, "
                    "interleaved")
    sub.add_argument("files", nargs="+", metavar="FILE.tflite|FILE.onnx")
    sub.add_argument("--runs", type=int, default=50)
    sub.add_argument("--warmup", type=int, default=5)
    sub.add_argument("--turn-warmup", type=int, default=0,
                     help="untimed invokes of a file just before each "
                          "timed one: timed warm, as a model that runs "
                          "call after call (default 0)")
    sub.add_argument("--threads", type=int,
                     help="interpreter threads (default: the runtime's)")
    _add_import(sub)
    return sub


COMMANDS = ("inspect", "prune", "export", "bench")


def _command_and_imports(argv):
    """The command word of `argv` (None when there is none, as for
    `--help` and `--version`) and the modules of its --import flags."""
    command, imports, tokens = None, [], iter(argv)
    for token in tokens:
        if token == "--import":
            imports.append(next(tokens, ""))
        elif token.startswith("--import="):
            imports.append(token.split("=", 1)[1])
        elif command is None and token in COMMANDS:
            command = token
    return command, imports


def _import_modules(names):
    """Import the --import modules (the current folder searched last)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(f"--import {name}: {error}") from None


def _start(argv):
    """Start Keras (TensorFlow's start-up lines held back) and import the
    --import modules; False for a top-level --help or --version."""
    command, imports = _command_and_imports(argv)
    if command is None:
        return False
    from keras_slim._start import quiet_start

    with quiet_start():
        import keras  # noqa: F401
    _import_modules(imports)
    return True


def _fail(message):
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return 1


def main(argv=None):
    """Entry point of the `keras-slim` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    try:
        started = _start(argv)
    except Exception as error:  # a user's --import module failed
        if traceback:
            raise
        return _fail(str(error) or type(error).__name__)
    args = build_parser(registries=started).parse_args(argv)
    from keras_slim.tools import commands
    from keras_slim.tools.commands import CommandError

    try:
        getattr(commands, args.run)(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except (CommandError, ValueError, TypeError, RuntimeError, OSError,
            ImportError) as error:
        if args.traceback:
            raise
        return _fail(str(error) or type(error).__name__)
    except Exception as error:  # a bug: still one line, unless asked
        if args.traceback:
            raise
        return _fail(f"unexpected {type(error).__name__}: {error} (rerun "
                     "with --traceback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
