"""The extension surface: how a layer type takes part in pruning.

A rule says what a layer does to channels (`Role`) and how it is cut
(`Rule.slice`); `register_rule` files it under layer classes, and
`registered` does so for one block of code only. This is the one place
to import them from.
"""

from keras_slim.core.rule_registry import (
    BARRIER,
    CHANNELWISE,
    CONCAT,
    FLATTEN,
    MAPS_KEPT,
    MAPS_MOVED,
    MAPS_PADDED,
    MAPS_SIGNED,
    MAPS_VALUES,
    MERGE,
    PRODUCER,
    Role,
    Rule,
    register_rule,
    registered,
    rule_for,
    take,
)

__all__ = [
    "BARRIER",
    "CHANNELWISE",
    "CONCAT",
    "FLATTEN",
    "MAPS_KEPT",
    "MAPS_MOVED",
    "MAPS_PADDED",
    "MAPS_SIGNED",
    "MAPS_VALUES",
    "MERGE",
    "PRODUCER",
    "Role",
    "Rule",
    "register_rule",
    "registered",
    "rule_for",
    "take",
]
