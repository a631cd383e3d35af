"""keras_slim: structured (channel) pruning for Keras 3.

The top level holds the verbs a user types most. Namespaces in Keras' shape
hold the rest: `keras_slim.regularizers`, `keras_slim.callbacks`,
`keras_slim.constraints`, `keras_slim.rules` (the extension surface) and
`keras_slim.protocols` (the research protocols). The code lives in
subpackages; see docs/architecture.md.
"""

from keras_slim._start import started_as_command as _started_as_command

__version__ = "0.1.0"

__all__ = [
    "BudgetResult",
    "ChannelGroup",
    "ExportResult",
    "GammaL1",
    "GammaProx",
    "IMPORTANCES",
    "ISTAGamma",
    "ISTAPenalty",
    "Importance",
    "LatencyTable",
    "LiteRTRuntime",
    "METHODS",
    "MagnitudeMask",
    "ONNXRuntime",
    "PruningPlan",
    "Report",
    "Runtime",
    "WeightSnapshot",
    "add_gamma_regularizer",
    "applied_plan",
    "apply_masks",
    "attach_ista",
    "build_latency_table",
    "calibrate_latency_table",
    "callbacks",
    "channel_groups",
    "constraints",
    "count_macs",
    "count_params",
    "export",
    "load_model",
    "magnitude_masks",
    "merged_layers",
    "penalty_weights",
    "plan_dead",
    "plan_for_budget",
    "plan_global_gamma",
    "plan_guided",
    "plan_l1_norm",
    "plan_uniform",
    "plan_zero_gamma",
    "protocols",
    "prune",
    "register_importance",
    "register_method",
    "register_rule",
    "register_runtime",
    "regularizers",
    "reinitialize",
    "remove_gamma_regularizer",
    "report",
    "rescale_gammas",
    "rewind",
    "rules",
    "scratch_budget",
    "slim_in_passes",
    "slim_model",
    "snapshot_weights",
    "stage_ratios",
    "stages",
    "summarize",
]


def __getattr__(name):
    # Reached only in the `keras-slim` command: the public names are
    # imported on first use, with TensorFlow.
    if name not in __all__:
        raise AttributeError(f"module 'keras_slim' has no attribute {name!r}")
    from keras_slim import _api

    value = getattr(_api, name)
    globals()[name] = value
    return value


if not _started_as_command():
    from keras_slim import _api

    globals().update({_name: getattr(_api, _name) for _name in __all__})
    del _api
del _started_as_command
