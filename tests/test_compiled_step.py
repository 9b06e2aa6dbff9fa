"""The compiled step (models/compiled_step.py) trains every model to the tape step's numbers.

Each case builds the same model twice from one seed, trains one with the default (compiled) step and
one with ``run_eagerly=True`` (the tape step) for 100 steps on the same batches and random stream,
and compares weights, optimizer state and the history to 1e-6 relative.
"""

import warnings

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.models import compiled_step

RNG = np.random.default_rng(11)
N, STEPS, BATCH = 400, 100, 16  # 25 batches an epoch, 4 epochs: 100 steps
X = RNG.normal(size=(N, 6)).astype("float32")
Y_INT = RNG.integers(0, 4, N)
Y_ONEHOT = np.eye(4, dtype="float32")[Y_INT]
Y_BIN = (Y_INT % 2).astype("float32")[:, None]
Y_REG = RNG.normal(size=(N, 3)).astype("float32")
SW = RNG.uniform(0.2, 2.0, size=N).astype("float32")


def seq(*stack):
    return lamina.Sequential([lamina.Input((6,)), *stack])


class Scale(layers.Layer):
    """A user's layer: a trainable per-feature scale, written with ops (a tape node in the plan)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):
        return ops.multiply(inputs, self.w) + 0.1


class Penalised(layers.Layer):
    """A user's layer adding a loss of its own in call (Keras's add_loss)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), initializer="glorot_uniform", name="w")

    def call(self, inputs):
        out = ops.matmul(inputs, self.w)
        self.add_loss(0.01 * ops.mean(ops.square(out)))
        return out


def two_branch():
    i = lamina.Input((6,))
    a = layers.Dense(8, activation="relu")(i)
    b = layers.Dense(5, activation="tanh")(i)
    return lamina.Model(i, layers.Dense(4, activation="softmax")(layers.Concatenate()([a, b])))


def shared_layer():
    i = lamina.Input((6,))
    shared = layers.Dense(6, activation="tanh")
    h = shared(shared(i))  # one layer, two calls: its gradients add up
    return lamina.Model(i, layers.Dense(4, activation="softmax")(layers.Add()([h, i])))


def nested():
    inner = lamina.Sequential([lamina.Input((6,)), layers.Dense(7, activation="relu"), layers.Dense(5)])
    i = lamina.Input((6,))
    return lamina.Model(i, layers.Dense(4, activation="softmax")(inner(i)))


def multi_output():
    i = lamina.Input((6,))
    h = layers.Dense(8, activation="relu")(i)
    cls = layers.Dense(4, activation="softmax", name="cls")(h)
    reg = layers.Dense(3, name="reg")(layers.Dropout(0.3)(h))
    return lamina.Model(i, {"cls": cls, "reg": reg})


def merges():
    i = lamina.Input((6,))
    a, b = layers.Dense(6, activation="relu")(i), layers.Dense(6, activation="sigmoid")(i)
    m = layers.Average()([layers.Multiply()([a, b]), layers.Subtract()([a, b])])
    r = layers.Flatten()(layers.Reshape((2, 3))(m))
    return lamina.Model(i, layers.Dense(4, activation="softmax")(layers.LeakyReLU()(r)))


MODELS = {
    "dense_chain": (lambda: seq(layers.Dense(8, activation="relu"), layers.Dense(5, activation="tanh"),
                                layers.Dense(4, activation="softmax")), "sparse_categorical_crossentropy", "int"),
    "circles_like": (lambda: seq(layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")),
                     "binary_crossentropy", "bin"),
    "categorical_smoothed": (lambda: seq(layers.Dense(8, activation="elu"), layers.Dense(4, activation="softmax")),
                             lamina.losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot"),
    "bn_dropout": (lambda: seq(layers.Dense(16), layers.BatchNormalization(), layers.Activation("relu"),
                               layers.Dropout(0.2), layers.Dense(8), layers.BatchNormalization(),
                               layers.Activation("relu"), layers.Dropout(0.2, seed=4),
                               layers.Dense(4, activation="softmax")), "sparse_categorical_crossentropy", "int"),
    "two_branch": (two_branch, "sparse_categorical_crossentropy", "int"),
    "shared_layer": (shared_layer, "categorical_crossentropy", "onehot"),
    "nested": (nested, "sparse_categorical_crossentropy", "int"),
    "merges": (merges, "sparse_categorical_crossentropy", "int"),
    "regularized": (lambda: seq(layers.Dense(8, activation="relu", kernel_regularizer="l2", bias_regularizer="l1",
                                             activity_regularizer=lamina.regularizers.L2(0.01)),
                                layers.Dense(4, activation="softmax", kernel_regularizer="l1_l2")),
                    "sparse_categorical_crossentropy", "int"),
    "constrained": (lambda: seq(layers.Dense(8, activation="relu", kernel_constraint="max_norm"),
                                layers.Dense(4, activation="softmax", bias_constraint="non_neg")),
                    "sparse_categorical_crossentropy", "int"),
    "custom_layers": (lambda: seq(Scale(), layers.Dense(8, activation="gelu"), Penalised(), layers.Softmax()),
                      "sparse_categorical_crossentropy", "int"),
    "mse_linear": (lambda: seq(layers.Dense(8, activation="tanh"), layers.LayerNormalization(), layers.PReLU(),
                               layers.Dense(3)), "mse", "reg"),
    # a float64 layer without weights between float32 ones: the next layer casts back, as __call__ does
    "mixed_dtypes": (lambda: seq(layers.Dense(8, activation="relu"), layers.Activation("tanh", dtype="float64"),
                                 layers.Dense(4, activation="softmax")), "sparse_categorical_crossentropy", "int"),
    "huber": (lambda: seq(layers.Dense(8, activation="sigmoid"), layers.Dense(3)), "huber", "reg"),
}

TARGETS = {"int": Y_INT, "onehot": Y_ONEHOT, "bin": Y_BIN, "reg": Y_REG}


def train(build, loss, y, *, run_eagerly, optimizer="adam", sample_weight=None, class_weight=None,
          metrics=("accuracy",), loss_weights=None):
    lamina.utils.set_random_seed(5)
    model = build()
    opt = lamina.optimizers.get(optimizer) if isinstance(optimizer, str) else optimizer()
    model.compile(optimizer=opt, loss=loss, metrics=list(metrics), loss_weights=loss_weights,
                  run_eagerly=run_eagerly)
    lamina.utils.set_random_seed(9)
    history = model.fit(X, y, batch_size=BATCH, epochs=STEPS * BATCH // N, shuffle=True, verbose=0,
                        sample_weight=sample_weight, class_weight=class_weight)
    return model, history.history


def assert_same_training(a, b):
    (model_a, hist_a), (model_b, hist_b) = a, b
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    for va, vb in zip(model_a.optimizer.variables, model_b.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=1e-6, atol=1e-7)
    assert hist_a.keys() == hist_b.keys()
    for key in hist_a:
        np.testing.assert_allclose(hist_a[key], hist_b[key], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiled_step_matches_the_tape_step(name):
    build, loss, kind = MODELS[name]
    compiled = train(build, loss, TARGETS[kind], run_eagerly=False)
    assert isinstance(compiled[0]._fast_step, compiled_step.CompiledStep)
    eager = train(build, loss, TARGETS[kind], run_eagerly=True)
    assert eager[0]._fast_step is None
    assert_same_training(compiled, eager)


OPTIMIZERS = ["sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "adamw", "lion",
              lambda: lamina.optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=0.5),
              lambda: lamina.optimizers.Adam(1e-2, global_clipnorm=0.3, weight_decay=0.01),
              lambda: lamina.optimizers.RMSprop(1e-2, clipvalue=0.05, momentum=0.5, centered=True)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o if isinstance(o, str) else None)
def test_every_optimizer_and_clipping(optimizer):
    build, loss, kind = MODELS["bn_dropout"]
    assert_same_training(train(build, loss, TARGETS[kind], run_eagerly=False, optimizer=optimizer),
                         train(build, loss, TARGETS[kind], run_eagerly=True, optimizer=optimizer))


@pytest.mark.parametrize("name", ["dense_chain", "circles_like", "mse_linear", "two_branch"])
def test_sample_and_class_weights(name):
    build, loss, kind = MODELS[name]
    y = TARGETS[kind]
    for weights in ({"sample_weight": SW}, {"class_weight": {0: 0.5, 1: 2.0, 2: 1.0, 3: 3.0}}):
        if "class_weight" in weights and kind == "reg":
            continue
        assert_same_training(train(build, loss, y, run_eagerly=False, **weights),
                             train(build, loss, y, run_eagerly=True, **weights))


def test_multi_output_with_loss_weights_and_dropout():
    y = {"cls": Y_INT, "reg": Y_REG}
    kwargs = {"loss": {"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              "loss_weights": {"cls": 1.0, "reg": 0.5}, "metrics": ()}
    compiled = train(multi_output, y=y, run_eagerly=False, sample_weight=SW, **kwargs)
    assert compiled[0]._fast_step is not None
    assert_same_training(compiled, train(multi_output, y=y, run_eagerly=True, sample_weight=SW, **kwargs))


def test_the_plan_uses_kernels_for_the_common_layers_and_a_tape_for_the_rest():
    model, _ = train(MODELS["bn_dropout"][0], "sparse_categorical_crossentropy", Y_INT, run_eagerly=False)
    kinds = [type(node).__name__ for node in model._fast_step.nodes]
    assert kinds == ["_DenseNode", "_BatchNormNode", "_ActivationNode", "_DropoutNode", "_DenseNode",
                     "_BatchNormNode", "_ActivationNode", "_DropoutNode", "_DenseNode"]
    assert model._fast_step.fused_loss is not None  # softmax + sparse crossentropy: from the logits
    model, _ = train(MODELS["custom_layers"][0], "sparse_categorical_crossentropy", Y_INT, run_eagerly=False)
    assert [type(node).__name__ for node in model._fast_step.nodes] == ["_TapeNode"] * 4


def stepped_dense_chain():
    """The dense_chain model after one training step (so its plan is traced)."""
    build, loss, _ = MODELS["dense_chain"]
    lamina.utils.set_random_seed(5)
    model = build()
    model.compile(optimizer="adam", loss=loss)
    model.train_on_batch(X[:16], Y_INT[:16])
    return model


def test_one_plan_serves_every_batch_size():
    model = stepped_dense_chain()
    plan = model._fast_step
    for n in (1, 7, 16, 33):
        model.train_on_batch(X[:n], Y_INT[:n])
        assert model._fast_step is plan
    model.fit(X[:50], Y_INT[:50], batch_size=16, epochs=1, verbose=0)  # a short last batch; fit re-plans
    assert isinstance(model._fast_step, compiled_step.CompiledStep)


class Subclassed(lamina.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(4, activation="softmax")

    def call(self, inputs):
        return self.dense(inputs)


def test_a_model_without_a_graph_trains_on_the_tape_and_says_why_only_when_asked():
    model = Subclassed()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, Y_INT, epochs=1, verbose=0)  # jit_compile="auto": the tape step, silently
    assert model._fast_step is None
    model = Subclassed()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
    with pytest.warns(UserWarning, match=r"trains with the eager \(tape\) step.*no layer graph"):
        model.fit(X, Y_INT, epochs=2, verbose=0)


def test_non_float32_inputs_take_the_tape_step_for_that_batch():
    plan = stepped_dense_chain()._fast_step
    assert plan.inputs_for(X[:16].astype("float64")) is None
    assert plan.inputs_for(X[:16]) is not None


# The fused crossentropies from logits, each kind, smoothed and weighted.
FUSED_CASES = [
    ("relu", "softmax", 4, "sparse_categorical_crossentropy", Y_INT),
    ("sigmoid", "softmax", 4, "categorical_crossentropy", Y_ONEHOT),
    ("tanh", "softmax", 4, lamina.losses.CategoricalCrossentropy(label_smoothing=0.1), Y_ONEHOT),
    ("elu", "sigmoid", 1, "binary_crossentropy", Y_BIN),
    ("relu", "sigmoid", 3, lamina.losses.BinaryCrossentropy(label_smoothing=0.2), Y_ONEHOT[:, :3]),
]


@pytest.mark.parametrize("hidden,out,units,loss,y", FUSED_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_crossentropies_match_the_tape(hidden, out, units, loss, y, weighted):
    def build():
        return seq(layers.Dense(8, activation=hidden), layers.Dense(units, activation=out))

    sw = SW if weighted else None
    compiled = train(build, loss, y, run_eagerly=False, sample_weight=sw)
    assert compiled[0]._fast_step.fused_loss is not None
    assert_same_training(compiled, train(build, loss, y, run_eagerly=True, sample_weight=sw))


def test_models_outside_the_fused_loss_and_kernels_still_compile():
    # from_logits=True on a linear output: the loss runs on its small tape; a frozen layer: a tape node
    # without weights; both match the tape step.
    def logits_model():
        return seq(layers.Dense(8, activation="relu"), layers.Dense(4))

    def frozen():
        model = seq(layers.Dense(8, activation="relu"), layers.Dense(4, activation="softmax"))
        model.layers[0].trainable = False
        return model

    loss = lamina.losses.SparseCategoricalCrossentropy(from_logits=True)
    for build, fn in ((logits_model, loss), (frozen, "sparse_categorical_crossentropy")):
        compiled = train(build, fn, Y_INT, run_eagerly=False)
        assert compiled[0]._fast_step is not None
        assert_same_training(compiled, train(build, fn, Y_INT, run_eagerly=True))
    model, _ = train(logits_model, loss, Y_INT, run_eagerly=False)
    assert model._fast_step.fused_loss is None


def test_weights_become_views_of_one_buffer():
    model, _ = train(MODELS["dense_chain"][0], "sparse_categorical_crossentropy", Y_INT, run_eagerly=False)
    bases = {id(w._value.base) for w in model.trainable_weights}
    assert len(bases) == 1
    model.set_weights([w * 0 for w in model.get_weights()])  # assign stays in place: the views survive
    assert {id(w._value.base) for w in model.trainable_weights} == bases


def test_batches_the_fused_loss_cannot_take_go_through_the_loss_itself():
    model, _ = train(MODELS["dense_chain"][0], "sparse_categorical_crossentropy", Y_INT, run_eagerly=False)
    fused = model._fast_step.fused_loss
    z = np.zeros((4, 4), "float32")
    assert fused.fits(z, np.array([0, 1, 2, 3]), None)
    assert not fused.fits(z, np.array([0, 1, 2, 4]), None)  # out of range: the loss reports it
    assert not fused.fits(z, np.array([0, 1, -1, 3]), None)
    assert not fused.fits(z, np.array([0.0, 1.5, 2.0, 3.0]), None)  # not integral
    assert not fused.fits(z, np.array([0, 1, 2]), None)
    assert not fused.fits(z, np.array([0, 1, 2, 3]), np.ones((4, 1), "float32"))
    assert not fused.fits(np.zeros((4, 2, 4), "float32"), np.zeros((4, 2)), None)  # 3-D logits
    with pytest.raises(ValueError, match="Received"):  # the loss's own message, not an IndexError
        model.train_on_batch(X[:4], np.array([0, 1, 2, 7]))


Y_POS = np.abs(Y_REG) + 0.1
# Every built-in loss, on an output whose range suits it, against the targets it expects.
LOSSES = {
    "mean_squared_error": ("linear", 3, Y_REG), "mean_absolute_error": ("linear", 3, Y_REG),
    "mean_absolute_percentage_error": ("softplus", 3, Y_POS), "mean_squared_logarithmic_error": ("softplus", 3, Y_POS),
    "huber": ("linear", 3, Y_REG), "log_cosh": ("linear", 3, Y_REG), "cosine_similarity": ("linear", 3, Y_REG),
    "poisson": ("softplus", 3, Y_POS), "binary_crossentropy": ("sigmoid", 1, Y_BIN),
    "binary_focal_crossentropy": ("sigmoid", 1, Y_BIN), "categorical_crossentropy": ("softmax", 4, Y_ONEHOT),
    "categorical_focal_crossentropy": ("softmax", 4, Y_ONEHOT),
    "categorical_generalized_cross_entropy": ("softmax", 4, Y_INT), "kl_divergence": ("softmax", 4, Y_ONEHOT),
    "categorical_hinge": ("linear", 4, Y_ONEHOT), "hinge": ("tanh", 1, Y_BIN * 2 - 1),
    "squared_hinge": ("tanh", 1, Y_BIN * 2 - 1), "sparse_categorical_crossentropy": ("softmax", 4, Y_INT),
    "dice": ("sigmoid", 1, Y_BIN), "tversky": ("sigmoid", 1, Y_BIN),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss(loss):
    activation, units, y = LOSSES[loss]

    def build():
        return seq(layers.Dense(8, activation="tanh"), layers.Dropout(0.1), layers.Dense(units, activation=activation))

    fn = lamina.losses.CategoricalGeneralizedCrossEntropy(q=0.5) if loss == "categorical_generalized_cross_entropy" \
        else getattr(lamina.losses, loss)
    compiled = train(build, fn, y, run_eagerly=False, metrics=())
    assert compiled[0]._fast_step is not None
    assert_same_training(compiled, train(build, fn, y, run_eagerly=True, metrics=()))


# ----------------------------------------------------------------------------- a user's train_step


class GuideStep(lamina.Model):
    """Keras's guide "Customizing what happens in fit()": forward under a tape, compute_loss, gradient,
    apply, metrics."""

    calls = 0

    def train_step(self, data):
        x, y = data
        with lamina.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        if self._call_plan is not None and isinstance(y_pred, lamina.Tensor) and y_pred.vjp is not None \
                and len(y_pred.parents) > 2:
            GuideStep.calls += 1  # the forward was the plan's one recorded node
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self.compute_metrics(x, y, y_pred)


def guide_model(dropout=0.2, hidden=None):
    i = lamina.Input((6,))
    h = layers.Dense(16)(i)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.Dropout(dropout)(h)
    h = (hidden or layers.Dense(8, activation="tanh", kernel_regularizer="l2"))(h)
    return GuideStep(i, layers.Dense(4, activation="softmax")(h))


def test_a_users_train_step_runs_the_compiled_forward_and_matches_the_tape():
    GuideStep.calls = 0
    compiled = train(guide_model, "sparse_categorical_crossentropy", Y_INT, run_eagerly=False)
    assert compiled[0]._call_plan is not None and compiled[0]._fast_step is None
    assert GuideStep.calls == STEPS
    eager = train(guide_model, "sparse_categorical_crossentropy", Y_INT, run_eagerly=True)
    assert eager[0]._call_plan is None and GuideStep.calls == STEPS
    assert_same_training(compiled, eager)


def test_a_users_layer_keeps_a_users_step_on_its_own_path():
    GuideStep.calls = 0
    model, _ = train(lambda: guide_model(hidden=Penalised()), "sparse_categorical_crossentropy", Y_INT,
                     run_eagerly=False)
    assert model._call_plan is None and GuideStep.calls == 0  # Penalised adds a loss of its own


def test_a_recorded_call_gives_the_layers_gradients_and_allows_one_pending_call():
    lamina.utils.set_random_seed(5)
    model = guide_model(dropout=0.0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(X[:32], Y_INT[:32], batch_size=16, epochs=1, verbose=0)
    plan = model._call_plan
    x = X[:8]
    with lamina.GradientTape(persistent=True) as tape:
        first = model(x, training=True)
        second = model(x, training=True)  # the first is pending: this one takes the layers' own path
        loss_first, loss_second = ops.sum(ops.square(first)), ops.sum(ops.square(second))
    assert len(first.parents) == 1 + len(plan.variables) and len(second.parents) < len(first.parents)
    np.testing.assert_allclose(first.data, second.data, rtol=1e-6)
    via_plan = tape.gradient(loss_first, model.trainable_variables)
    via_layers = tape.gradient(loss_second, model.trainable_variables)
    assert all(g is not None for g in via_plan)
    for a, b in zip(via_plan, via_layers, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with lamina.GradientTape() as tape:  # the first call was differentiated: the plan serves again
        third = model(x, training=True)
    assert len(third.parents) == len(first.parents)


def test_a_model_without_trainable_weights_fits_as_keras_does(keras):
    # Keras runs the step (forward, loss, metrics) and warns; nothing is updated.
    x, y = X[:32], Y_ONEHOT[:32, :3]

    def frozen(lib):
        model = lib.Sequential([lib.Input((6,)), lib.layers.Dense(3, activation="softmax", trainable=False)])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    theirs = frozen(keras)
    reference = theirs.get_weights()
    with warnings.catch_warnings(record=True) as caught:  # Keras's torch internals warn too
        warnings.simplefilter("always")
        h_theirs = theirs.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    assert any("does not have any trainable weights" in str(w.message) for w in caught)
    ours = frozen(lamina)
    ours.set_weights(reference)
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        h_ours = ours.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    np.testing.assert_array_equal(ours.get_weights()[0], reference[0])
    assert h_ours.keys() == h_theirs.keys()
    for key in h_ours:
        np.testing.assert_allclose(h_ours[key], h_theirs[key], rtol=1e-5)
