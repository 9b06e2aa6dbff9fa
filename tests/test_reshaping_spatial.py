"""ZeroPadding/Cropping/UpSampling 1D-3D, Permute, RepeatVector against real Keras 3 (torch backend):
forward values, input gradients, output shapes, configs, `.keras` files and bad-argument errors."""

import json

import numpy as np
import pytest

import lamina
from lamina import layers
from tests.helpers import (
    check_layer_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
    run_layer_test,
)

FORMATS = ("channels_last", "channels_first")


def _formats(name, shape, argument_sets, key):
    """Every argument value in ``argument_sets`` (None: the default) in both data formats."""
    cases = []
    for value in argument_sets:
        for fmt in FORMATS:
            kwargs = {"data_format": fmt} if value is None else {key: value, "data_format": fmt}
            layout = shape if fmt == "channels_last" else (shape[0], shape[-1], *shape[1:-1])
            cases.append((name, kwargs, layout))
    return cases


CASES = [
    *[("ZeroPadding1D", kw, (2, 5, 3)) for kw in ({}, {"padding": 2}, {"padding": (1, 3)}, {"padding": 0},
                                                  {"padding": [0, 2]})],
    *[("ZeroPadding1D", {"padding": (1, 2), "data_format": "channels_first"}, (2, 3, 5))],
    *_formats("ZeroPadding2D", (2, 4, 5, 3), [None, 2, (1, 2), ((1, 0), (2, 3)), ((1, 2), 3), 0], "padding"),
    *_formats("ZeroPadding3D", (2, 3, 4, 2, 3), [None, 1, (1, 2, 0), ((1, 0), (0, 2), (1, 1))], "padding"),
    *[("Cropping1D", kw, (2, 6, 3)) for kw in ({}, {"cropping": 1}, {"cropping": (0, 2)}, {"cropping": (2, 0)},
                                               {"cropping": 0})],
    *_formats("Cropping2D", (2, 6, 7, 3), [None, 1, (1, 2), ((1, 0), (0, 2)), ((0, 0), (1, 1)), (2, (0, 3))],
              "cropping"),
    *_formats("Cropping3D", (2, 5, 6, 7, 3), [None, 1, (1, 0, 2), ((1, 0), (0, 2), (1, 1)), ((0, 0), 1, (2, 0))],
              "cropping"),
    *[("UpSampling1D", kw, (2, 4, 3)) for kw in ({}, {"size": 3}, {"size": 1})],
    *_formats("UpSampling2D", (2, 3, 4, 2), [None, 3, (2, 3), (1, 2)], "size"),
    *[("UpSampling2D", {"size": s, "interpolation": "bilinear", "data_format": f}, (2, 3, 4, 2))
      for s in ((2, 2), (2, 3), (1, 4), 3) for f in FORMATS],
    ("UpSampling2D", {"size": (3, 2), "interpolation": "bilinear", "data_format": "channels_first"}, (2, 2, 3, 4)),
    ("UpSampling2D", {"size": 2, "interpolation": "BILINEAR"}, (1, 1, 3, 2)),
    *[("UpSampling2D", {"size": s, "interpolation": "bicubic", "data_format": f}, (2, 4, 5, 2))
      for s in ((2, 2), (3, 2), (1, 4)) for f in FORMATS],
    ("UpSampling2D", {"size": (2, 3), "interpolation": "bicubic"}, (1, 1, 2, 1)),
    *_formats("UpSampling3D", (2, 2, 3, 2, 3), [None, 2, (1, 2, 3)], "size"),
    ("Permute", {"dims": (2, 1)}, (2, 3, 4)),
    ("Permute", {"dims": (3, 1, 2)}, (2, 3, 4, 5)),
    ("Permute", {"dims": [1, 2]}, (2, 3, 4)),
    ("Permute", {"dims": (2, 4, 1, 3)}, (2, 3, 4, 5, 6)),
    ("RepeatVector", {"n": 3}, (2, 4)),
    ("RepeatVector", {"n": 1}, (3, 5)),
]
IDS = [f"{name}-{kwargs}" for name, kwargs, _ in CASES]


def _pair(keras, name, kwargs):
    return getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_forward_gradient_shape_and_config_match_keras(keras, name, kwargs, shape):
    ours, theirs = _pair(keras, name, kwargs)
    x = random_inputs(shape)
    proj = np.random.default_rng(3).standard_normal(ours.compute_output_shape(shape)).astype("float32")
    ky, kdx, _ = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, x, proj)
    assert ly.shape == ky.shape and ly.dtype == np.float32
    np.testing.assert_allclose(ly, ky, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-5, atol=1e-6)
    for sym in [(None, *shape[1:]), (None,) * len(shape)]:
        assert tuple(ours.compute_output_shape(sym)) == tuple(theirs.compute_output_shape(sym))

    def own(config):  # the layer's own keys (names and dtype policies differ by counter and library)
        return {k: v for k, v in _jsonable(config).items() if k not in ("name", "dtype")}

    lcfg, kcfg = ours.get_config(), theirs.get_config()
    assert own(lcfg) == own(kcfg)
    # each library builds the same layer from the other's config
    np.testing.assert_allclose(type(ours).from_config(_jsonable(kcfg))(x), ky, rtol=1e-6, atol=1e-6)
    assert own(type(theirs).from_config(_jsonable(lcfg)).get_config()) == own(kcfg)


@pytest.mark.parametrize("name,kwargs,shape", CASES[::3], ids=IDS[::3])
def test_generic_layer_harness(name, kwargs, shape):
    out = tuple(getattr(layers, name)(**kwargs)(random_inputs(shape)).shape)
    run_layer_test(getattr(layers, name), kwargs, shape, out)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_gradients_match_central_differences(name, kwargs, shape):
    layer = getattr(layers, name)(**kwargs, dtype="float64")
    check_layer_gradients(layer, random_inputs(shape, dtype="float64"))


@pytest.mark.parametrize("name,kwargs,shape", CASES[::2], ids=IDS[::2])
def test_keras_file_loads_with_equal_predictions(keras, tmp_path, name, kwargs, shape):
    theirs = keras.Sequential([keras.Input(shape[1:]), getattr(keras.layers, name)(**kwargs),
                               keras.layers.Dense(2)])
    path = str(tmp_path / "model.keras")
    theirs.save(path)
    ours = lamina.saving.load_model(path)
    x = random_inputs(shape)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert type(ours.layers[0]).__name__ == name


@pytest.mark.parametrize("name,kwargs,shape", CASES[1::4], ids=IDS[1::4])
def test_functional_model_round_trip(tmp_path, name, kwargs, shape):
    inputs = layers.Input(shape[1:])
    hidden = getattr(layers, name)(**kwargs)(inputs)
    model = lamina.Model(inputs, layers.Dense(2)(hidden))
    x = random_inputs(shape)
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(lamina.saving.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


BAD = [
    ("ZeroPadding1D", {"padding": (1,)}), ("ZeroPadding1D", {"padding": (1, 2, 3)}),
    ("ZeroPadding1D", {"padding": "1"}), ("ZeroPadding1D", {"padding": -1}), ("ZeroPadding1D", {"padding": (1, -2)}),
    ("ZeroPadding1D", {"padding": 1, "data_format": "channels_middle"}),
    ("ZeroPadding2D", {"padding": (1, 2, 3)}), ("ZeroPadding2D", {"padding": ((1, 2), (3, 4, 5))}),
    ("ZeroPadding2D", {"padding": "1"}), ("ZeroPadding2D", {"padding": ((1, -2), 1)}),
    ("ZeroPadding2D", {"padding": 1.5}), ("ZeroPadding2D", {"data_format": "nhwc"}),
    ("ZeroPadding3D", {"padding": (1, 2)}), ("ZeroPadding3D", {"padding": ((1, 2), (3, 4), (5, 6, 7))}),
    ("ZeroPadding3D", {"padding": None}), ("ZeroPadding3D", {"padding": (1, 1, -1)}),
    ("Cropping1D", {"cropping": (1,)}), ("Cropping1D", {"cropping": (1, 2, 3)}), ("Cropping1D", {"cropping": "1"}),
    ("Cropping1D", {"cropping": -1}),
    ("Cropping2D", {"cropping": (1, 2, 3)}), ("Cropping2D", {"cropping": "1"}), ("Cropping2D", {"cropping": -1}),
    ("Cropping2D", {"cropping": ((1, 2), (3, 4, 5))}), ("Cropping2D", {"cropping": ((1, 2), (3, -4))}),
    ("Cropping2D", {"data_format": "channels"}),
    ("Cropping3D", {"cropping": (1, 2)}), ("Cropping3D", {"cropping": -2}), ("Cropping3D", {"cropping": None}),
    ("Cropping3D", {"cropping": ((1, 2), (3, 4), (5, 6, 7))}), ("Cropping3D", {"cropping": ((1, 2), (3, 4), "a")}),
    ("UpSampling1D", {"size": 0}), ("UpSampling1D", {"size": -2}), ("UpSampling1D", {"size": 2.0}),
    ("UpSampling1D", {"size": "2"}), ("UpSampling1D", {"size": True}),
    ("UpSampling2D", {"size": (2, 0)}), ("UpSampling2D", {"size": (2, 2, 2)}), ("UpSampling2D", {"size": -1}),
    ("UpSampling2D", {"data_format": "x"}),
    ("UpSampling3D", {"size": (2, 2)}), ("UpSampling3D", {"size": 0}), ("UpSampling3D", {"size": (1, -1, 1)}),
    ("Permute", {"dims": (0, 1)}), ("Permute", {"dims": (1, 3)}), ("Permute", {"dims": (2, 2)}),
    ("RepeatVector", {"n": 0}), ("RepeatVector", {"n": -3}), ("RepeatVector", {"n": 2.0}),
    ("RepeatVector", {"n": "3"}), ("RepeatVector", {"n": None}),
]


@pytest.mark.parametrize("name,kwargs", BAD, ids=[f"{n}-{k}" for n, k in BAD])
def test_bad_arguments_raise_like_keras(keras, name, kwargs):
    with pytest.raises(Exception) as theirs:
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(type(theirs.value), match="Received"):
        getattr(layers, name)(**kwargs)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("Cropping1D", {"cropping": (3, 3)}, (2, 5, 3)),
    ("Cropping1D", {"cropping": (2, 3)}, (2, 5, 3)),
    ("Cropping2D", {"cropping": ((2, 2), (0, 0))}, (2, 4, 6, 3)),
    ("Cropping2D", {"cropping": ((0, 0), (3, 3)), "data_format": "channels_first"}, (2, 3, 6, 6)),
    ("Cropping3D", {"cropping": ((0, 0), (0, 0), (2, 3))}, (2, 5, 6, 5, 3)),
    ("Cropping3D", {"cropping": ((3, 3), (0, 0), (0, 0)), "data_format": "channels_first"}, (2, 3, 6, 6, 6)),
])
def test_cropping_everything_away_raises_like_keras(keras, name, kwargs, shape):
    ours, theirs = _pair(keras, name, kwargs)
    x = random_inputs(shape)
    message = ("`cropping` parameter of `Cropping1D` layer must be smaller" if name == "Cropping1D"
               else "Values in `cropping` argument should be smaller than the corresponding spatial dimension")
    with pytest.raises(ValueError, match=message):
        theirs(x)
    with pytest.raises(ValueError, match=message):
        ours(x)
    with pytest.raises(ValueError, match=message):
        ours.compute_output_shape((None, *shape[1:]))
    with pytest.raises(ValueError, match=message):
        getattr(layers, name)(**kwargs)(layers.Input(shape[1:]))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("ZeroPadding2D", {}, (2, 3, 4)), ("Cropping3D", {}, (2, 5, 5, 5)), ("UpSampling1D", {}, (2, 3)),
    ("RepeatVector", {"n": 2}, (2, 3, 4)), ("Permute", {"dims": (2, 1)}, (2, 3, 4, 5)),
])
def test_wrong_input_rank_is_refused(name, kwargs, shape):
    with pytest.raises(ValueError, match="ndim"):
        getattr(layers, name)(**kwargs)(random_inputs(shape))


def test_bilinear_upsampling_interpolates_between_neighbours():
    x = np.array([0.0, 4.0], dtype="float32").reshape(1, 1, 2, 1)
    y = layers.UpSampling2D((1, 2), interpolation="bilinear")(x)
    np.testing.assert_allclose(y.reshape(-1), [0.0, 1.0, 3.0, 4.0])


@pytest.mark.parametrize("name,kwargs", [("ZeroPadding1D", {"padding": (1.5, 1)}),
                                         ("Cropping2D", {"cropping": ((1, 0.5), 1)}),
                                         ("UpSampling3D", {"size": (2, 2, 1.5)})])
def test_fractional_widths_are_refused_at_construction(name, kwargs):
    # Keras accepts these and fails (or truncates) inside the op; lamina names the argument up front
    with pytest.raises(ValueError, match="non-integer value"):
        getattr(layers, name)(**kwargs)


_LANCZOS_ORACLE = """
import sys, numpy as np, keras
data = dict(np.load(sys.argv[1]))
out = {}
for name, x in data.items():
    interpolation, data_format = name.split("-")
    size = (6, 12)
    out[name] = np.asarray(keras.ops.image.resize(x, size, interpolation=interpolation, antialias=False,
                                                  data_format=data_format))
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def lanczos_reference(tmp_path_factory):
    """Keras's lanczos resize (2x3 up) on its NumPy backend, run in a subprocess: its torch backend has
    no lanczos, and loading a second backend into this process would disturb the torch one."""
    import os  # lazy: only this fixture starts a process
    import subprocess  # lazy: only this fixture starts a process
    import sys  # lazy: only this fixture starts a process

    pytest.importorskip("keras")
    # Keras's NumPy backend resizes through jax.image, which the dev extra does not install.
    pytest.importorskip("jax", reason="Keras's lanczos resize (NumPy backend) runs on jax, which is not installed")
    folder = tmp_path_factory.mktemp("lanczos")
    inputs = {f"{i}-{f}": random_inputs((2, 3, 4, 2) if f == "channels_last" else (2, 2, 3, 4))
              for i in ("lanczos3", "lanczos5") for f in FORMATS}
    np.savez(folder / "in.npz", **inputs)
    subprocess.run([sys.executable, "-c", _LANCZOS_ORACLE, str(folder / "in.npz"), str(folder / "out.npz")],
                   check=True, env={**os.environ, "KERAS_BACKEND": "numpy"}, timeout=120)
    return inputs, dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("interpolation", ["lanczos3", "lanczos5"])
@pytest.mark.parametrize("data_format", FORMATS)
def test_lanczos_matches_keras_resize_without_antialiasing(lanczos_reference, interpolation, data_format):
    inputs, expected = lanczos_reference
    key = f"{interpolation}-{data_format}"
    layer = layers.UpSampling2D((2, 3), data_format=data_format, interpolation=interpolation)
    np.testing.assert_allclose(layer(inputs[key]), expected[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["lanczos3", "lanczos5"])
@pytest.mark.parametrize("data_format", FORMATS)
def test_lanczos_gradients_match_central_differences(interpolation, data_format):
    shape = (2, 3, 4, 2) if data_format == "channels_last" else (2, 2, 3, 4)
    check_layer_gradients(layers.UpSampling2D((2, 3), data_format=data_format, interpolation=interpolation,
                                              dtype="float64"), random_inputs(shape, dtype="float64"))


def test_unsupported_interpolation_names_what_lamina_has():
    with pytest.raises(ValueError, match="interpolation='area'"):
        layers.UpSampling2D(interpolation="area")
