"""CompileLoss and CompileMetrics: what compile() makes of loss, loss_weights, metrics, weighted_metrics."""

import numpy as np
import pytest

import lamina
from lamina.models.compile_utils import CompileLoss, CompileMetrics

RNG = np.random.default_rng(0)
N = 12
Y_CLS = RNG.integers(0, 3, N)
P_CLS = RNG.dirichlet(np.ones(3), N).astype("float32")
Y_REG = RNG.normal(size=(N, 1)).astype("float32")
P_REG = RNG.normal(size=(N, 1)).astype("float32")
SW = RNG.uniform(0.2, 2.0, N).astype("float32")


def sce(y, p):
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))


def two_outputs(lib, seed=0):
    lib.utils.set_random_seed(seed)
    a = lib.Input((5,), name="a")
    h = lib.layers.Dense(8, activation="tanh")(a)
    return lib.Model(a, [lib.layers.Dense(3, activation="softmax", name="cls")(h), lib.layers.Dense(1, name="reg")(h)])


# ----------------------------------------------------------------------------- CompileLoss


def test_compile_loss_is_the_weighted_sum_of_the_output_losses():
    compile_loss = CompileLoss(["sparse_categorical_crossentropy", "mse"], [0.3, 2.0], ["cls", "reg"])
    total, per_output = compile_loss([Y_CLS, Y_REG], [P_CLS, P_REG], SW)
    # Keras's default reduction: sum over the batch of w * loss, divided by the batch size
    want_cls = np.mean(SW * sce(Y_CLS, P_CLS))
    want_reg = np.mean(SW * ((Y_REG - P_REG) ** 2)[:, 0])
    np.testing.assert_allclose(float(lamina.ops.convert_to_numpy(total)), 0.3 * want_cls + 2.0 * want_reg, rtol=1e-5)
    np.testing.assert_allclose([float(np.asarray(lamina.ops.convert_to_numpy(v))) for v in per_output],
                               [want_cls, want_reg], rtol=1e-5)
    # Dicts by output name, in any key order, give the same numbers; penalties are added on top.
    by_name = CompileLoss({"reg": "mse", "cls": "sparse_categorical_crossentropy"}, {"reg": 2.0, "cls": 0.3},
                          ["cls", "reg"])
    again, _ = by_name({"reg": Y_REG, "cls": Y_CLS}, {"reg": P_REG, "cls": P_CLS}, SW, penalties=[1.5])
    np.testing.assert_allclose(float(lamina.ops.convert_to_numpy(again)), 0.3 * want_cls + 2.0 * want_reg + 1.5,
                               rtol=1e-5)


def test_an_output_without_a_loss_adds_nothing():
    compile_loss = CompileLoss({"cls": "sparse_categorical_crossentropy"}, {"cls": 4.0}, ["cls", "reg"])
    assert [o.loss is None for o in compile_loss.output_losses] == [False, True]
    assert [o.weight for o in compile_loss.output_losses] == [4.0, 1.0]
    total, per_output = compile_loss([Y_CLS, Y_REG], [P_CLS, P_REG])
    assert per_output[1] is None
    np.testing.assert_allclose(float(lamina.ops.convert_to_numpy(total)), 4.0 * np.mean(sce(Y_CLS, P_CLS)), rtol=1e-5)
    assert CompileLoss(None, None, ["cls"])(Y_CLS, P_CLS) == (None, [None])
    assert compile_loss.metrics == []  # per-output trackers only when several outputs have a loss (Keras)
    assert [m.name for m in CompileLoss(["mse", "mse"], None, ["cls", "reg"]).metrics] == ["cls_loss", "reg_loss"]
    assert CompileLoss("mse", None, ["only"]).metrics == []  # one output: the total is its loss


def test_compile_loss_arguments_are_checked_against_the_outputs():
    # Unknown keys are kept as the error fit/evaluate raise (Keras's compile accepts them).
    error = CompileLoss({"clss": "mse"}, None, ["cls", "reg"], "m").structure_error
    with pytest.raises(ValueError, match=r"has keys \['clss'\] that are not outputs of model 'm'\. "
                                         r"Expected keys among: \['cls', 'reg'\]"):
        raise error
    with pytest.raises(ValueError, match=r"model 'm' has 2 outputs\. Received: 3 losses"):
        CompileLoss(["mse"] * 3, None, ["cls", "reg"], "m")


def test_the_logits_twin_is_adopted_only_for_the_activation_it_undoes():
    compile_loss = CompileLoss("sparse_categorical_crossentropy", None, ["out"])
    assert not compile_loss.adopt_logits(lamina.activations.sigmoid)
    assert compile_loss.output_losses[0].logits_loss is None
    assert compile_loss.adopt_logits(lamina.activations.softmax)
    assert compile_loss.output_losses[0].logits_loss._fn_kwargs["from_logits"] is True


# ----------------------------------------------------------------------------- CompileMetrics


def test_weighted_metrics_read_the_sample_weights_and_accumulate():
    compile_loss = CompileLoss(["sparse_categorical_crossentropy", "mse"], None, ["cls", "reg"])
    compile_metrics = CompileMetrics({"cls": "accuracy", "reg": ["mae"]}, {"reg": ["mae"]}, compile_loss)
    assert not compile_metrics.built
    half = slice(0, N // 2), slice(N // 2, N)
    for part in half:
        compile_metrics.update_state([Y_CLS[part], Y_REG[part]], [P_CLS[part], P_REG[part]], SW[part])
    assert [m._display_name for m in compile_metrics.metrics] == ["cls_accuracy", "reg_mae", "reg_weighted_mae"]
    assert type(compile_metrics.output_metrics[0][0]).__name__ == "SparseCategoricalAccuracy"
    err = np.abs(Y_REG - P_REG)[:, 0]
    result = {k: float(v) for k, v in compile_metrics.result().items()}
    np.testing.assert_allclose(result["cls_accuracy"], np.mean(P_CLS.argmax(1) == Y_CLS), rtol=1e-6)
    np.testing.assert_allclose(result["reg_mae"], err.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["reg_weighted_mae"], np.sum(SW * err) / np.sum(SW), rtol=1e-5)
    compile_metrics.reset_state()
    assert all(float(v) == 0.0 for v in compile_metrics.result().values())


def test_nothing_to_build_without_metrics():
    compile_metrics = CompileMetrics(None, [], CompileLoss("mse", None, ["out"]))
    compile_metrics.update_state(Y_REG, P_REG)
    assert not compile_metrics.built and compile_metrics.metrics == [] and compile_metrics.result() == {}


# ----------------------------------------------------------------------------- through the model


def test_model_metrics_order_and_the_output_metrics_alias():
    model = two_outputs(lamina)
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]],
                  weighted_metrics=[[], ["mse"]])
    x = RNG.normal(size=(N, 5)).astype("float32")
    model.fit(x, [Y_CLS, Y_REG], epochs=1, verbose=0)
    assert model.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae", "reg_mse"]
    assert model.metrics[0] is model._loss_tracker and model._output_losses is model._compile_loss.output_losses
    assert model._output_metrics is model._compile_metrics.output_metrics
    # A strategy hands a rank that saw no data the metrics the others built: assigning replaces them.
    fresh = [[lamina.metrics.SparseCategoricalAccuracy()], []]
    fresh[0][0]._display_name, fresh[0][0]._weighted = "cls_accuracy", False
    model._output_metrics = fresh
    assert model.metrics[3] is fresh[0][0] and len(model.metrics) == 4
    model.test_on_batch(x, [Y_CLS, Y_REG])
    assert float(fresh[0][0].count.value) == N


@pytest.mark.oracle
def test_multi_output_losses_weights_and_metrics_match_keras(keras):
    km, lm = two_outputs(keras), two_outputs(lamina)
    lm.set_weights(km.get_weights())
    x = RNG.normal(size=(N, 5)).astype("float32")
    for model, lib in ((km, keras), (lm, lamina)):
        # repeated names are numbered and a weighted one that is taken gets "weighted_", as in Keras
        model.compile(lib.optimizers.SGD(0.1), loss=["sparse_categorical_crossentropy", "mse"],
                      loss_weights=[0.3, 2.0], metrics=[["accuracy", "accuracy"], ["mae"]],
                      weighted_metrics=[["accuracy"], ["mae", "mse"]])
    k_hist = km.fit(x, [Y_CLS, Y_REG], sample_weight=SW, batch_size=5, shuffle=False, epochs=2, verbose=0).history
    l_hist = lm.fit(x, [Y_CLS, Y_REG], sample_weight=SW, batch_size=5, shuffle=False, epochs=2, verbose=0).history
    assert set(l_hist) == set(k_hist)
    for key in k_hist:
        np.testing.assert_allclose(l_hist[key], k_hist[key], rtol=1e-4, err_msg=key)
    k_logs = km.evaluate(x, [Y_CLS, Y_REG], sample_weight=SW, batch_size=5, verbose=0, return_dict=True)
    l_logs = lm.evaluate(x, [Y_CLS, Y_REG], sample_weight=SW, batch_size=5, verbose=0, return_dict=True)
    assert list(l_logs) == list(k_logs)
    np.testing.assert_allclose([l_logs[k] for k in k_logs], [k_logs[k] for k in k_logs], rtol=1e-5)


@pytest.mark.oracle
def test_one_output_with_the_same_metric_weighted_and_not_matches_keras(keras):
    x = RNG.normal(size=(N, 5)).astype("float32")
    logs = []
    weights = None
    for lib in (keras, lamina):
        lib.utils.set_random_seed(0)
        model = lib.Sequential([lib.Input((5,)), lib.layers.Dense(3, activation="softmax")])
        weights = weights or model.get_weights()
        model.set_weights(weights)
        model.compile("sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      weighted_metrics=["accuracy"])
        logs.append(model.evaluate(x, Y_CLS, sample_weight=SW, verbose=0, return_dict=True))
    assert list(logs[1]) == list(logs[0]) == ["accuracy", "loss", "weighted_accuracy"]
    np.testing.assert_allclose(list(logs[1].values()), list(logs[0].values()), rtol=1e-5)
    assert logs[1]["accuracy"] != logs[1]["weighted_accuracy"]


def test_compiled_losses_and_metrics_survive_save_and_load(tmp_path):
    model = two_outputs(lamina)
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights={"reg": 0.5},
                  metrics={"cls": ["accuracy"]}, weighted_metrics={"reg": ["mae"]})
    x = RNG.normal(size=(N, 5)).astype("float32")
    model.fit(x, {"cls": Y_CLS, "reg": Y_REG}, sample_weight=SW, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    want = model.evaluate(x, {"cls": Y_CLS, "reg": Y_REG}, sample_weight=SW, verbose=0, return_dict=True)
    got = loaded.evaluate(x, {"cls": Y_CLS, "reg": Y_REG}, sample_weight=SW, verbose=0, return_dict=True)
    assert got == want and set(got) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"}
    assert [o.weight for o in loaded._output_losses] == [1.0, 0.5]
