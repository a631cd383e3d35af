"""benchmarks/latency.py's `--curve` verdict: a plan "keeps more than
every family" only when its gamma kept beats each family's, interpolated
at the plan's measured latency, and never when the plan lies outside a
family's measured points. The verdict is what the issue's claim rests
on, so it is checked here on rows whose answer is known."""

import pytest

pytestmark = pytest.mark.backend("tensorflow")


@pytest.fixture(scope="module")
def latency(benchmark_module):
    return benchmark_module("latency")


def _row(plan, relative, kept, curve=False):
    return {"model": "Net", "threads": 1, "plan": plan, "curve": curve,
            "gamma_kept": kept, "latency": (10.0, 10.0 * relative)}


def _curve():
    return [_row("~max/8@0.5", 0.3, 0.70, True),
            _row("~max/8@0.3", 0.5, 0.80, True),
            _row("~uniform/8@0.5", 0.3, 0.60, True),
            _row("~uniform/8@0.3", 0.5, 0.90, True)]


def _verdict(latency, plan_row):
    lines = latency.at_equal_latency(_curve() + [plan_row])
    (line,) = [x for x in lines if x.strip().startswith(plan_row["plan"])]
    return line


def test_a_plan_above_every_family_is_called_so(latency):
    line = _verdict(latency, _row("lat0.6", 0.4, 0.86))
    assert "max/8 0.750" in line and "uniform/8 0.750" in line
    assert "keeps more than every family" in line


def test_a_plan_below_one_family_is_not(latency):
    # Above max/8 (0.775 at 0.45) but below uniform/8 (0.825 there).
    line = _verdict(latency, _row("lat0.6", 0.45, 0.80))
    assert "max/8 0.775" in line and "uniform/8 0.825" in line
    assert "keeps more" not in line


def test_a_plan_outside_the_measured_points_gets_no_verdict(latency):
    line = _verdict(latency, _row("lat0.6", 0.2, 0.99))
    assert "max/8 outside" in line
    assert "keeps more" not in line
