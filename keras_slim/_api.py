"""The public names of `keras_slim`, imported (TensorFlow started, its
start-up lines held back). `keras_slim/__init__.py` takes them from here:
at once, or on first use when the process is the `keras-slim` command, so
that its `--help` does not wait for TensorFlow."""

# ruff: noqa: F401  (every name is re-exported by keras_slim/__init__.py)

__all__ = []  # keras_slim/__init__.py takes the names of its own __all__

from keras_slim._start import quiet_start

with quiet_start():  # TensorFlow starts here; its start-up lines filtered
    import keras

from keras_slim import callbacks, constraints, protocols, regularizers, rules
from keras_slim.core.counting import count_macs, count_params
from keras_slim.core.graph import ChannelGroup, channel_groups
from keras_slim.core.plan import PruningPlan
from keras_slim.core.rule_registry import register_rule
from keras_slim.core.surgery import applied_plan, slim_model
from keras_slim.deploy.export import ExportResult, export
from keras_slim.deploy.loading import load_model
from keras_slim.deploy.runtimes import register_runtime
from keras_slim.planners.budget import BudgetResult, plan_for_budget
from keras_slim.planners.criteria import plan_zero_gamma
from keras_slim.planners.dead import plan_dead
from keras_slim.planners.guidance import plan_guided, stage_ratios, stages
from keras_slim.planners.importance import (
    IMPORTANCES,
    Importance,
    register_importance,
)
from keras_slim.planners.latency_fit import calibrate_latency_table
from keras_slim.planners.latency_table import (
    LatencyTable,
    LiteRTRuntime,
    ONNXRuntime,
    Runtime,
    build_latency_table,
)
from keras_slim.planners.methods import METHODS, register_method
from keras_slim.planners.selection import (
    merged_layers,
    plan_global_gamma,
    plan_l1_norm,
    plan_uniform,
)
from keras_slim.protocols import (
    MagnitudeMask,
    WeightSnapshot,
    apply_masks,
    magnitude_masks,
    reinitialize,
    rewind,
    scratch_budget,
    slim_in_passes,
    snapshot_weights,
)
from keras_slim.sparsity.ista import GammaProx, ISTAPenalty, attach_ista
from keras_slim.sparsity.ista_callback import ISTAGamma
from keras_slim.sparsity.penalties import penalty_weights
from keras_slim.sparsity.regularizers import (
    GammaL1,
    add_gamma_regularizer,
    remove_gamma_regularizer,
)
from keras_slim.sparsity.rescaling import rescale_gammas
from keras_slim.tools.pruning import prune
from keras_slim.tools.report import Report, report
from keras_slim.tools.summary import summarize

