"""Channel layouts: how the last axis of a tensor maps onto channel spaces.

A *space* is a set of channels born together: the output channels of one
producer layer (a convolution, a Dense), of a model input, or of a barrier.
Spaces tied by the graph (a residual `Add`, a shared layer) are merged with a
union-find; a merged set is a *channel group*, the unit a plan cuts.

A `Layout` describes the last axis of one tensor as a concatenation of
segments, each a whole space whose every channel occupies `expand` adjacent
positions (a depthwise convolution with `depth_multiplier=m` multiplies
`expand` by m), the whole pattern repeated `tile` times (a `Flatten` of an
`H x W x C` map tiles the channel pattern `H * W` times).
"""

import dataclasses

import numpy as np

__all__ = ["concatenate", "Layout", "Segment", "UnionFind"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """One space inside a layout: `width` channels of `expand` positions."""

    space: int
    width: int
    expand: int = 1

    @property
    def size(self):
        return self.width * self.expand


@dataclasses.dataclass(frozen=True)
class Layout:
    """The channel structure of the last axis of a tensor."""

    segments: tuple
    tile: int = 1

    @property
    def size(self):
        return self.tile * sum(s.size for s in self.segments)

    def expanded(self, factor):
        """Each position becomes `factor` adjacent positions (depthwise)."""
        if factor == 1:
            return self
        segments = tuple(
            Segment(s.space, s.width, s.expand * factor)
            for s in self.segments
        )
        return Layout(segments, self.tile)

    def tiled(self, count):
        return Layout(self.segments, self.tile * count)

    def positions(self, kept):
        """Positions that survive when each space keeps `kept(space)`.

        Args:
            kept: callable mapping a space id to a sorted integer array of
                kept channel indices, or `None` for all of them.

        Returns:
            Sorted int64 array of positions on the last axis.
        """
        parts = []
        offset = 0
        for seg in self.segments:
            channels = kept(seg.space)
            if channels is None:
                channels = np.arange(seg.width)
            idx = channels[:, None] * seg.expand + np.arange(seg.expand)
            parts.append(offset + idx.ravel())
            offset += seg.size
        base = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if self.tile > 1:
            base = (np.arange(self.tile)[:, None] * offset + base).ravel()
        return base.astype(np.int64)

    def channel_positions(self, space_root, root_of):
        """Map each channel of the group `space_root` to its positions.

        Returns:
            A `(width, k)` int array: row c lists every position on the last
            axis that carries channel c of the group, or `None` when the
            layout does not touch the group.
        """
        blocks = []
        offset = 0
        base = sum(s.size for s in self.segments)
        for seg in self.segments:
            if root_of(seg.space) == space_root:
                idx = (
                    offset
                    + np.arange(seg.width)[:, None] * seg.expand
                    + np.arange(seg.expand)
                )
                for t in range(self.tile):
                    blocks.append(idx + t * base)
            offset += seg.size
        if not blocks:
            return None
        return np.concatenate(blocks, axis=1)

    def compatible(self, other):
        """Whether two layouts line up channel by channel."""
        if self.tile != other.tile or len(self.segments) != len(
            other.segments
        ):
            return False
        return all(
            a.width == b.width and a.expand == b.expand
            for a, b in zip(self.segments, other.segments)
        )


def concatenate(layouts):
    """The layout of a concatenation along the last axis, or `None`."""
    if any(lay.tile != 1 for lay in layouts):
        return None
    segments = tuple(s for lay in layouts for s in lay.segments)
    return Layout(segments)


class UnionFind:
    """Union-find over space ids, with a width and a freeze reason each."""

    def __init__(self):
        self.parent = []
        self.width = []
        self.origin = []
        self.frozen = {}

    def new(self, width, origin, frozen=None):
        self.parent.append(len(self.parent))
        self.width.append(int(width))
        self.origin.append(origin)
        space = len(self.parent) - 1
        if frozen:
            self.frozen[space] = frozen
        return space

    def find(self, space):
        root = space
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[space] != root:
            self.parent[space], space = root, self.parent[space]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        return ra

    def freeze(self, space, reason):
        self.frozen.setdefault(space, reason)

    def frozen_reason(self, root):
        """The first reason any space of the group `root` was frozen."""
        for space in sorted(self.frozen):
            if self.find(space) == root:
                return self.frozen[space]
        return None
