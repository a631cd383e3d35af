"""`PruningPlan`: which channels each group keeps.

The plan is the contract between the criteria (which channels go) and the
surgery (how layers are cut). It is plain data: group name -> sorted kept
channel indices, plus each group's full width so a plan can be checked
against the model it is applied to.
"""

import json

import numpy as np

__all__ = ["PruningPlan"]


class PruningPlan:
    """Kept channel indices per channel group.

    Groups the plan does not name are kept whole.

    Args:
        kept: dict group name -> iterable of kept channel indices.
        widths: optional dict group name -> full width of the group, checked
            against the model when the plan is applied.

    Example:

    >>> plan = keras_slim.PruningPlan({"conv1": [0, 2, 3]}, {"conv1": 8})
    >>> slim = keras_slim.slim_model(model, plan)
    """

    def __init__(self, kept, widths=None):
        if not isinstance(kept, dict):
            raise TypeError(
                "Expected `kept` to be a dict of group name -> kept channel "
                f"indices. Received: kept={kept!r}"
            )
        self.kept = {str(name): _kept_indices(name, indices)
                     for name, indices in kept.items()}
        if widths is not None and not isinstance(widths, dict):
            raise TypeError(
                "Expected `widths` to be a dict of group name -> full "
                f"width. Received: widths={widths!r}"
            )
        self.widths = {str(k): _width(k, v)
                       for k, v in (widths or {}).items()}

    # -- data ---------------------------------------------------------------

    def to_dict(self):
        return {
            "kept": {k: v.tolist() for k, v in self.kept.items()},
            "widths": dict(self.widths),
        }

    @classmethod
    def from_dict(cls, data):
        """The plan `to_dict()` wrote; every kept group needs its width.

        Raises:
            ValueError: `data` has no `kept`, or no width for a kept group.
        """
        if not isinstance(data, dict) or "kept" not in data:
            raise ValueError(
                "Expected a dict with a `kept` entry, as written by "
                f"PruningPlan.to_dict(). Received: {data!r}"
            )
        widths = data.get("widths")
        if not isinstance(widths, dict):
            raise ValueError(
                "Expected the plan's `widths` entry to be a dict of group "
                "name -> full width, as written by PruningPlan.to_dict(); "
                "without it the plan cannot be checked against the model. "
                f"Received: widths={widths!r}"
            )
        missing = sorted(set(map(str, data["kept"])) - set(map(str, widths)))
        if missing:
            shown = ", ".join(f"`{name}`" for name in missing[:5])
            raise ValueError(
                f"The plan's `widths` lack the groups {shown}; without "
                "their widths the plan cannot be checked against the model. "
                "Write the plan with plan.complete(channel_groups(model))"
                ".to_json()."
            )
        return cls(data["kept"], widths)

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"The plan is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def __eq__(self, other):
        if not isinstance(other, PruningPlan):
            return NotImplemented
        return (self.widths == other.widths
                and self.kept.keys() == other.kept.keys()
                and all(np.array_equal(v, other.kept[k])
                        for k, v in self.kept.items()))

    def __repr__(self):
        cut = sum(
            self.widths.get(k, len(v)) - len(v) for k, v in self.kept.items()
        )
        return (
            f"PruningPlan({len(self.kept)} groups, {cut} channels removed)"
        )

    def removed(self, name):
        """Indices group `name` loses (needs its width in `widths`)."""
        if name not in self.kept:
            return np.zeros(0, np.int64)
        width = self.widths[name]
        return np.setdiff1d(np.arange(width), self.kept[name])

    # -- checking -----------------------------------------------------------

    def validate(self, groups, allow_empty=False):
        """Check the plan against a model's channel groups.

        Args:
            groups: the model's `channel_groups(model)`.
            allow_empty: whether a group may keep no channel.

        Raises:
            ValueError: naming the group that does not fit.
        """
        by_name = {g.name: g for g in groups}
        for name, indices in self.kept.items():
            group = by_name.get(name)
            if group is None:
                known = ", ".join(sorted(g.name for g in groups if g.prunable))
                raise ValueError(
                    f"The plan names channel group `{name}`, which the model "
                    "does not have: is this a plan for another model? "
                    f"Prunable groups: {known or 'none'}"
                )
            if name in self.widths and self.widths[name] != group.width:
                raise ValueError(
                    f"Group `{name}` has {group.width} channels in the model "
                    f"but {self.widths[name]} in the plan: is this a plan for "
                    "another model?"
                )
            if indices.size and (indices[0] < 0 or indices[-1] >= group.width):
                bad = indices[(indices < 0) | (indices >= group.width)][0]
                raise ValueError(
                    f"Group `{name}` has {group.width} channels; the plan "
                    f"keeps index {int(bad)}, out of range [0, {group.width})."
                )
            if not indices.size and not allow_empty:
                raise ValueError(
                    f"The plan keeps no channel of group `{name}`; at least "
                    "one channel must stay in every group."
                )
            if not group.prunable and indices.size != group.width:
                raise ValueError(
                    f"Group `{name}` cannot be pruned ({group.frozen}), but "
                    f"the plan keeps {indices.size} of its {group.width} "
                    "channels."
                )

    def complete(self, groups):
        """A copy that records the width of every group it names."""
        widths = dict(self.widths)
        for g in groups:
            if g.name in self.kept:
                widths.setdefault(g.name, g.width)
        return PruningPlan(self.kept, widths)


def _kept_indices(name, indices):
    """The sorted kept indices of group `name`, or an error naming it."""
    if isinstance(indices, (str, bytes, dict)) or not (
            hasattr(indices, "shape") or hasattr(indices, "__iter__")):
        raise TypeError(
            f"Expected the kept indices of group `{name}` to be a list of "
            f"channel indices. Received: {indices!r}"
        )
    try:
        array = np.asarray(list(indices) if not hasattr(indices, "shape")
                           else indices)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        raise ValueError(
            f"Expected the kept indices of group `{name}` to be a flat list "
            f"of channel indices. Received: {_short(indices)}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"Kept indices of group `{name}` must be integers. Received "
            f"dtype {array.dtype}: {_short(indices)}"
        )
    unique = np.unique(array.astype(np.int64))
    if unique.size != array.size:
        raise ValueError(
            f"Kept indices of group `{name}` contain duplicates."
        )
    return unique


def _width(name, value):
    """A group's full width: a positive integer, or an error naming it."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and value >= 1:
        return int(value)
    raise ValueError(
        f"Expected the width of group `{name}` to be a positive integer. "
        f"Received: {value!r}"
    )


def _short(value, limit=80):
    text = repr(value if not hasattr(value, "tolist") else value.tolist())
    return text if len(text) <= limit else text[:limit - 3] + "..."
