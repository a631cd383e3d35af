"""The research protocols of "Rethinking the Value of Network Pruning":
scratch training, rewinding, slimming in passes, magnitude masks."""

from keras_slim.protocols.magnitude import (
    MagnitudeMask,
    apply_masks,
    magnitude_masks,
    masks_of_arrays,
    prunable_kernels,
    sparsity_of,
)
from keras_slim.protocols.rethinking import (
    WeightSnapshot,
    reinitialize,
    rewind,
    scratch_budget,
    slim_in_passes,
    snapshot_weights,
)

__all__ = [
    "MagnitudeMask",
    "WeightSnapshot",
    "apply_masks",
    "magnitude_masks",
    "masks_of_arrays",
    "prunable_kernels",
    "reinitialize",
    "rewind",
    "scratch_budget",
    "slim_in_passes",
    "snapshot_weights",
    "sparsity_of",
]
