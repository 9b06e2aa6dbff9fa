"""``keras.wrappers``: lamina models as scikit-learn estimators (classifier, regressor, transformer).

Needs scikit-learn 1.6 or newer (``pip install lamina[sklearn]``). ``model`` is a compiled lamina
``Model``, copied (fresh weights, same compile arguments) at every ``fit``, or a function
``model(X=..., y=..., **model_kwargs)`` that returns one; ``fit_kwargs`` (overridden by keyword
arguments to ``fit``) go to ``Model.fit``. Classifiers train on one-hot targets and predict the class
of the largest output. Training is random: seed with ``lamina.utils.set_random_seed`` for repeatable fits.
"""

from __future__ import annotations

import io

import numpy as np

from lamina.models import Model

try:  # optional extra: lamina[sklearn]; the classes below still import without it and explain at use
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:
    sklearn = None

    class BaseEstimator:
        pass

    class ClassifierMixin:
        pass

    class RegressorMixin:
        pass

    class TransformerMixin:
        pass

__all__ = ["SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"]


def _require_sklearn(name: str) -> None:
    if sklearn is None:
        raise ImportError(f"{name} needs scikit-learn 1.6 or newer: `pip install lamina[sklearn]` (or "
                          "`pip install scikit-learn`). Received: scikit-learn missing or older than 1.6")


def _copy_model(model: Model) -> Model:
    """A new model with ``model``'s architecture, fresh weights and compile arguments (Keras's clone_model,
    then compiled as the original was)."""
    copy = type(model).from_config(model.get_config())
    if model.compiled:
        copy.compile_from_config(model.get_compile_config())
    return copy


def _check_model(model, owner: str) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"{owner}'s `model` must be a lamina Model or a function returning one. "
                        f"Received: {type(model).__name__}")
    if not model.compiled or not model.loss or not model.optimizer:
        raise RuntimeError(f"{owner}: the given model needs to be compiled, with a loss and an optimizer. "
                           f"Received: model {model.name!r} (compiled={model.compiled}, loss={model.loss!r})")


class _Archive:
    """A pickled model: the bytes of its .keras file."""

    def __init__(self, data: bytes):
        self.data = data


class SKLBase(BaseEstimator):
    """What the three wrappers share: building the model, fitting it, predicting with it."""

    def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None):
        _require_sklearn(type(self).__name__)
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    def __sklearn_clone__(self):
        # sklearn.base.clone would deep-copy a Model parameter; a copy of its architecture is what a
        # fresh, unfitted estimator needs (a function parameter is shared as it is).
        model = _copy_model(self.model) if isinstance(self.model, Model) else self.model
        return type(self)(model=model, warm_start=self.warm_start, model_kwargs=self.model_kwargs,
                          fit_kwargs=self.fit_kwargs)

    def __getstate__(self):
        # A lamina model pickles as its .keras archive (architecture, weights, compile arguments): its
        # layers hold closures that pickle cannot store.
        from lamina.saving import saving_lib  # lazy: the file code loads on first use

        state = dict(super().__getstate__())
        for name in ("model", "model_"):
            if isinstance(state.get(name), Model):
                state[name] = _Archive(saving_lib.archive_bytes(state[name]))
        return state

    def __setstate__(self, state):
        from lamina.saving import saving_lib  # lazy: the file code loads on first use

        state = dict(state)
        for name in ("model", "model_"):
            if isinstance(state.get(name), _Archive):
                state[name] = saving_lib.load_model(io.BytesIO(state[name].data))
        super().__setstate__(state)

    @property
    def epoch_(self) -> int:
        """The number of epochs the last ``fit`` ran (0 before any)."""
        return len(next(iter(getattr(self, "history_", {}).values()), []))

    def _get_model(self, X, y) -> Model:
        if self.warm_start and hasattr(self, "model_"):
            return self.model_  # keep training the fitted weights
        if isinstance(self.model, Model):
            return self.model if self.warm_start else _copy_model(self.model)
        if not callable(self.model):
            raise TypeError(f"{type(self).__name__}'s `model` must be a lamina Model or a function returning "
                            f"one. Received: model of type {type(self.model).__name__}")
        return self.model(X=X, y=y, **(self.model_kwargs or {}))

    def fit(self, X, y, **kwargs):
        """Train a model on ``X`` (n_samples, n_features) and ``y``; ``kwargs`` go to ``Model.fit``."""
        X, y = validate_data(self, X, y)
        y = self._process_target(y, reset=True)
        model = self._get_model(X, y)
        _check_model(model, type(self).__name__)
        history = model.fit(X, y, **{**(self.fit_kwargs or {}), **kwargs})
        self.history_ = dict(history.history)
        self.model_ = model
        return self

    def _raw_predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        out = self.model_.predict(X, verbose=0)
        # Model(inputs, [output]) predicts a one-element list in lamina where Keras gives the array itself
        return np.asarray(out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out)

    def predict(self, X):
        """The model's predictions for ``X``, shaped as the training targets were."""
        return self._reverse_process_target(self._raw_predict(X))

    def _process_target(self, y, reset=False):
        """Targets as the model trains on them: a 1-D y becomes one column."""
        if type_of_target(y) == "unknown":
            raise ValueError(f"Unknown label type for the targets of {type(self).__name__}. Received: y={y!r:.200}")
        if reset:
            self.y_ndim_ = y.ndim
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _reverse_process_target(self, y):
        return y[:, 0] if self.y_ndim_ == 1 and y.ndim == 2 and y.shape[1] == 1 else y


class SKLearnClassifier(ClassifierMixin, SKLBase):
    """A lamina model as a scikit-learn classifier. The model trains on one-hot targets (one output per
    class, in the order of ``classes_``); ``predict`` returns the class with the largest output and
    ``decision_function`` the raw outputs."""

    def decision_function(self, X):
        """The model's raw outputs for ``X``: shape (n_samples, n_classes)."""
        return self._raw_predict(X)

    def _process_target(self, y, reset=False):
        kind = type_of_target(y)
        if kind == "unknown":
            raise ValueError(f"Unknown label type for the targets of {type(self).__name__}. Received: y={y!r:.200}")
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Only binary and multiclass target types are supported. Target type: {kind}")
        if reset:
            self.classes_ = np.unique(y)
            if len(self.classes_) == 1:
                raise ValueError(f"Classifier can't train when only one class is present. Received: the single "
                                 f"class {self.classes_[0]!r}")
        labels = np.searchsorted(self.classes_, np.ravel(y))
        return np.eye(len(self.classes_), dtype="float32")[labels]

    def _reverse_process_target(self, y):
        # One output per class: the largest wins; a single output (a sigmoid) picks the second class above 0.5.
        index = (y[:, 0] > 0.5).astype(int) if y.shape[1] == 1 else np.argmax(y, axis=1)
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags


class SKLearnRegressor(RegressorMixin, SKLBase):
    """A lamina model as a scikit-learn regressor: ``predict`` returns the model's outputs (1-D when
    ``y`` was)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


class SKLearnTransformer(TransformerMixin, SKLBase):
    """A lamina model as a scikit-learn transformer (in a Pipeline, say): ``transform`` returns the
    model's outputs, e.g. an embedding, for ``X``."""

    def transform(self, X):
        """The model's outputs for ``X``."""
        return self._raw_predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags
