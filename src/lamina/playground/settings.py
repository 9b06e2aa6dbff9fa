"""The playground's settings: every value the page may send, its allowed names or range, and the one
function that checks a whole settings dictionary (``validate``) before anything is built from it.

Nothing from the page is used unchecked: names are looked up in the fixed lists below (never passed to
``eval``, ``getattr`` or a path), numbers must be finite and inside their range, and unknown keys are
refused. Errors are ``SettingsError`` with the offending key and a message for the page.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["ACTIVATIONS", "DATASETS", "DEFAULTS", "FEATURES", "LOSSES", "OPTIMIZERS", "REGULARIZERS",
           "Layer", "Settings", "SettingsError", "choices", "validate"]

# Every Keras 3 activation a Dense layer can name, but two: "threshold" needs two more required
# arguments, and "glu" halves the last axis, which Dense's output shape (in Keras as in lamina) does not
# know, so the next layer is built for twice its real input and fails.
ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish", "hard_silu",
    "hard_swish", "mish", "sigmoid", "hard_sigmoid", "sparse_sigmoid", "log_sigmoid", "tanh", "hard_tanh",
    "tanh_shrink", "softplus", "sparse_plus", "softsign", "squareplus", "exponential", "hard_shrink",
    "soft_shrink", "softmax", "log_softmax", "sparsemax",
)
DATASETS = ("circles", "xor", "gauss", "spiral", "moons")
FEATURES = ("x", "y", "x2", "y2", "xy", "sinx", "siny")
LOSSES = ("auto", "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
          "mean_squared_error", "mean_absolute_error", "hinge", "squared_hinge")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", "adamax")
REGULARIZERS = ("none", "l1", "l2")
MAX_LAYERS = 6
MAX_UNITS = 64
# The page's menus (TF Playground's steps); the server accepts any value inside the ranges below.
LEARNING_RATES = (0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
REGULARIZATION_RATES = (0.0, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class SettingsError(ValueError):
    """A setting the playground refuses; ``key`` names it (as in the page's controls)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Layer:
    units: int = 8
    activation: str = "relu"


@dataclass(frozen=True)
class Settings:
    dataset: str = "circles"
    noise: float = 0.1
    train_ratio: float = 0.5
    points: int = 400
    seed: int = 0
    features: tuple[str, ...] = ("x", "y")
    layers: tuple[Layer, ...] = (Layer(8, "relu"), Layer(8, "relu"))
    output_units: int = 1
    output_activation: str = "auto"
    loss: str = "auto"
    optimizer: str = "adam"
    learning_rate: float = 0.03
    batch_size: int = 10
    regularization: str = "none"
    regularization_rate: float = 0.001
    batch_norm: bool = False
    dropout: float = 0.0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["features"] = list(self.features)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d

    # The choices "auto" stands for.
    def resolved_output_activation(self) -> str:
        if self.output_activation != "auto":
            return self.output_activation
        return "sigmoid" if self.output_units == 1 else "softmax"

    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "binary_crossentropy" if self.output_units == 1 else "sparse_categorical_crossentropy"


DEFAULTS = Settings()

# key: (kind, low, high) for numbers; names are checked against their tuple.
_NUMBERS = {
    "noise": (float, 0.0, 0.5),
    "train_ratio": (float, 0.1, 0.9),
    "points": (int, 50, 2000),
    "seed": (int, 0, 2**31 - 1),
    "output_units": (int, 1, 2),
    "learning_rate": (float, 1e-5, 10.0),
    "batch_size": (int, 1, 256),
    "regularization_rate": (float, 0.0, 1.0),
    "dropout": (float, 0.0, 0.9),
}
_NAMES = {
    "dataset": DATASETS,
    "output_activation": ("auto", *ACTIVATIONS),
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "regularization": REGULARIZERS,
}


def _number(key: str, value, kind, low, high):
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(value) or not low <= value <= high:
        what = "an integer" if kind is int else "a number"
        raise SettingsError(key, f"`{key}` must be {what} from {low:g} to {high:g}. Received: {key}={value!r}")
    return kind(value)


def _name(key: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise SettingsError(key, f"`{key}` must be one of: {', '.join(allowed)}. Received: {key}={shown}")
    return value


def _layers(value) -> tuple[Layer, ...]:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise SettingsError("layers", f"`layers` must be a list of 0 to {MAX_LAYERS} hidden layers. "
                                      f"Received: a {type(value).__name__}" + (
                                          f" of {len(value)}" if isinstance(value, list) else ""))
    out = []
    for i, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or set(entry) - {"units", "activation"}:
            raise SettingsError("layers", f"hidden layer {i} must be {{'units': ..., 'activation': ...}}. "
                                          f"Received: {str(entry)[:60]}")
        units = _number(f"layers[{i}].units", entry.get("units", 8), int, 1, MAX_UNITS)
        act = _name(f"layers[{i}].activation", entry.get("activation", "relu"), ACTIVATIONS)
        out.append(Layer(units, act))
    return tuple(out)


def _features(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > len(FEATURES):
        raise SettingsError("features", f"`features` must be a non-empty list drawn from {', '.join(FEATURES)}. "
                                        f"Received: {str(value)[:60]}")
    for v in value:
        _name("features", v, FEATURES)
    return tuple(f for f in FEATURES if f in value)  # canonical order, no repeats


def _cross_checks(s: dict) -> None:
    loss = s["loss"] if s["loss"] != "auto" else (
        "binary_crossentropy" if s["output_units"] == 1 else "sparse_categorical_crossentropy")
    if loss == "sparse_categorical_crossentropy" and s["output_units"] != 2:
        raise SettingsError("loss", "sparse_categorical_crossentropy needs one output unit per class (2 here). "
                                    f"Received: output_units={s['output_units']}")


def choices() -> dict:
    """What the page builds its controls from (so page and server share one list)."""
    return {"activations": list(ACTIVATIONS), "datasets": list(DATASETS), "features": list(FEATURES),
            "losses": list(LOSSES), "optimizers": list(OPTIMIZERS), "regularizations": list(REGULARIZERS),
            "learning_rates": list(LEARNING_RATES), "regularization_rates": list(REGULARIZATION_RATES),
            "max_layers": MAX_LAYERS, "max_units": MAX_UNITS, "defaults": DEFAULTS.to_dict()}


def validate(data) -> Settings:
    """A ``Settings`` from the page's dictionary (missing keys take their defaults), or ``SettingsError``."""
    if not isinstance(data, dict):
        raise SettingsError("settings", f"settings must be a JSON object. Received: {type(data).__name__}")
    allowed = set(DEFAULTS.to_dict())
    unknown = sorted(str(k)[:30] for k in data if k not in allowed)
    if unknown:
        raise SettingsError(unknown[0], f"unknown setting(s): {', '.join(unknown)}. Known settings are: "
                                        f"{', '.join(sorted(allowed))}.")
    s = DEFAULTS.to_dict()
    s.update(data)
    for key, (kind, low, high) in _NUMBERS.items():
        s[key] = _number(key, s[key], kind, low, high)
    for key, names in _NAMES.items():
        s[key] = _name(key, s[key], names)
    if not isinstance(s["batch_norm"], bool):
        raise SettingsError("batch_norm",
                            f"`batch_norm` must be true or false. Received: batch_norm={s['batch_norm']!r}")
    s["layers"] = _layers(s["layers"])
    s["features"] = _features(s["features"])
    _cross_checks(s)
    return Settings(**s)
