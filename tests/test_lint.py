"""Model lint: every rule has a model that trips it and one that does not."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import diagnostics, losses
from lamina import layers as L
from lamina.diagnostics import Finding, LintHint, LintWarning, ModelError


def seq(*layers, shape=(4,)):
    return lamina.Sequential([L.Input(shape), *layers])


def rules(model, x=None, y=None) -> set[str]:
    return {f.rule for f in diagnostics.lint(model, x, y)}


def compiled(model, loss, **kwargs):
    model.compile(optimizer="sgd", loss=loss, lint=False, **kwargs)
    return model


def compile_findings(model, loss, **kwargs) -> list[str]:
    """Compile with lint on; return the messages of the lint warnings it emits."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="sgd", loss=loss, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, LintWarning)]


# ----------------------------------------------------------------------------- softmax over one unit


def test_softmax_on_one_unit_is_an_error_at_compile():
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation="softmax"))
    with pytest.raises(ModelError) as err:
        model.compile(optimizer="sgd", loss="binary_crossentropy")
    assert [f.rule for f in err.value.findings] == ["softmax-single-unit"]
    assert err.value.findings[0].layers == (model.layers[-1].name,)
    assert "always 1.0" in str(err.value) and "sigmoid" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("head", [
    lambda: [L.Dense(1), L.Softmax()],
    lambda: [L.Dense(1), L.Activation("log_softmax")],
    lambda: [L.Dense(3), L.Reshape((3, 1)), L.Softmax(axis=-1)],
])
def test_softmax_over_axis_of_size_one_in_any_layer(head):
    assert "softmax-single-unit" in rules(seq(L.Dense(8, activation="relu"), *head()))


def test_softmax_over_several_units_is_fine():
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")),
                     "sparse_categorical_crossentropy")
    assert rules(model) == set()
    # Softmax over the axis of size 3 of a (None, 1, 3) tensor is fine too.
    assert rules(seq(L.Dense(3), L.Reshape((1, 3)), L.Softmax(axis=-1))) == set()


# ----------------------------------------------------------------------------- linear layers in a row


def test_linear_dense_layers_in_a_row_warn():
    model = seq(L.Dense(16, activation="relu"), L.Dense(8), L.Dropout(0.5), L.Dense(8),
                L.Dense(1, activation="sigmoid"))
    messages = compile_findings(model, "binary_crossentropy")
    assert len(messages) == 1 and "linear-chain" in messages[0]
    assert "compose to a single linear map" in messages[0]
    finding = diagnostics.lint(model)[0]
    assert finding.severity == "warning"
    assert finding.layers == tuple(layer.name for layer in model.layers if isinstance(layer, L.Dense))[1:]


def test_linear_chain_through_flatten_and_batchnorm():
    model = seq(L.Dense(8, activation="relu"), L.Dense(8), L.BatchNormalization(), L.Flatten(),
                L.Dense(4, activation="relu"), L.Dense(2, activation="softmax"))
    found = [f for f in diagnostics.lint(model) if f.rule == "linear-chain"]
    assert len(found) == 1 and len(found[0].layers) == 2


@pytest.mark.parametrize("middle", [
    lambda: [L.Dense(8, activation="relu")],
    lambda: [L.Dense(8), L.BatchNormalization(), L.ReLU()],
    lambda: [L.Dense(8), L.Activation("tanh")],
    lambda: [L.Dense(8), L.LayerNormalization(), L.LeakyReLU()],
])
def test_a_non_linearity_between_dense_layers_is_fine(middle):
    model = compiled(seq(L.Dense(8, activation="relu"), *middle(), L.Dense(1, activation="sigmoid")),
                     "binary_crossentropy")
    assert rules(model) == set()


def test_model_without_any_non_linearity_before_the_classifier_head():
    model = seq(L.Dense(16), L.Dense(16), L.Dense(1, activation="sigmoid"), shape=(2,))
    found = diagnostics.lint(compiled(model, "binary_crossentropy"))
    assert [f.rule for f in found] == ["no-nonlinearity"]  # reported instead of linear-chain
    assert "linear classifier" in found[0].message
    # A graph with a merge and still no non-linearity.
    inp = lamina.Input((4,))
    a, b = L.Dense(8)(inp), L.Dense(8)(inp)
    out = L.Dense(3, activation="softmax")(L.Add()([a, b]))
    assert "no-nonlinearity" in rules(lamina.Model(inp, out))


def test_logistic_regression_and_non_linear_models_are_not_linear_warnings():
    assert rules(compiled(seq(L.Dense(1, activation="sigmoid")), "binary_crossentropy")) == set()
    assert rules(seq(L.Dense(16, activation="relu"), L.Dense(1, activation="sigmoid"))) == set()
    # A regression model (no classifier head) with one linear hidden layer: not a classifier.
    assert rules(compiled(seq(L.Dense(1)), "mse")) == set()


# ----------------------------------------------------------------------------- output activation vs loss


def test_from_logits_after_softmax_or_sigmoid_is_an_error():
    model = seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax"))
    with pytest.raises(ModelError, match="from-logits-after-probability"):
        model.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid"))
    assert "from-logits-after-probability" in rules(compiled(model, losses.BinaryCrossentropy(from_logits=True)))


def test_from_logits_on_a_linear_output_is_fine():
    model = seq(L.Dense(8, activation="relu"), L.Dense(3))
    assert compile_findings(model, losses.SparseCategoricalCrossentropy(from_logits=True)) == []
    model = seq(L.Dense(8, activation="relu"), L.Dense(3), L.Activation("log_softmax"))
    assert rules(compiled(model, losses.CategoricalCrossentropy(from_logits=True))) == set()


@pytest.mark.parametrize("units,loss", [(3, "sparse_categorical_crossentropy"), (3, "categorical_crossentropy"),
                                        (1, "binary_crossentropy")])
def test_linear_output_with_a_probabilistic_loss_is_an_error(units, loss):
    model = seq(L.Dense(8, activation="relu"), L.Dense(units))
    with pytest.raises(ModelError) as err:
        model.compile(loss=loss)
    assert err.value.findings[0].rule == "linear-output-probabilistic-loss"
    assert "from_logits=True" in err.value.findings[0].fix


def test_a_softmax_layer_after_a_linear_dense_is_a_probabilistic_output():
    model = seq(L.Dense(8, activation="relu"), L.Dense(3), L.Dropout(0.1), L.Softmax())
    assert rules(compiled(model, "sparse_categorical_crossentropy")) == set()


def test_softmax_with_binary_crossentropy_on_several_units_warns():
    model = seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax"))
    assert rules(compiled(model, "binary_crossentropy")) == {"softmax-binary-crossentropy"}
    model = seq(L.Dense(8, activation="relu"), L.Dense(3, activation="sigmoid"))  # multi-label: fine
    assert rules(compiled(model, "binary_crossentropy")) == set()


def test_sigmoid_with_categorical_crossentropy_warns():
    model = seq(L.Dense(8, activation="relu"), L.Dense(3, activation="sigmoid"))
    assert rules(compiled(model, "categorical_crossentropy")) == {"sigmoid-categorical-crossentropy"}
    model = seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax"))
    assert rules(compiled(model, "categorical_crossentropy")) == set()


def test_categorical_loss_on_one_unit_is_an_error():
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid"))
    with pytest.raises(ModelError, match="categorical-loss-single-unit"):
        model.compile(loss="sparse_categorical_crossentropy")
    model = seq(L.Dense(8, activation="relu"), L.Dense(2, activation="softmax"))
    assert rules(compiled(model, "sparse_categorical_crossentropy")) == set()


@pytest.mark.parametrize("act", ["relu", "softplus"])
def test_non_negative_output_into_a_crossentropy_warns(act):
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation=act))
    assert rules(compiled(model, "binary_crossentropy")) == {"nonnegative-output-crossentropy"}
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation=act))
    assert rules(compiled(model, "mse")) == set()  # a non-negative regression target is fine


# ----------------------------------------------------------------------------- deep sigmoid stacks


def test_deep_sigmoid_stack_with_default_init_gets_a_hint():
    model = seq(*[L.Dense(16, activation="sigmoid") for _ in range(4)], L.Dense(1, activation="sigmoid"))
    messages = compile_findings(model, "binary_crossentropy")
    assert len(messages) == 1 and "deep-sigmoid-stack" in messages[0]
    found = diagnostics.lint(model)
    assert found[0].severity == "hint" and len(found[0].layers) == 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="sgd", loss="binary_crossentropy")
    assert caught[0].category is LintHint


@pytest.mark.parametrize("hidden", [
    lambda: [L.Dense(16, activation="sigmoid") for _ in range(3)],  # shallow
    lambda: [L.Dense(16, activation="sigmoid", kernel_initializer="he_normal") for _ in range(4)],
    lambda: [x for _ in range(3) for x in (L.Dense(16, activation="sigmoid"), L.BatchNormalization())],
    lambda: [L.Dense(16, activation="tanh") for _ in range(6)],  # Glorot keeps tanh gradients (see lint.py)
    lambda: [L.Dense(16, activation="sigmoid"), L.Dense(16, activation="sigmoid"), L.ReLU(),
             L.Dense(16, activation="sigmoid"), L.Dense(16, activation="sigmoid")],  # a relu breaks the run
])
def test_no_vanishing_gradient_hint(hidden):
    assert "deep-sigmoid-stack" not in rules(seq(*hidden(), L.Dense(1, activation="sigmoid")))


def test_sigmoid_applied_by_activation_layers_counts():
    hidden = [x for _ in range(4) for x in (L.Dense(16), L.Activation("sigmoid"))]
    assert "deep-sigmoid-stack" in rules(seq(*hidden, L.Dense(1, activation="sigmoid")))


# ----------------------------------------------------------------------------- with data


def test_one_hot_labels_with_a_sparse_loss():
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")),
                     "sparse_categorical_crossentropy")
    x = np.zeros((6, 4), "float32")
    y = np.arange(6) % 3
    assert rules(model, x, np.eye(3)[y]) == {"labels-one-hot-for-sparse"}
    assert rules(model, x, y) == set()


def test_integer_labels_with_a_categorical_loss():
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")), "categorical_crossentropy")
    y = np.arange(6) % 3
    assert rules(model, None, y) == {"labels-integers-for-categorical"}
    assert rules(model, None, y.reshape(-1, 1)) == {"labels-integers-for-categorical"}
    assert rules(model, None, np.eye(3)[y]) == set()


def test_labels_outside_zero_one_for_binary_crossentropy():
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")), "binary_crossentropy")
    found = diagnostics.lint(model, None, np.array([0, 1, 2, 1]))
    assert [f.rule for f in found] == ["labels-out-of-range"]
    assert "3 classes" in found[0].fix
    assert rules(model, None, np.array([-1.0, 1.0])) == {"labels-out-of-range"}
    assert rules(model, None, np.array([0.0, 0.3, 1.0])) == set()  # soft labels are fine


def test_class_count_against_output_units():
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(10, activation="softmax")),
                     "sparse_categorical_crossentropy")
    found = diagnostics.lint(model, None, np.array([0, 3, 11]))
    assert [f.rule for f in found] == ["labels-class-count"] and "12 units" in found[0].fix
    assert rules(model, None, np.array([-1, 3])) == {"labels-out-of-range"}
    assert rules(model, None, np.array([0, 9])) == set()
    model = compiled(seq(L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")), "categorical_crossentropy")
    assert rules(model, None, np.eye(5)[[0, 4]]) == {"labels-class-count"}


def test_unscaled_inputs_into_a_sigmoid_layer_get_a_hint():
    model = compiled(seq(L.Dense(8, activation="sigmoid"), L.Dense(1, activation="sigmoid")), "binary_crossentropy")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 4)).astype("float32")
    found = diagnostics.lint(model, pixels, None)
    assert [f.rule for f in found] == ["inputs-unscaled"] and found[0].severity == "hint"
    assert "x / 255.0" in found[0].fix
    assert rules(model, pixels / 255.0, None) == set()


@pytest.mark.parametrize("first", [lambda: [L.Dense(8, activation="relu")],
                                   lambda: [L.BatchNormalization(), L.Dense(8, activation="tanh")]])
def test_unscaled_inputs_are_not_flagged_without_a_saturating_first_layer(first):
    model = compiled(seq(*first(), L.Dense(1, activation="sigmoid")), "binary_crossentropy")
    assert rules(model, np.full((8, 4), 300.0, "float32"), None) == set()


def test_data_rules_run_at_fit():
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid"))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    with pytest.raises(ModelError, match="labels-out-of-range"):
        model.fit(x, np.arange(32) % 3, epochs=1, verbose=0)
    model.compile(optimizer="sgd", loss="binary_crossentropy", lint="warn")
    with pytest.warns(LintWarning, match="labels-out-of-range"):
        model.fit(x, (np.arange(32) % 3).astype("float32"), epochs=1, verbose=0)
    model.compile(optimizer="sgd", loss="binary_crossentropy", lint=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LintWarning)
        model.fit(x, (np.arange(32) % 3).astype("float32"), epochs=1, verbose=0)
    model = seq(L.Dense(8, activation="tanh"), L.Dense(1, activation="sigmoid"))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    with pytest.warns(LintHint, match="inputs-unscaled"):
        model.fit(x * 1000, np.arange(32) % 2, epochs=1, verbose=0)


def test_a_model_built_at_fit_is_linted_at_fit():
    model = lamina.Sequential([L.Dense(8, activation="relu"), L.Dense(1, activation="softmax")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")  # no input shape yet: nothing to read
    with pytest.raises(ModelError, match="softmax-single-unit"):
        model.fit(np.zeros((4, 3), "float32"), np.zeros(4), verbose=0)


# ----------------------------------------------------------------------------- modes, reporting


def test_lint_warn_mode_and_lint_false():
    model = seq(L.Dense(8, activation="relu"), L.Dense(1, activation="softmax"))
    with pytest.warns(LintWarning, match="error softmax-single-unit"):
        model.compile(optimizer="sgd", loss="binary_crossentropy", lint="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer="sgd", loss="binary_crossentropy", lint=False)
    assert model.compiled


def test_lint_warnings_are_filterable():
    model = seq(L.Dense(16), L.Dense(16), L.Dense(1, activation="sigmoid"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LintWarning)
        with pytest.raises(LintWarning, match="no-nonlinearity"):
            model.compile(optimizer="sgd", loss="binary_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=LintWarning)
        model.compile(optimizer="sgd", loss="binary_crossentropy")


def test_bad_lint_argument_and_bad_model():
    model = seq(L.Dense(1, activation="sigmoid"))
    with pytest.raises(ValueError, match=r"Received: lint='strict'"):
        model.compile(optimizer="sgd", loss="binary_crossentropy", lint="strict")
    with pytest.raises(TypeError, match="lint expects a lamina Model"):
        diagnostics.lint(L.Dense(3))


def test_findings_are_sorted_and_readable():
    model = compiled(seq(L.Dense(8), L.Dense(8), L.Dense(3, activation="softmax")), "binary_crossentropy")
    found = diagnostics.lint(model, None, np.array([[0, 1, 2]]))
    severities = [f.severity for f in found]
    assert severities == sorted(severities, key=["error", "warning", "hint"].index)
    assert all(isinstance(f, Finding) and f.fix for f in found)
    text = str(found[0])
    assert text.startswith(found[0].severity) and "Fix:" in text
    with pytest.raises(ValueError, match="severity"):
        Finding("x", "fatal", (), "m", "f")


def test_subclassed_models_lint_quietly():
    class Tiny(lamina.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(1, activation="softmax")

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model.compile(optimizer="sgd", loss="binary_crossentropy")  # no graph to read: no findings, no error
    assert diagnostics.lint(model) == []


# ----------------------------------------------------------------------------- process-wide mode


@pytest.fixture
def lint_mode_restored():
    yield
    lamina.config.set_lint_mode("raise")


def _one_unit_softmax():
    return seq(L.Dense(8, activation="relu"), L.Dense(1, activation="softmax"))


def test_set_lint_mode_warn_turns_compile_and_fit_errors_into_warnings(lint_mode_restored):
    assert lamina.config.lint_mode() == "raise"
    lamina.config.set_lint_mode("warn")
    model = _one_unit_softmax()
    with pytest.warns(LintWarning, match="softmax-single-unit"):
        model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 4), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, verbose=0)  # the findings were reported at compile; fit trains
    # An explicit lint= still decides for its model.
    with pytest.raises(ModelError):
        _one_unit_softmax().compile(optimizer="sgd", loss="mse", lint=True)


def test_set_lint_mode_off_skips_the_checks(lint_mode_restored):
    lamina.config.set_lint_mode("off")
    model = _one_unit_softmax()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.zeros((4, 4), "float32"), np.zeros((4, 1), "float32"), verbose=0)
    lamina.config.set_lint_mode("raise")
    with pytest.raises(ModelError):
        _one_unit_softmax().compile(optimizer="sgd", loss="mse")


def test_set_lint_mode_rejects_other_values():
    with pytest.raises(ValueError, match=r"set_lint_mode.*\['raise', 'warn', 'off'\].*Received: mode='strict'"):
        lamina.config.set_lint_mode("strict")
    with pytest.raises(ValueError, match="set_lint_mode.*Received: mode=False"):
        lamina.config.set_lint_mode(False)
    assert lamina.config.lint_mode() == "raise"
