"""The README's and the guides' Python examples run as written.

Every ```python block of README.md and of the guides (docs/*.md) runs, in
a fresh namespace and a temporary folder, unless the HTML comment on the
line before it says otherwise:

- `<!-- readme-test: skip (reason) -->`: not run (training, conversions,
  timing); the reason names the test that covers it instead.
- `<!-- readme-test: setup=NAME -->`: run after the stand-in `SETUPS[NAME]`
  (a tiny model for the `model` the prose is about).
- `<!-- readme-test: continues -->`: run after the block before it, in the
  same namespace.
"""

import pathlib
import re

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))

_TINY = '''
import keras
import numpy as np
import keras_slim

keras.utils.set_random_seed(0)
L = keras.layers
'''

SETUPS = {
    # A custom per-channel scale between a conv-BN pair and the next conv.
    "custom_layer": _TINY + '''
class MyChannelScale(L.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],),
                                     initializer="ones")

    def call(self, x):
        return x * self.scale

inputs = keras.Input((8, 8, 3))
h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv")(inputs))
h = L.Conv2D(4, 3, name="next")(MyChannelScale(name="scale")(h))
model = keras.Model(inputs, L.GlobalAveragePooling2D()(h))
''',
    # A compiled conv-BN classifier and a few images for `fit`.
    "compiled_model": _TINY + '''
inputs = keras.Input((8, 8, 3))
h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv")(inputs))
h = L.GlobalAveragePooling2D()(L.ReLU()(h))
model = keras.Model(inputs, L.Dense(2, name="head")(h))
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
    from_logits=True))
x = np.random.rand(16, 8, 8, 3).astype("float32")
y = np.random.randint(0, 2, 16)
''',
    # A dense model and a slim copy with half of the conv's channels.
    "dense_and_slim": _TINY + '''
inputs = keras.Input((8, 8, 3))
h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv")(inputs))
h = L.GlobalAveragePooling2D()(L.ReLU()(h))
dense = keras.Model(inputs, L.Dense(2, name="head")(h))
slim = keras_slim.slim_model(dense, keras_slim.plan_uniform(dense, 0.5))
''',
}

_BLOCK = re.compile(r"(?:<!-- readme-test: (.*?) -->\n)?```python\n(.*?)```",
                    re.S)


def _blocks(page):
    """[(first line, marker or "", code)] of one page, in order."""
    text = page.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1) or "", m.group(2))
            for m in _BLOCK.finditer(text)]


def _cases():
    """Runnable units: chains of blocks joined by `continues`, as
    `(place, marker, [code])` with place `README.md:LINE`."""
    cases = []
    for page in PAGES:
        first = len(cases)
        for line, marker, code in _blocks(page):
            if marker == "continues":
                assert len(cases) > first, f"{page.name}:{line} continues nothing"
                cases[-1][2].append(code)
            else:
                cases.append((f"{page.relative_to(ROOT)}:{line}", marker,
                              [code]))
    return cases


CASES = _cases()


def test_the_pages_have_examples_and_markers_are_known():
    assert len(CASES) >= 6
    assert {place.split(":")[0] for place, _, _ in CASES} >= {
        "README.md", "docs/getting-started.md", "docs/extending.md"}
    for place, marker, _ in CASES:
        assert (marker == "" or marker.startswith("skip (")
                or marker.removeprefix("setup=") in SETUPS), (place, marker)


def test_slimming_a_model_runs_unchanged():
    first = CASES[0]
    assert first[0].startswith("README.md:")
    assert first[1] == "" and "keras.applications.ResNet50" in first[2][0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_readme_block_runs(case, tmp_path, monkeypatch):
    place, marker, codes = case
    if marker.startswith("skip"):
        pytest.skip(f"{place}: {marker}")
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    namespace = {"__name__": "readme_" + re.sub(r"\W", "_", place)}
    if marker.startswith("setup="):
        exec(compile(SETUPS[marker.removeprefix("setup=")],
                     f"<setup {marker}>", "exec"), namespace)
    for code in codes:
        exec(compile(code, place, "exec"), namespace)
    # Each example ends with something made; check that it is real.
    made = [namespace[name] for name in ("slim", "result") if name in namespace]
    if "report" in codes[0]:
        assert (tmp_path / "report" / "index.html").is_file()
    else:
        assert made and isinstance(made[0], keras.Model), place
        original = namespace.get("model", namespace.get("sparse"))
        assert made[0] is not original  # a new model; the user's is kept
