"""keras_slim: structured (channel) pruning for Keras 3."""

from keras_slim.budget import BudgetResult, plan_for_budget
from keras_slim.counting import count_macs, count_params
from keras_slim.criteria import plan_zero_gamma
from keras_slim.export import ExportResult, export
from keras_slim.graph import ChannelGroup, channel_groups
from keras_slim.guidance import plan_guided, stage_ratios, stages
from keras_slim.ista import GammaProx, ISTAGamma, ISTAPenalty, attach_ista
from keras_slim.latency_table import (
    LatencyTable,
    LiteRTRuntime,
    Runtime,
    build_latency_table,
)
from keras_slim.loading import load_model
from keras_slim.magnitude import MagnitudeMask, apply_masks, magnitude_masks
from keras_slim.penalties import penalty_weights
from keras_slim.plan import PruningPlan
from keras_slim.protocols import (
    WeightSnapshot,
    reinitialize,
    rewind,
    scratch_budget,
    slim_in_passes,
    snapshot_weights,
)
from keras_slim.pruning import prune
from keras_slim.regularizers import (
    GammaL1,
    add_gamma_regularizer,
    remove_gamma_regularizer,
)
from keras_slim.report import Report, report
from keras_slim.rescaling import rescale_gammas
from keras_slim.selection import (
    merged_layers,
    plan_global_gamma,
    plan_l1_norm,
    plan_uniform,
)
from keras_slim.slicers import register_rule
from keras_slim.summary import summarize
from keras_slim.surgery import applied_plan, slim_model

__version__ = "0.1.0"
