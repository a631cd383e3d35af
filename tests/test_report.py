"""Per-group summaries, the report page and its plots."""

import keras
import numpy as np
import pytest

from keras_slim.core.counting import count_macs, count_params
from keras_slim.core.surgery import slim_model
from keras_slim.planners.selection import plan_global_gamma
from keras_slim.tools import summary
from keras_slim.tools.report import plot_model, report
from tests import zoo

PNG = b"\x89PNG\r\n\x1a\n"


def with_gammas(model, zeros=0, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma = np.abs(rng.standard_normal(layer.gamma.shape)) + 0.1
            gamma[:zeros] = 0.0
            layer.gamma.assign(gamma.astype("float32"))
    return model


@pytest.mark.parametrize("factory", [zoo.residual, zoo.concat, zoo.multi_io,
                                     zoo.depthwise])
def test_rows_add_up_to_the_model_totals(factory):
    model = factory()
    rows = summary.summarize(model)
    assert rows[-1].name == summary.OTHER
    assert sum(r.params for r in rows) == pytest.approx(count_params(model))
    assert sum(r.macs for r in rows) == pytest.approx(count_macs(model))
    assert all(r.params >= 0 and r.macs >= 0 for r in rows)


def test_gamma_statistics_per_group():
    model = with_gammas(zoo.residual(), zeros=3)
    rows = {r.name: r for r in summary.summarize(model)}
    stem = rows["stem_conv"]
    assert stem.width == 8 and set(stem.layers) >= {"stem_conv", "stem_bn"}
    # Tied by the residual add: a channel's score is the largest |gamma| of
    # stem_bn and r1b_bn, both zeroed on the first 3 channels.
    assert stem.gamma_zeros == 3 and stem.gamma_min == 0.0
    expected = np.maximum(
        np.abs(model.get_layer("stem_bn").gamma.numpy()),
        np.abs(model.get_layer("r1b_bn").gamma.numpy()),
    )
    assert stem.gamma_median == pytest.approx(float(np.median(expected)))
    table = summary.inspect_table(list(rows.values()))
    assert "stem_conv" in table and table.splitlines()[-1].split()[-1] == "12"


def test_compare_rows_lists_the_groups_that_shrank():
    model = with_gammas(zoo.chain())
    plan = plan_global_gamma(model, 0.5)
    slim = slim_model(model, plan)
    groups, totals = summary.compare_rows(
        summary.summarize(model), summary.summarize(slim),
        [("accuracy", 0.9, 0.81), ("latency", "2 ms", "1 ms", "2x")],
    )
    cut = {row[0]: (int(row[1]), int(row[2])) for row in groups}
    assert cut == {name: (plan.widths[name], len(kept))
                   for name, kept in plan.kept.items()}
    labels = [row[0] for row in totals]
    assert labels == ["params", "MACs", "accuracy", "latency"]
    assert totals[2][3] == "-10.0%" and totals[3][3] == "2x"


@pytest.mark.parametrize("extension", [".html", ".md"])
def test_report_writes_a_page_and_three_pngs(tmp_path, extension):
    model = with_gammas(zoo.residual(), zeros=2)
    weights = [w.copy() for w in model.get_weights()]
    slim = slim_model(model, plan_global_gamma(model, 0.5))
    result = report(model, slim, tmp_path / "out" / f"page{extension}",
                    metrics=[("test accuracy", "97.0%", "96.5%")])
    page = (tmp_path / "out" / f"page{extension}").read_text()
    assert result.page.endswith(f"page{extension}")
    assert [p.rsplit("_", 1)[1] for p in result.images] == [
        "gammas.png", "widths.png", "costs.png"
    ]
    for image in result.images:
        with open(image, "rb") as file:
            assert file.read(8) == PNG
        assert image.rsplit("/", 1)[1] in page  # linked relatively
    for text in ("params", "MACs", "test accuracy", "96.5%", "r2a_conv"):
        assert text in page
    # Nothing the user gave was modified.
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_report_refuses_other_extensions(tmp_path):
    model = zoo.chain()
    with pytest.raises(ValueError, match="`path`.*html"):
        report(model, model, tmp_path / "page.pdf")


def test_report_needs_graph_models(tmp_path):
    with pytest.raises(TypeError, match="`slim`"):
        report(zoo.chain(), "not a model", tmp_path / "page.html")


def test_plot_model(tmp_path):
    path = plot_model(with_gammas(zoo.residual(), zeros=1),
                      tmp_path / "inspect.png")
    with open(path, "rb") as file:
        assert file.read(8) == PNG
    with pytest.raises(ValueError, match="`path`.*png"):
        plot_model(zoo.chain(), tmp_path / "inspect.jpg")


def test_human_numbers():
    assert summary.human(999) == "999"
    assert summary.human(25_557_032) == "25.6M"
    assert summary.human(3.86e9) == "3.86G"
    assert summary.human(None) == "-"


def test_report_plots_the_sparse_models_gammas(tmp_path, monkeypatch):
    """The gamma histogram tells the method's story: the sparse-trained
    model's gammas, whose zeros were cut, not the dense model's."""
    from keras_slim.planners.criteria import plan_zero_gamma
    from keras_slim.tools import report as report_module

    dense = with_gammas(zoo.chain())
    sparse = with_gammas(zoo.chain(), zeros=3, seed=1)
    slim = slim_model(sparse, plan_zero_gamma(sparse))
    legends = []
    save = report_module._save

    def recording_save(figure, path):
        legend = figure.axes[0].get_legend()
        legends.append([t.get_text() for t in legend.get_texts()]
                       if legend else [])
        save(figure, path)

    monkeypatch.setattr(report_module, "_save", recording_save)
    page = tmp_path / "page.html"
    report(dense, slim, page, sparse=sparse)
    # chain: two groups of 8 and 12 channels, 3 zeroed in each, all cut.
    assert legends[0] == ["sparse-trained (20 channels, 6 at zero)",
                          "after (14 channels)"]
    report(dense, slim, page)
    assert legends[3][0] == "before (20 channels, 0 at zero)"
    text = page.read_text()
    assert "`" not in text and "<code>chain</code> pruned" in text
    with pytest.raises(TypeError, match="sparse"):
        report(dense, slim, page, sparse="model")
