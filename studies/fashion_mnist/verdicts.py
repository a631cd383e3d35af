"""Three-valued verdicts from paired per-seed differences.

A claim is a statement about the true difference `d` between two arms
(in accuracy points): `d > threshold` ("above") or `d < threshold`
("below"). Each seed trains both arms, so the per-seed differences are
paired; their 95% t interval (n - 1 degrees of freedom) decides:

- **agrees**: the whole interval is on the claim's side of the threshold;
- **disagrees**: the whole interval is on the other side;
- **inconclusive**: the interval spans the threshold, or there is a single
  seed (no interval).

An experiment whose runs did not do what it tests (nothing pruned, plans
at unequal latency) is **not run as designed**, whatever its numbers.

Standard library only; the t quantiles are tabulated.
"""

import math

AGREES, DISAGREES = "agrees", "disagrees"
INCONCLUSIVE, NOT_AS_DESIGNED = "inconclusive", "not run as designed"

# "Keeps" or "matches" the accuracy: loses less than this many points.
# About one standard error of a test accuracy near 91% on 10,000 images
# (100 * sqrt(0.91 * 0.09 / 10000) = 0.29).
MARGIN = 0.3

# Two-sided 95% quantiles of Student's t by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
        7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179,
        13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
        19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
        120: 1.980}


def t95(dof):
    """The two-sided 95% t quantile at `dof` degrees of freedom (the
    next tabulated smaller dof where it is not tabulated: conservative)."""
    if dof < 1:
        raise ValueError(f"Expected `dof` >= 1. Received: dof={dof}")
    return _T95[max(k for k in _T95 if k <= dof)] if dof <= 120 else 1.960


def interval(differences):
    """`(mean, low, high)`: the 95% t interval of the mean of
    `differences`; `low` and `high` are `None` for fewer than 2."""
    n = len(differences)
    if n == 0:
        raise ValueError("Expected at least one difference. Received: none")
    mean = sum(differences) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def decide(differences, threshold, side="above", what=""):
    """The verdict on "the difference is `side` `threshold`".

    Returns:
        A dict: `verdict`, `mean`, `low`, `high`, `n`, `threshold`,
        `side`, `what` (the comparison, in words).
    """
    if side not in ("above", "below"):
        raise ValueError("Expected `side` in ('above', 'below'). "
                         f"Received: side={side!r}")
    mean, low, high = interval(list(differences))
    if low is None:
        verdict = INCONCLUSIVE
    elif (low > threshold) if side == "above" else (high < threshold):
        verdict = AGREES
    elif (high < threshold) if side == "above" else (low > threshold):
        verdict = DISAGREES
    else:
        verdict = INCONCLUSIVE
    return {"verdict": verdict, "mean": mean, "low": low, "high": high,
            "n": len(differences), "threshold": threshold, "side": side,
            "what": what}


def not_as_designed(why):
    """A verdict for an experiment whose runs did not test the claim."""
    return {"verdict": NOT_AS_DESIGNED, "why": why}


def combine(parts):
    """One verdict from several parts of a claim: not run as designed if
    any part is; else disagrees if any part disagrees; else inconclusive
    if any part is; else agrees."""
    found = {p["verdict"] for p in parts}
    for verdict in (NOT_AS_DESIGNED, DISAGREES, INCONCLUSIVE):
        if verdict in found:
            return verdict
    return AGREES if found else INCONCLUSIVE


def describe(part):
    """One part in words: the comparison, its mean and interval."""
    if part["verdict"] == NOT_AS_DESIGNED:
        return part["why"]
    text = f"{part['what']}: {part['mean']:+.2f} points"
    if part["low"] is None:
        text += f" (n = {part['n']}: no interval)"
    else:
        text += (f", 95% t interval [{part['low']:+.2f}, {part['high']:+.2f}]"
                 f" over n = {part['n']} seeds")
    sign = ">" if part["side"] == "above" else "<"
    return text + f"; claim: {sign} {part['threshold']:+.2f} -> {part['verdict']}"


def paired(rows, first, second, key="accuracy"):
    """Per-seed differences `first - second` in points, over the seeds
    with both: `first` and `second` are dicts a row must match."""
    def by_seed(match):
        return {r["seed"]: r for r in rows
                if all(r.get(k) == v for k, v in match.items())}
    a, b = by_seed(first), by_seed(second)
    return [100 * (a[s][key] - b[s][key]) for s in sorted(set(a) & set(b))]
