"""Training on the losses a model adds itself (``add_loss``) when ``compile`` was given no loss."""

import numpy as np
import pytest

import lamina


def _endpoint_model(lib):
    """Inputs and targets in, softmax out; the layer adds the crossentropy of its logits as its loss."""

    class Endpoint(lib.layers.Layer):
        def call(self, targets, logits):
            self.add_loss(lib.losses.BinaryCrossentropy(from_logits=True)(targets, logits))
            return lib.ops.softmax(logits)

    inputs = lib.Input(shape=(3,), name="inputs")
    targets = lib.Input(shape=(4,), name="targets")
    logits = lib.layers.Dense(4, name="logits")(inputs)
    return lib.Model([inputs, targets], Endpoint(name="endpoint")(targets, logits))


def _data():
    rng = np.random.default_rng(0)
    return {"inputs": rng.random((6, 3)).astype("float32"),
            "targets": rng.integers(0, 2, (6, 4)).astype("float32")}


def test_fit_without_a_compiled_loss_trains_on_added_losses_like_keras(keras):
    ours, theirs = _endpoint_model(lamina), _endpoint_model(keras)
    theirs.set_weights(ours.get_weights())
    for model, lib in ((ours, lamina), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.5))  # no loss: the Endpoint's add_loss is all there is
    got = ours.fit(_data(), batch_size=3, epochs=2, shuffle=False, verbose=0).history["loss"]
    want = theirs.fit(_data(), batch_size=3, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _ActivityPenalty(lamina.layers.Layer):
    """Adds the mean square of its inputs as a loss and passes them on."""

    def call(self, inputs):
        self.add_loss(lamina.ops.mean(lamina.ops.square(inputs)))
        return inputs


@pytest.mark.parametrize("jit_compile", [True, False])
def test_added_losses_train_in_the_compiled_and_the_tape_step(jit_compile):
    inputs = lamina.Input((3,))
    model = lamina.Model(inputs, _ActivityPenalty()(lamina.layers.Dense(4)(inputs)))
    model.compile(optimizer=lamina.optimizers.SGD(0.1), jit_compile=jit_compile)
    x = np.random.default_rng(1).random((8, 3)).astype("float32")
    losses = model.fit(x, batch_size=8, epochs=4, verbose=0).history["loss"]
    assert np.all(np.diff(losses) < 0), losses
    if jit_compile:
        assert model._fast_step is not None  # the compiled step took it, no fallback to the tape


def test_no_compiled_loss_and_no_added_loss_names_the_model():
    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2)], name="plain")
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="Model 'plain' has no loss to train on.*Received: loss=None"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    with pytest.raises(ValueError, match="has no loss to train on"):
        model.train_on_batch(np.ones((4, 3)), np.ones((4, 2)))
