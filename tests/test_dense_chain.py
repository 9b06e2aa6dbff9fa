"""The hand-written Dense-chain training step gives the generic GradientTape path's numbers."""

import numpy as np
import pytest

import lamina
from lamina import layers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 6)).astype("float32")
Y = RNG.integers(0, 4, 96)


def build(hidden="relu", out="softmax", units=4):
    lamina.utils.set_random_seed(3)
    return lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation=hidden),
                              layers.Dense(5, activation="tanh"), layers.Dense(units, activation=out)])


CASES = [
    ("relu", "softmax", 4, "sparse_categorical_crossentropy", "int"),
    ("sigmoid", "softmax", 4, "categorical_crossentropy", "onehot"),
    ("tanh", "softmax", 4, lamina.losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot"),
    ("elu", "sigmoid", 1, "binary_crossentropy", "binary"),
    ("relu", "sigmoid", 3, lamina.losses.BinaryCrossentropy(label_smoothing=0.2), "multilabel"),
]


def labels(kind):
    return {"int": Y, "onehot": np.eye(4, dtype="float32")[Y], "binary": (Y % 2).astype("float32")[:, None],
            "multilabel": (np.eye(4, dtype="float32")[Y][:, :3])}[kind]


@pytest.mark.parametrize("hidden,out,units,loss,kind", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_fast_path_matches_generic_path(hidden, out, units, loss, kind, weighted):
    y = labels(kind)
    sw = RNG.uniform(0.2, 2.0, size=96).astype("float32") if weighted else None
    results = []
    for fast in (True, False):
        model = build(hidden, out, units)
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"], run_eagerly=not fast)
        history = model.fit(X, y, sample_weight=sw, batch_size=16, epochs=3, shuffle=True, verbose=0)
        assert (model._fast_step is not None) == fast
        results.append((model.get_weights(), history.history))
    (w_fast, h_fast), (w_slow, h_slow) = results
    for a, b in zip(w_fast, w_slow):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for key in h_slow:
        np.testing.assert_allclose(h_fast[key], h_slow[key], rtol=2e-5)


def test_ineligible_models_take_the_generic_path():
    def planned(model, loss="sparse_categorical_crossentropy"):
        model.compile(optimizer="adam", loss=loss)
        model.fit(X, Y, epochs=1, verbose=0)
        return model._fast_step is not None

    assert planned(build())
    # relu hidden layers: eligible activations (and no lint warning), so the regularizer or the Dropout
    # is the only reason these two leave the fast path.
    reg = lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu", kernel_regularizer="l2"),
                             layers.Dense(4, activation="softmax")])
    assert not planned(reg)
    drop = lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(4, activation="softmax")])
    assert not planned(drop)
    assert not planned(build(out="linear"), loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    frozen = build()
    frozen.layers[0].trainable = False
    assert not planned(frozen)


def test_weights_become_views_of_one_buffer():
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, verbose=0)
    bases = {id(w._value.base) for w in model.trainable_weights}
    assert len(bases) == 1
    before = model.get_weights()
    model.set_weights([w * 0 for w in before])  # assign stays in place: the views survive
    assert {id(w._value.base) for w in model.trainable_weights} == bases
