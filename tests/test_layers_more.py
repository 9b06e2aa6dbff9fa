"""Masking, Maximum, Minimum, Dot, Wrapper, Identity; masks carried one hop (Masking -> merges); compute_mask on
the merge layers; stateless layers built at construction. Oracle: real Keras on the torch backend."""


import numpy as np
import pytest

import lamina
from lamina import backend
from lamina import layers as L
from lamina.autodiff import unwrap
from lamina.layers.dot import l2_normalize
from tests.helpers import check_gradients, keras_forward_and_grads, lamina_forward_and_grads, random_inputs

RTOL, ATOL = 1e-5, 1e-6

# Timesteps 0 and 2 of x1, 0 and 1 of x2 are padding (all features equal the mask value 0).
X1 = np.array([[[0, 0], [1, 2], [0, 0], [3, 4]]], dtype="float32")
X2 = np.array([[[0, 0], [0, 0], [1, 2], [3, 4]]], dtype="float32")
NEG1 = -X1  # Maximum needs negative values to show which entries a mask hides


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- Masking


def test_masking_zeroes_padding_and_computes_the_mask():
    x = np.array([[[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]], [[2.0, 2.0], [0.0, 0.0], [2.0, 1.0]]], "float32")
    layer = L.Masking(mask_value=0.0)
    np.testing.assert_array_equal(layer.compute_mask(x), [[False, True, False], [True, False, True]])
    x[0, 0, 0] = 5.0  # one feature differs from mask_value: the step is kept
    np.testing.assert_array_equal(layer.compute_mask(x), [[True, True, False], [True, False, True]])
    other = L.Masking(mask_value=2.0)
    np.testing.assert_array_equal(other(x), [[[5, 0], [1, 2], [0, 0]], [[0, 0], [0, 0], [2, 1]]])
    sym = layer.compute_mask(L.Input((3, 2)))
    assert sym.shape == (None, 3) and sym.dtype == "bool"
    assert layer.compute_output_shape((None, 3, 2)) == (None, 3, 2)


@pytest.mark.oracle
@pytest.mark.parametrize("mask_value", [0.0, 1.5])
def test_masking_matches_keras(keras, mask_value):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(3, 5, 2)).astype("float32") * 0.75  # many steps all 0 or all 1.5
    x[:, 1] = mask_value
    proj = rng.normal(size=x.shape).astype("float32")
    ky, kdx, _ = keras_forward_and_grads(keras.layers.Masking(mask_value), x, proj)
    ly, ldx, _ = lamina_forward_and_grads(L.Masking(mask_value), x, proj)
    np.testing.assert_allclose(ly, ky, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ldx, kdx, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(L.Masking(mask_value).compute_mask(x),
                                  _np(keras, keras.layers.Masking(mask_value).compute_mask(x)))


def _padded(x, before=0, after=2):
    """``x`` with all-zero timesteps around it as constants: the padding is no input of the function, so
    central differences never cross the kink where a step stops being padding."""
    batch, _, features = np.shape(x)
    parts = [np.zeros((batch, before, features)), x, np.zeros((batch, after, features))]
    return lamina.ops.concatenate(parts, axis=1)


def test_masking_gradient():
    x = random_inputs((3, 4, 2), seed=1).astype("float64")
    check_gradients(lambda a: L.Masking(dtype="float64")(_padded(a)), x, empty_batch=True)
    with lamina.GradientTape() as tape:
        v = lamina.Variable(np.concatenate([x, np.zeros((3, 2, 2))], axis=1))
        loss = lamina.ops.sum(L.Masking(dtype="float64")(v))
    g = np.asarray(tape.gradient(loss, v))
    assert np.all(g[:, 4:] == 0) and np.all(g[:, :4] == 1)  # masked steps get no gradient


@pytest.mark.oracle
def test_masking_config_matches_keras(keras):
    ours, theirs = L.Masking(mask_value=-1.0), keras.layers.Masking(mask_value=-1.0)
    assert set(ours.get_config()) == set(theirs.get_config())
    assert L.Masking.from_config(theirs.get_config()).mask_value == -1.0
    assert keras.layers.Masking.from_config(ours.get_config()).mask_value == -1.0
    # An array mask_value is written the way Keras writes arrays, and read back by Keras.
    arr = L.Masking(mask_value=np.array([1.0, 2.0], "float32"))
    cfg = arr.get_config()["mask_value"]
    assert cfg["class_name"] == "__numpy__"
    np.testing.assert_array_equal(L.Masking.from_config(arr.get_config()).mask_value, [1.0, 2.0])
    np.testing.assert_array_equal(_np(keras, keras.layers.Masking.from_config(arr.get_config()).mask_value),
                                  [1.0, 2.0])


def test_masking_rejects_a_non_numeric_mask_value():
    with pytest.raises(ValueError, match=r"`mask_value` of a Masking layer .*Received: mask_value='pad'"):
        L.Masking(mask_value="pad")


# ----------------------------------------------------------------------------- masks on arrays


def test_a_masking_output_carries_its_mask_one_hop():
    x = L.Masking()(X1)
    np.testing.assert_array_equal(backend.get_keras_mask(x), [[False, True, False, True]])
    assert backend.get_keras_mask(X1) is None
    assert backend.get_keras_mask(L.Masking()(X1)) is not backend.get_keras_mask(x)
    # A cast copy (float64 in, float32 layer) keeps the mask, as in Keras.
    x64 = L.Masking(dtype="float64")(X1.astype("float64"))
    out = L.Maximum()([x64, -X2])
    assert backend.get_keras_mask(out) is None  # one input has no mask: neither has the output (Keras's rule)
    np.testing.assert_allclose(out, np.maximum(np.where([[[0], [1], [0], [1]]], X1, -X2), -X2))
    # As Keras, a layer that supports masking passes the mask on; one that does not drops it, with a warning.
    np.testing.assert_array_equal(backend.get_keras_mask(L.Dense(3)(x)), [[False, True, False, True]])
    with pytest.warns(UserWarning, match="does not support masking"):
        assert backend.get_keras_mask(L.Flatten()(x)) is None


def test_masks_ride_on_tape_tensors():
    x = lamina.Variable(NEG1)
    with lamina.GradientTape() as tape:
        y = L.Masking()(x)
        z = L.Maximum()([y, -X2])
        loss = lamina.ops.sum(z)
    assert isinstance(y, lamina.Tensor) and isinstance(z, lamina.Tensor)
    np.testing.assert_array_equal(backend.get_keras_mask(y), [[False, True, False, True]])
    np.testing.assert_array_equal(unwrap(z), np.maximum(np.where([[[0], [1], [0], [1]]], NEG1, -X2), -X2))
    g = np.asarray(tape.gradient(loss, x))
    assert np.all(g[0, [0, 2]] == 0)


@pytest.mark.parametrize("name", ["Maximum", "Minimum", "Multiply", "Concatenate"])
def test_a_model_runs_masks_the_same_in_predict_and_under_a_tape(name):
    a, b = L.Input((4, 2)), L.Input((4, 2))
    out = getattr(L, name)()([L.Masking()(a), L.Masking()(b)])
    model = lamina.Model([a, b], L.Dense(2)(out))
    xs = [NEG1, -X2] if name == "Maximum" else [X1, X2]
    plain = model.predict(xs, verbose=0)
    with lamina.GradientTape():
        taped = unwrap(model([lamina.Variable(v) for v in xs]))
    np.testing.assert_allclose(plain, taped, rtol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["Add", "Subtract", "Average", "Multiply", "Maximum", "Minimum"])
@pytest.mark.parametrize("both", [False, True])
def test_masked_merges_match_keras(keras, name, both):
    a, b = (NEG1, -X2) if name == "Maximum" else (X1, X2)
    from keras.src import backend as kb  # lazy: Keras keeps get_keras_mask out of its public backend

    def run(mod, get_mask):
        m = mod.layers.Masking()
        x1 = m(a)
        x2 = m(b) if both else b
        out = getattr(mod.layers, name)()([x1, x2])
        mask = get_mask(out)
        return _np(keras, out), None if mask is None else _np(keras, mask)

    theirs = run(keras, kb.get_keras_mask)
    ours = run(lamina, backend.get_keras_mask)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=RTOL, atol=ATOL)
    if theirs[1] is None:
        assert ours[1] is None
    else:
        np.testing.assert_array_equal(ours[1], theirs[1])


@pytest.mark.oracle
@pytest.mark.parametrize("axis", [1, 2])
def test_masked_concatenate_matches_keras(keras, axis):
    def run(mod, get_mask):
        out = mod.layers.Concatenate(axis=axis)([mod.layers.Masking()(X1), X2])
        return _np(keras, out), _np(keras, get_mask(out))

    from keras.src import backend as kb  # lazy: Keras keeps get_keras_mask out of its public backend

    (ko, km), (lo, lm) = run(keras, kb.get_keras_mask), run(lamina, backend.get_keras_mask)
    np.testing.assert_array_equal(lo, ko)
    np.testing.assert_array_equal(lm, km)


@pytest.mark.parametrize("cls", [L.Maximum, L.Minimum, L.Multiply])
def test_masked_merge_gradients(cls):
    a = random_inputs((2, 4, 3), seed=7).astype("float64")
    b = random_inputs((2, 4, 3), seed=8).astype("float64")

    def f(x, y):  # padded steps: 4 in x only, 0 in y only, 5 in both
        m = L.Masking(dtype="float64")
        return cls(dtype="float64")([m(_padded(x, 0, 2)), m(_padded(y, 1, 1))])

    check_gradients(f, a, b)


# ----------------------------------------------------------------------------- compute_mask on merges


MERGES = [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum, L.Concatenate]


@pytest.mark.oracle
@pytest.mark.parametrize("cls", MERGES)
def test_merge_compute_mask_matches_keras(keras, cls):
    rng = np.random.default_rng(3)
    xs = random_inputs([(2, 4, 5), (2, 4, 5)], seed=3)
    m1, m2 = rng.random((2, 4)) > 0.5, rng.random((2, 4)) > 0.5
    ours, theirs = cls(), getattr(keras.layers, cls.__name__)()
    for masks in ([m1, m2], [m1, None], [None, None]):
        want = theirs.compute_mask(xs, masks)
        got = ours.compute_mask(xs, masks)
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, _np(keras, want))
    assert ours.compute_mask(xs, None) is None
    a, b = L.Input((4, 5)), L.Input((4, 5))
    assert ours.compute_mask([a, b], [None, None]) is None
    got = ours.compute_mask([a, b], [lamina.Variable(xs[0]), lamina.Variable(xs[1])])
    assert np.all(np.asarray(got))


@pytest.mark.parametrize("cls", MERGES)
def test_merge_compute_mask_errors(cls):
    layer = cls()
    a, b = L.Input((4, 5), batch_size=2), L.Input((4, 5), batch_size=2)
    x = np.ones((2, 4, 5), "float32")
    with pytest.raises(ValueError, match=r"`mask` should be a list\..*Received: mask=a ndarray of shape \(2, 4, 5\)"):
        layer.compute_mask([a, b], x)
    with pytest.raises(ValueError, match=r"`inputs` should be a list\..*Received: inputs=a KerasTensor"):
        layer.compute_mask(a, [None, None])
    with pytest.raises(ValueError, match=r" should have the same length\. Received: inputs of length 2, "
                                         r"and mask of length 1"):
        layer.compute_mask([a, b], [None])


def test_dot_has_no_output_mask():
    x = L.Masking()(X1)
    out = L.Dot(axes=-1)([x, L.Masking()(X2)])
    assert backend.get_keras_mask(out) is None
    assert L.Dot(axes=1).compute_mask([X1, X2], [np.ones((1, 4), bool)] * 2) is None


# ----------------------------------------------------------------------------- Maximum, Minimum, Dot


@pytest.mark.oracle
@pytest.mark.parametrize("cls", [L.Maximum, L.Minimum])
@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 4, 3), (2, 3)], [(2, 4, 3), (2, 1, 3)],
                                    [(3, 4)] * 3])
def test_maximum_minimum_match_keras(keras, cls, shapes):
    theirs, ours = getattr(keras.layers, cls.__name__)(), cls()
    xs = random_inputs(shapes, seed=5)
    proj = random_inputs(tuple(ours.compute_output_shape([tuple(s) for s in shapes])), seed=6)
    ky, kdx, _ = keras_forward_and_grads(theirs, xs, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, xs, proj)
    np.testing.assert_allclose(ly, ky, rtol=RTOL, atol=ATOL)
    for a, b in zip(ldx, kdx, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    sym = [(None,) + tuple(s)[1:] for s in shapes]
    assert tuple(ours.compute_output_shape(sym)) == tuple(theirs.compute_output_shape(sym))
    fn = {L.Maximum: L.maximum, L.Minimum: L.minimum}[cls]
    np.testing.assert_allclose(fn(xs), ky, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls", [L.Maximum, L.Minimum])
def test_maximum_minimum_gradients(cls):
    xs = random_inputs([(2, 4, 3), (2, 3), (2, 1, 3)], seed=9)
    check_gradients(lambda a, b, c: cls(dtype="float64")([a, b, c]), *xs, empty_batch=True)


DOT_CASES = [
    (-1, [(3, 4), (3, 4)]),
    (1, [(3, 4), (3, 4)]),
    (-1, [(2, 4, 5), (2, 4, 5)]),
    ((1, 2), [(2, 4, 5), (2, 3, 4)]),
    ((2, 1), [(2, 4, 5), (2, 5, 3)]),
    ((1, 1), [(2, 4), (2, 4, 3)]),
    ((2, 1), [(2, 3, 4), (2, 4)]),
    ((-2, -1), [(1, 3, 2), (1, 1, 2, 3)]),
    ((3, 1), [(2, 2, 3, 4), (2, 4, 2, 5)]),
]


@pytest.mark.oracle
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("axes,shapes", DOT_CASES)
def test_dot_matches_keras(keras, axes, shapes, normalize):
    theirs, ours = keras.layers.Dot(axes=axes, normalize=normalize), L.Dot(axes=axes, normalize=normalize)
    xs = random_inputs(shapes, seed=11)
    out_shape = ours.compute_output_shape([tuple(s) for s in shapes])
    proj = random_inputs(tuple(out_shape), seed=12)
    ky, kdx, _ = keras_forward_and_grads(theirs, xs, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, xs, proj)
    assert ly.shape == ky.shape == tuple(out_shape)
    np.testing.assert_allclose(ly, ky, rtol=1e-5, atol=1e-5)
    for a, b in zip(ldx, kdx, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    sym = [(None,) + tuple(s)[1:] for s in shapes]
    assert tuple(ours.compute_output_shape(sym)) == tuple(theirs.compute_output_shape(sym))
    a, b = L.Input(shapes[0][1:]), L.Input(shapes[1][1:])
    assert L.Dot(axes=axes)([a, b]).shape == tuple(theirs.compute_output_shape(sym))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("axes,shapes", DOT_CASES[2:6])
def test_dot_gradients(axes, shapes, normalize):
    xs = random_inputs(shapes, seed=13)
    check_gradients(lambda a, b: L.Dot(axes=axes, normalize=normalize, dtype="float64")([a, b]), *xs,
                    empty_batch=True)


def test_l2_normalize_keeps_a_zero_vector_zero_with_a_finite_gradient():
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x, 1), [[0, 0, 0], [0.6, 0.8, 0]])
    check_gradients(lambda a: l2_normalize(a, 1), np.array([[0.0, 0.0], [3.0, -4.0]]), h=1e-9)
    check_gradients(lambda a: l2_normalize(a, 0), random_inputs((4, 3), seed=2))


def test_dot_functional_form_and_config():
    xs = random_inputs([(2, 4), (2, 4)], seed=1)
    np.testing.assert_allclose(L.dot(xs, axes=1), np.sum(xs[0] * xs[1], axis=1, keepdims=True), rtol=1e-6)
    layer = L.Dot(axes=(1, 2), normalize=True, name="d")
    again = L.Dot.from_config(layer.get_config())
    assert (again.axes, again.normalize, again.name) == ((1, 2), True, "d")


@pytest.mark.oracle
@pytest.mark.parametrize("cls,kwargs", [(L.Maximum, {}), (L.Minimum, {}), (L.Dot, {"axes": (1, 2)}),
                                        (L.Dot, {"axes": -1, "normalize": True}), (L.Masking, {"mask_value": 2.0})])
def test_configs_cross_with_keras(keras, cls, kwargs):
    ours, theirs = cls(**kwargs), getattr(keras.layers, cls.__name__)(**kwargs)
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    for key in kwargs:
        assert lcfg[key] == kcfg[key]
    assert cls.from_config(kcfg).get_config() == {**lcfg, "name": kcfg["name"]}
    type(theirs).from_config(lcfg)


@pytest.mark.parametrize("axes,exc,message", [
    ("x", TypeError, r"Invalid type for argument `axes`: it should be a list or an int\. Received: axes=x"),
    ((1, 2, 3), ValueError, r"it should contain two elements\. Received: axes=\(1, 2, 3\)"),
    ((1, "a"), ValueError, r"list elements should be integers\. Received: axes=\(1, 'a'\)"),
])
def test_dot_axes_errors(axes, exc, message):
    with pytest.raises(exc, match=message):
        L.Dot(axes=axes)


def test_dot_shape_errors():
    xs = random_inputs([(2, 4, 5), (2, 4, 5)])
    with pytest.raises(ValueError, match=r"Incompatible input shapes: axis values 4 \(at axis 1\) != 5 "
                                         r"\(at axis 2\)\. Full input shapes: \(2, 4, 5\), \(2, 4, 5\)"):
        L.Dot(axes=(1, 2))(xs)
    with pytest.raises(ValueError, match=r"`Dot` layer should be called on a list of 2 inputs"):
        L.Dot(axes=1)(xs + xs[:1])
    with pytest.raises(ValueError, match=r"Dot layer 'd0'.*axis 0, the batch axis, cannot be one.*axes=0"):
        L.Dot(axes=0, name="d0")(xs)
    with pytest.raises(ValueError, match=r"Dot layer .*axes=\(1, 5\)"):
        L.Dot(axes=(1, 5))(xs)
    layer = L.Dot(axes=-1)
    layer(xs)
    with pytest.raises(ValueError, match=r"different batch sizes\. Received: input shapes \(2, 4, 5\) and "
                                         r"\(3, 4, 5\)"):
        layer([xs[0], np.ones((3, 4, 5), "float32")])


# ----------------------------------------------------------------------------- Wrapper


class Twice(L.Wrapper):
    """Applies the wrapped layer, then doubles its output."""

    def call(self, inputs):
        return self.layer(inputs) * 2.0


def test_wrapper_tracks_builds_and_serializes_its_layer():
    inner = L.Dense(3, name="inner")
    w = Twice(inner, name="twice")
    x = random_inputs((2, 4), seed=1)
    np.testing.assert_allclose(w(x), 2.0 * inner(x), rtol=1e-6)
    assert w.built and inner.built
    assert len(w.trainable_weights) == 2 and w.weights[0] is inner.kernel
    cfg = w.get_config()
    assert cfg["layer"]["class_name"] == "Dense" and cfg["layer"]["config"]["units"] == 3
    again = Twice.from_config(cfg)
    assert isinstance(again.layer, L.Dense) and again.layer.units == 3 and again.name == "twice"
    again.set_weights(w.get_weights())
    np.testing.assert_allclose(again(x), w(x), rtol=1e-6)
    frozen = Twice(L.Dense(2))
    frozen.build((None, 4))
    assert frozen.layer.built and frozen.layer.kernel.shape == (4, 2)


def test_wrapper_needs_a_layer():
    with pytest.raises(ValueError, match=r"Layer .* supplied to Wrapper isn't a supported layer type\. Please "
                                         r"ensure wrapped layer is a valid Keras layer\. Received: layer of type str"):
        L.Wrapper("not a layer")


@pytest.mark.oracle
def test_wrapper_config_matches_keras(keras):
    theirs = keras.layers.Wrapper(keras.layers.Dense(2))
    ours = L.Wrapper(L.Dense(2))
    assert set(ours.get_config()) == set(theirs.get_config())
    assert set(ours.get_config()["layer"]) >= {"module", "class_name", "config", "registered_name"}
    assert L.Wrapper.from_config(theirs.get_config()).layer.units == 2


# ----------------------------------------------------------------------------- built at construction

STATELESS = [
    (L.Activation, {"activation": "relu"}), (L.ReLU, {}), (L.LeakyReLU, {}), (L.ELU, {}), (L.Softmax, {}),
    (L.Dropout, {"rate": 0.5}), (L.Masking, {}), (L.Reshape, {"target_shape": (2, 2)}), (L.Flatten, {}),
    (L.PReLU, {}), (L.Dense, {"units": 2}), (L.Add, {}), (L.Concatenate, {}), (L.Maximum, {}),
    (L.Dot, {"axes": 1}), (L.BatchNormalization, {}), (L.LayerNormalization, {}), (L.Identity, {}),
]


@pytest.mark.oracle
@pytest.mark.parametrize("cls,kwargs", STATELESS, ids=[c.__name__ for c, _ in STATELESS])
def test_built_at_construction_as_in_keras(keras, cls, kwargs):
    assert cls(**kwargs).built == getattr(keras.layers, cls.__name__)(**kwargs).built


@pytest.mark.parametrize("cls,kwargs", [(L.ReLU, {}), (L.Dropout, {"rate": 0.5}), (L.Masking, {})])
def test_a_subclass_with_its_own_build_is_not_built_early(cls, kwargs):
    calls = []

    class Custom(cls):
        def build(self, input_shape):
            calls.append(input_shape)

    layer = Custom(**kwargs)
    assert cls(**kwargs).built and not layer.built
    layer(np.ones((2, 3, 4), "float32"))
    assert calls == [(2, 3, 4)] and layer.built


def test_identity_returns_its_input_and_keeps_its_mask():
    x = L.Masking()(X1)
    layer = L.Identity()
    assert layer(x) is x and layer([x, X2])[1] is X2
    assert layer.supports_masking and layer.compute_output_shape((None, 4, 2)) == (None, 4, 2)
    assert L.Identity.from_config(layer.get_config()).name == layer.name


def test_a_reshape_built_at_construction_still_checks_sizes():
    with pytest.raises(ValueError, match=r"Reshape layer .*total size must be unchanged"):
        L.Reshape((5,))(np.ones((2, 4), "float32"))


# ----------------------------------------------------------------------------- .keras files both ways


def _model(K):
    a, b = K.Input((4, 3), name="a"), K.Input((4, 3), name="b")
    ma, mb = K.layers.Masking(mask_value=0.0)(a), K.layers.Masking(mask_value=0.0)(b)
    mx = K.layers.Maximum()([ma, mb])
    mn = K.layers.Minimum()([ma, mb])
    d = K.layers.Dot(axes=(1, 1), normalize=True)([mx, mn])
    out = K.layers.Dense(2, name="out")(K.layers.Flatten()(d))
    return K.Model([a, b], out)


def _fdata():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4, 3)).astype("float32")
    b = rng.normal(size=(6, 4, 3)).astype("float32")
    a[:, 1] = 0.0
    b[:, 2] = 0.0
    b[:3, 1] = 0.0  # half the samples have step 1 masked in both inputs
    return [a, b]


@pytest.mark.oracle
def test_lamina_file_loads_in_keras(keras, tmp_path):
    lm = _model(lamina)
    xs = _fdata()
    lm.save(tmp_path / "l.keras")
    km = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(_np(keras, km(xs)), lm.predict(xs, verbose=0), rtol=1e-4, atol=1e-5)
    assert [type(la).__name__ for la in km.layers] == [type(la).__name__ for la in lm.layers]


@pytest.mark.oracle
def test_keras_file_loads_in_lamina(keras, tmp_path):
    km = _model(keras)
    xs = _fdata()
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(lm.predict(xs, verbose=0), _np(keras, km(xs)), rtol=1e-4, atol=1e-5)
    masking = next(la for la in lm.layers if type(la).__name__ == "Masking")
    assert masking.mask_value == 0.0


# ----------------------------------------------------------------------------- Keras's error wording

# The patterns of Keras's own tests (assertRaisesRegex), unchanged: a "." there matches any character.
KERAS_ERRORS = [
    ("ReLU", {"max_value": -10}, r"max_value of a ReLU layer cannot be a negative value"),
    ("ReLU", {"negative_slope": None}, r"negative_slope of a ReLU layer cannot be None or a negative value"),
    ("ReLU", {"threshold": -1}, r"threshold of a ReLU layer cannot be None or a negative value"),
    ("LeakyReLU", {"negative_slope": None}, r"The negative_slope value of a Leaky ReLU layer cannot be None"),
    ("Dropout", {"rate": 1.5}, r"Invalid value received for argument `rate`. Expected a float value between 0 and 1."),
    ("Dropout", {"rate": 0.5, "noise_shape": "x"},
     r"Invalid value received for argument `noise_shape`. Expected a tuple or list of integers."),
    ("Dropout", {"rate": 0.5, "noise_shape": (2, 1.5)},
     r"Invalid value received for argument `noise_shape`. Expected all elements to be integers or None."),
    ("Dropout", {"rate": 0.5, "noise_shape": (2, 0)},
     r"Invalid value received for argument `noise_shape`. Expected all dimensions to be positive integers or None."),
    ("Reshape", {"target_shape": (-2, 5)}, r"non-negative integer.*-1.*target_shape=\(-2, 5\)"),
    ("Reshape", {"target_shape": (-1, -1, 5)}, r"at most one unknown dimension.*target_shape=\(-1, -1, 5\)"),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,pattern", KERAS_ERRORS)
def test_argument_errors_use_keras_wording(keras, name, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=pattern) as info:
        getattr(L, name)(**kwargs)
    assert "Received: " in str(info.value) and name.replace("ReLU", "") in str(info.value).replace(" ", "")
