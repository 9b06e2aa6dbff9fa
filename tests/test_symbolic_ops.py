"""Arithmetic, comparisons, indexing and ``ops.<fn>`` on symbolic KerasTensors (issue 13).

Each becomes an op node of the Functional graph (``lamina.layers.op_layer.OpLayer``), as Keras 3 records
an ``Operation``. The oracle tests build one graph with Keras and with lamina from the same code and
compare shapes, dtypes and predictions, and move ``.keras`` files with op nodes both ways.
"""

import json
import re

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.layers.op_layer import OpLayer
from lamina.models import compiled_step

RTOL, ATOL = 1e-5, 1e-6


def op_graph(K):
    """Residuals, constants on either side, comparisons, slicing and ops functions, with K = keras or lamina."""
    L, kops = K.layers, K.ops
    a = K.Input((4,), name="a")
    b = K.Input((4,), name="b")
    h = L.Dense(4, activation="tanh", name="d1")(a)
    r = h + b  # residual
    r = 2 - r * 0.5
    r = -r / (kops.abs(b) + 1.0)
    r = r ** 2 - kops.relu(h) // 0.3 + h % 0.7
    w = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3)
    m = r @ w
    mask = r > 0
    gated = kops.where(mask, r, 0.1 * r)
    cat = kops.concatenate([gated, a, m[:, :2]], axis=-1)
    mean = kops.mean(cat, axis=-1, keepdims=True)
    first = cat[:, 0]
    out1 = L.Dense(3, name="d2")(kops.tanh(cat - mean))
    out2 = kops.expand_dims(first, -1) * kops.cast(r[:, 1:2] <= 0.5, "float32")
    log_p = m - kops.logsumexp(m, axis=-1, keepdims=True)
    out3 = kops.sum(kops.exp(log_p) * kops.exp(kops.clip(r[..., :3], -1.0, 1.0)), axis=1)
    return K.Model([a, b], [out1, out2, out3])


def _data(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 4)).astype("float32")]


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


def test_operators_on_keras_tensors_make_op_nodes():
    x = lamina.Input((3, 4))
    y = lamina.Input((3, 4))
    cases = {
        "add": x + y, "add_r": 1 + x, "subtract": 2 - x, "multiply": x * 2, "true_divide": x / y,
        "negative": -x, "greater": x > 0, "less_equal": x <= y, "not_equal": x != 0, "matmul": x @ np.ones((4, 2)),
        "get_item": x[:, 0], "get_item_ellipsis": x[..., None, 1:3], "power": x ** 2, "absolute": abs(x),
        "logical_and": (x > 0) & (y > 0), "logical_not": ~(x > 0),
    }
    shapes = {k: (t.shape, t.dtype) for k, t in cases.items()}
    assert shapes["add"] == ((None, 3, 4), "float32")
    assert shapes["greater"] == ((None, 3, 4), "bool")
    assert shapes["matmul"][0] == (None, 3, 2)
    assert shapes["get_item"][0] == (None, 4)  # [:, 0] drops axis 1, keeps the unknown batch
    assert shapes["get_item_ellipsis"][0] == (None, 3, 1, 2)
    assert shapes["logical_not"][1] == "bool"
    for name, t in cases.items():
        layer = t._keras_history[0]
        assert isinstance(layer, OpLayer), name
        assert layer.op == name.split("_r")[0].replace("_ellipsis", "")
    # Equality stays identity (KerasTensors are dict keys), as in Keras.
    assert (x == x) is True and {x: 1}[x] == 1


def test_ops_functions_on_keras_tensors_and_their_constructor_args():
    x = lamina.Input((5, 6))
    m = ops.mean(x, axis=-1)
    assert m.shape == (None, 5)
    layer = m._keras_history[0]
    assert layer.op_kwargs == {"axis": -1, "keepdims": False}  # Keras's Mean(axis, keepdims) config
    assert layer.get_config() == {"name": layer.name, "axis": -1, "keepdims": False}
    parts = ops.split(x, 2, axis=-1)  # several outputs
    assert [p.shape for p in parts] == [(None, 5, 3), (None, 5, 3)]
    r = ops.reshape(x, (-1, 30))
    assert r.shape == (None, 30)
    c = ops.concatenate([x, x], axis=0)  # along the unknown batch axis: still unknown
    assert c.shape == (None, 5, 6)
    assert ops.argmax(x, axis=1).dtype == "int32"


def test_plain_arrays_still_take_the_plain_ops():
    a = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(ops.add(a, 1), a + 1)
    np.testing.assert_array_equal(ops.concatenate([a, a], axis=0), np.concatenate([a, a]))
    assert not isinstance(ops.mean(a), lamina.layers.KerasTensor)


def test_the_same_graph_predicts_like_keras(keras):
    keras.utils.set_random_seed(3)
    km = op_graph(keras)
    lm = op_graph(lamina)
    for kt, lt in zip(km.outputs, lm.outputs, strict=True):
        assert tuple(kt.shape) == lt.shape and kt.dtype == lt.dtype
    lm.set_weights([_np(keras, w) for w in km.weights])
    x = _data()
    for got, want in zip(lm.predict(x, verbose=0), km.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    k_ops = [type(op).__name__ for op in km.operations if not isinstance(op, keras.layers.Layer)]
    l_ops = [op.keras_class_name for op in lm.operations if isinstance(op, OpLayer)]
    assert sorted(l_ops) == sorted(k_ops)
    # ``layers`` leaves the op nodes out, as in Keras: the weights and their order are Keras's.
    assert [la.name for la in lm.layers] == [la.name for la in km.layers]


def test_keras_file_with_op_nodes_loads_in_lamina(keras, tmp_path):
    keras.utils.set_random_seed(4)
    km = op_graph(keras)
    path = tmp_path / "k.keras"
    km.save(path)
    lm = lamina.saving.load_model(path)
    x = _data(1)
    for got, want in zip(lm.predict(x, verbose=0), km.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_lamina_file_with_op_nodes_loads_in_keras(keras, tmp_path):
    lamina.utils.set_random_seed(5)
    lm = op_graph(lamina)
    path = tmp_path / "l.keras"
    lm.save(path)
    km = keras.saving.load_model(path)
    x = _data(2)
    for got, want in zip(km.predict(x, verbose=0), lm.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # and back again: a config lamina wrote, read by Keras, written by Keras, read by lamina
    again = lamina.Model.from_config(json.loads(json.dumps(km.get_config())))
    again.set_weights(lm.get_weights())
    for got, want in zip(again.predict(x, verbose=0), lm.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_activation_op_nodes_from_keras_load_and_save_back(keras, tmp_path):
    # lamina's ops.sigmoid IS activations.sigmoid (Dense fuses it by identity), so it makes no node on a
    # KerasTensor; Keras's Sigmoid/Softmax/... op nodes still load, run and save back.
    keras.utils.set_random_seed(6)
    i = keras.Input((5,))
    h = keras.layers.Dense(5)(i)
    out = keras.ops.softmax(h, axis=-1) + keras.ops.sigmoid(h) * keras.ops.leaky_relu(h, negative_slope=0.3)
    km = keras.Model(i, keras.ops.log_softmax(out))
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    x = np.random.default_rng(3).normal(size=(8, 5)).astype("float32")
    np.testing.assert_allclose(lm.predict(x, verbose=0), km.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    lm.save(tmp_path / "l.keras")
    back = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), km.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    assert {op.keras_class_name for op in lm.operations if isinstance(op, OpLayer)} == {
        "Softmax", "Sigmoid", "LeakyRelu", "Multiply", "Add", "LogSoftmax"}
    with pytest.raises(TypeError, match=r"the activations \(ops.sigmoid"):
        ops.sigmoid(lamina.Input((5,)))
    assert ops.sigmoid is lamina.activations.sigmoid


def test_config_round_trip_keeps_constants_and_slices():
    i = lamina.Input((4, 3))
    out = (i[:, 1:, ::2] * np.array([1.0, -2.0], dtype="float32"))[..., 0] + ops.max(i, axis=(1, 2))[:, None]
    out = out * ops.cast(ops.sum(i, axis=np.int64(1)) > 0, np.float32)  # NumPy scalars and dtypes in a config
    model = lamina.Model(i, out)
    cfg = json.loads(json.dumps(model.get_config()))
    entries = {}
    for e in cfg["layers"]:
        entries.setdefault(e["class_name"], e)  # the first of each class: GetItem [:, 1:, ::2], Multiply by an array
    assert entries["GetItem"]["module"] == "keras.src.ops.numpy"
    key = entries["GetItem"]["inbound_nodes"][0]["args"][1]
    assert key[1] == {"class_name": "__slice__", "config": {"start": 1, "stop": None, "step": None}}
    assert entries["Multiply"]["inbound_nodes"][0]["args"][1]["class_name"] == "__numpy__"
    assert entries["Max"]["config"]["axis"] == [1, 2]
    assert entries["Cast"]["config"]["dtype"] == "float32" and entries["Sum"]["config"]["axis"] == 1
    rebuilt = lamina.Model.from_config(cfg)
    x = np.random.default_rng(0).normal(size=(5, 4, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert rebuilt.output_shape == model.output_shape == (None, 3)


def residual_model():
    i = lamina.Input((6,))
    h = layers.Dense(6, activation="tanh")(i)
    h = h + i * 0.5  # residual with a constant
    h = ops.relu(h) - ops.mean(h, axis=-1, keepdims=True)
    h = ops.concatenate([h, h[:, :2] ** 2], axis=-1)
    return lamina.Model(i, layers.Dense(4, activation="softmax")(h / (1.0 + ops.abs(h))))


def _train(run_eagerly):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = rng.integers(0, 4, 96)
    lamina.utils.set_random_seed(5)
    model = residual_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=run_eagerly)
    lamina.utils.set_random_seed(9)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=True, verbose=0)
    return model, history.history


def test_op_nodes_train_with_the_compiled_step_as_on_the_tape():
    compiled, hist_c = _train(run_eagerly=False)
    assert isinstance(compiled._fast_step, compiled_step.CompiledStep)
    eager, hist_e = _train(run_eagerly=True)
    assert eager._fast_step is None
    for wa, wb in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    for key in hist_c:
        np.testing.assert_allclose(hist_c[key], hist_e[key], rtol=1e-6)
    first = residual_model()  # the untrained start differs: training moved the weights through the op nodes
    assert not np.allclose(first.get_weights()[0], compiled.get_weights()[0])


def test_unsupported_uses_of_keras_tensors_say_what_to_do():
    x = lamina.Input((3,))
    with pytest.raises(TypeError, match="boolean|bool"):
        bool(x > 0)
    with pytest.raises(TypeError, match="Iterating over a symbolic KerasTensor"):
        list(x)
    with pytest.raises(ValueError, match=r"ops.concatenate cannot be applied.*Received: arguments"):
        ops.concatenate([x, lamina.Input((3, 2))], axis=-1)
    with pytest.raises(ValueError, match=r"ops.matmul cannot be applied.*Received"):
        x @ np.ones((4, 2))
    with pytest.raises(TypeError, match=r"ops.reshape: its `newshape` argument must be a constant"):
        ops.reshape(x, newshape=lamina.Input((2,)))
    with pytest.raises(TypeError, match="symbolic KerasTensor has no value"):
        ops.nonzero(x)  # its output shape depends on values: no op node


def test_a_config_naming_an_op_lamina_lacks_is_refused():
    i = lamina.Input((3,), name="inp")
    cfg = json.loads(json.dumps(lamina.Model(i, -i).get_config()))
    neg = next(e for e in cfg["layers"] if e["class_name"] == "Negative")
    neg["class_name"] = "Einsum"
    with pytest.raises(ValueError, match=r"keras.src.ops.numpy.Einsum' has no lamina op.*Received"):
        lamina.Model.from_config(cfg)
    neg["class_name"] = "Negative"
    neg["config"]["axis"] = 1
    with pytest.raises(ValueError, match=r"ops.negative does not take \['axis'\]"):
        lamina.Model.from_config(cfg)


def test_each_input_is_converted_to_its_inputs_dtype():
    f16 = lamina.Input((2,), dtype="float16")
    i32 = lamina.Input((2,), dtype="int32")
    model = lamina.Model((f16, i32), (f16 + 2, i32 + 2))
    out_f, out_i = model((np.ones((2, 2)), np.ones((2, 2))))  # float64 data both
    assert out_f.dtype == np.float16 and out_i.dtype == np.int32
    np.testing.assert_array_equal(out_i, np.full((2, 2), 3))


def test_a_graph_with_op_nodes_called_on_new_symbolic_inputs():
    i1 = lamina.Input((2,), name="in1")
    i2 = lamina.Input((2,), name="in2")
    model = lamina.Model({"in1": i1, "in2": i2}, {"sum": i1 * 2 + i2, "first": i1[:, :1]})
    seq = lamina.Input((None, 2))
    out = model({"in1": lamina.Input((2,)), "in2": lamina.Input((2,))})
    assert out["sum"].shape == (None, 2) and out["first"].shape == (None, 1)
    inner = lamina.Model(seq, ops.mean(seq, axis=1) + seq[:, 0])
    assert inner(lamina.Input((None, 2))).shape == (None, 2)
    assert inner(lamina.Input((5, 2), batch_size=3)).shape == (3, 2)
    outer = lamina.Model(i1, model({"in1": i1, "in2": -i1})["sum"])
    np.testing.assert_allclose(outer.predict(np.ones((3, 2), "float32"), verbose=0), np.ones((3, 2)))


def test_summary_lists_op_nodes_as_keras_does():
    lines = []
    residual_model().summary(print_fn=lines.append)
    text = "\n".join(lines)
    for name, kind in (("add", "Add"), ("relu", "Relu"), ("get_item", "GetItem"), ("concatenate", "Concatenate")):
        assert re.search(rf"\b{name}(_\d+)? \({kind}\)", text), kind  # names count up across tests
    assert "OpLayer" not in text


def test_nested_dict_inputs_and_the_constructor_structures():
    i1, i2, i3 = lamina.Input((1,)), lamina.Input((2,)), lamina.Input((3,))
    outputs = {"1": i1 * 2, "others": {"2": ops.sum(i2, axis=-1, keepdims=True), "3": -i3}}
    model = lamina.Model({"1": i1, "others": {"2": i2, "3": i3}}, outputs)
    assert model.output is outputs and model.input["others"]["3"] is i3  # Keras: the constructor's structures
    out = model({"1": np.ones((2, 1)), "others": {"2": np.ones((2, 2)), "3": np.ones((2, 3))}})
    np.testing.assert_array_equal(out["others"]["2"], np.full((2, 1), 2.0))
    sym = model({"1": lamina.Input((1,), batch_size=2),
                 "others": {"2": lamina.Input((2,), batch_size=2), "3": lamina.Input((3,), batch_size=2)}})
    assert sym["others"]["3"].shape == (2, 3) and sym["1"].shape == (2, 1)
    with pytest.raises(ValueError, match=r"missing inputs \['3'\]"):
        model({"1": np.ones((2, 1)), "others": {"2": np.ones((2, 2))}})
