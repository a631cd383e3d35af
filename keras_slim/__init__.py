"""keras_slim: structured (channel) pruning for Keras 3."""

from keras_slim.counting import count_macs, count_params
from keras_slim.criteria import plan_zero_gamma
from keras_slim.graph import ChannelGroup, channel_groups
from keras_slim.plan import PruningPlan
from keras_slim.slicers import register_rule
from keras_slim.surgery import slim_model

__version__ = "0.1.0"
