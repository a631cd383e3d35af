"""The built-in rules: how Keras' own layers take part in the channel graph.

Importing this package registers every built-in rule into the registry of
`keras_slim.core.rule_registry` (see there for what a rule answers);
`keras_slim.core` imports it, so the registry is full as soon as any core
module is imported. The registry never imports the rules: no cycle.
"""

from keras_slim.core.rules import (  # noqa: F401
    attention,
    channelwise,
    kernels,
    merging,
)
from keras_slim.core.rules.attributes import (
    activation_mixes,
    apply_activation,
    has_activation,
    zero_border,
)

__all__ = [
    "activation_mixes",
    "apply_activation",
    "has_activation",
    "zero_border",
]
