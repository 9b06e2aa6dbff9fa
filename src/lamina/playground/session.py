"""One browser session's training: the data, the model, and the frames the page draws.

``Session(settings)`` builds everything; ``advance()`` trains one frame's worth (one epoch, at most
``MAX_BATCHES`` batches) and returns ``frame()``: losses, accuracies, the decision boundary and each
neuron's output over the input plane, the activation doctor's health per layer and its warnings.
``lint`` holds the doctor's findings about the network, ``curves`` each activation's curve and
derivative (from lamina's autodiff). Pure lamina: no server code here, so it is testable alone.
"""

from __future__ import annotations

import base64
import contextlib
import math
import threading
import time
import warnings

import numpy as np

import lamina
from lamina import activations as activations_lib
from lamina.autodiff import GradientTape, Variable
from lamina.callbacks import ActivationHealth
from lamina.diagnostics import lint
from lamina.diagnostics.health import locate_nonfinite
from lamina.playground import data, network
from lamina.playground.settings import Settings

__all__ = ["BOUNDARY_GRID", "COMPUTE_LOCK", "MAX_BATCHES", "NEURON_GRID", "Session", "activation_curve"]

BOUNDARY_GRID = 60  # the decision boundary: 60 x 60 points over the plane
NEURON_STRIDE = 3  # each neuron's small heat-map: every 3rd point of that grid, 20 x 20
NEURON_GRID = BOUNDARY_GRID // NEURON_STRIDE
HEALTH_EVERY = 0.25  # seconds between the doctor's measurements (a forward + backward pass each)
MAX_BATCHES = 64  # per frame, so a frame stays short with batch size 1 on many points
HEALTH_ROWS = 256  # rows the doctor measures on
CURVE_X = np.linspace(-5.0, 5.0, 201, dtype=np.float32)
# Vector activations act on a whole row, not one number: they are drawn on the pair (x, 0).
VECTOR_ACTIVATIONS = ("softmax", "log_softmax", "sparsemax")
# lamina's autodiff tape and layer naming are process-wide: one session computes at a time.
COMPUTE_LOCK = threading.Lock()


def _u8(values: np.ndarray) -> str:
    """Values in [0, 1] as base64 bytes 0..255 (a compact frame)."""
    q = np.clip(np.nan_to_num(values, nan=0.5), 0.0, 1.0) * 255
    return base64.b64encode(np.round(q).astype(np.uint8).tobytes()).decode("ascii")


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def activation_curve(name: str) -> dict:
    """``{"name", "x", "y", "dy", "pair"}``: the activation over [-5, 5] and its derivative from autodiff."""
    fn = activations_lib.get(name)
    v = Variable(CURVE_X)
    pair = name in VECTOR_ACTIVATIONS
    with np.errstate(all="ignore"), GradientTape() as tape:
        if pair:
            y = fn(lamina.ops.stack([v, lamina.ops.zeros_like(v)], axis=1))[:, 0]
        else:
            y = fn(v)
        total = y.sum()
    grad = tape.gradient(total, v)
    dy = np.zeros_like(CURVE_X) if grad is None else np.asarray(grad)
    clean = lambda a: [_finite(t) for t in np.asarray(a, dtype=np.float64)]
    return {"name": name, "x": clean(CURVE_X), "y": clean(np.asarray(y)), "dy": clean(dy), "pair": pair}


class Session:
    """The model, data and history of one page."""

    def __init__(self, settings: Settings, health_every: float = HEALTH_EVERY):
        self.settings = s = settings
        self.health_every = health_every  # seconds between the doctor's measurements; 0: every frame
        (self.points_train, self.labels_train), (self.points_test, self.labels_test) = data.make(
            s.dataset, s.points, s.noise, s.train_ratio, s.seed)
        self.x_train = data.features(self.points_train, s.features)
        self.x_test = data.features(self.points_test, s.features)
        self.y_train = network.targets(self.labels_train, s)
        self.y_test = network.targets(self.labels_test, s)
        self.grid = data.features(data.grid(BOUNDARY_GRID), s.features)
        with COMPUTE_LOCK:
            lamina.utils.set_random_seed(s.seed)
            self.model, self.neuron_layers = network.build(lamina, s, len(s.features))
            self.lint = [{"severity": f.severity, "rule": f.rule, "layers": list(f.layers), "message": f.message,
                          "fix": f.fix} for f in lint(self.model, self.x_train, self.y_train)]
            self.doctor = ActivationHealth(x_sample=self.x_train[:HEALTH_ROWS], y_sample=self.y_train[:HEALTH_ROWS],
                                           verbose=0, nan_check=False)
            self.doctor.set_model(self.model)
            self.doctor.on_train_begin()
        names = [layer.activation for layer in s.layers] + [s.resolved_output_activation()]
        self.curves = [activation_curve(n) for n in dict.fromkeys(names)]
        self.epoch = 0.0
        self.tag = None  # the page's number for these settings (set by the server)
        self._health_at: float | None = None
        self._health_last: dict = {}
        self._notes: list[str] = []
        self.history: list[dict] = []
        self._loss_fn = lamina.losses.get(s.resolved_loss())
        self._last = self._evaluate()

    # ------------------------------------------------------------------ training

    def advance(self) -> dict:
        """Train one frame (an epoch, or MAX_BATCHES batches of it) and return the new frame."""
        s = self.settings
        n = len(self.x_train)
        batch = min(s.batch_size, n)
        rows = min(n, batch * MAX_BATCHES)
        with COMPUTE_LOCK:
            take = np.random.default_rng([s.seed, len(self.history)]).permutation(n)[:rows]
            with np.errstate(all="ignore"), self._watch():
                self.model.fit(self.x_train[take], self.y_train[take], batch_size=batch, epochs=1, shuffle=False,
                               verbose=0)
        self.epoch += rows / n
        self._last = self._evaluate()
        return self.frame()

    def _scores(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(score in [0, 1] for class 1, predicted class)`` from the output layer's values."""
        out = np.asarray(out, dtype=np.float64)
        if out.shape[-1] == 2:
            margin = out[:, 1] - out[:, 0]
            return np.clip(0.5 + margin / 2, 0, 1), (margin > 0).astype(np.int64)
        thr = network.threshold(self.settings)
        span = 0.5 if thr == 0.5 else 1.0
        v = out[:, 0]
        return np.clip(0.5 + (v - thr) / (2 * span), 0, 1), (v > thr).astype(np.int64)

    def _outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Each neuron layer's output for ``x`` (inference mode), the last being the model's output."""
        wanted = {id(layer) for layer in self.neuron_layers}
        found = []
        h = x
        with np.errstate(all="ignore"):
            for layer in self.model.layers:
                h = np.asarray(layer(h, training=False))
                if id(layer) in wanted:
                    found.append(h)
        return found

    def _loss(self, y, out) -> float | None:
        with np.errstate(all="ignore"):
            return _finite(np.mean(np.asarray(self._loss_fn(y, out.astype("float32")), dtype=np.float64)))

    def _evaluate(self) -> dict:
        with COMPUTE_LOCK, self._watch():
            out_train = self._outputs(self.x_train)[-1]
            out_test = self._outputs(self.x_test)[-1]
            grid_outs = self._outputs(self.grid)
            grid_out = grid_outs[-1]
            neuron_outs = [a.reshape(BOUNDARY_GRID, BOUNDARY_GRID, -1)[::NEURON_STRIDE, ::NEURON_STRIDE].reshape(
                NEURON_GRID * NEURON_GRID, -1) for a in grid_outs]
            now = time.monotonic()
            if self._health_at is None or now - self._health_at >= self.health_every:  # live, but not every frame
                self._health_last, self._health_at = self._health(), now
            health = {**self._health_last, "warnings": list(self._health_last["warnings"])}
            losses = self._loss(self.y_train, out_train), self._loss(self.y_test, out_test)
            if losses[0] is None:  # the doctor names the first layer and op that went NaN/inf
                found = locate_nonfinite(self.model, self.x_train[:HEALTH_ROWS], self.y_train[:HEALTH_ROWS])
                if found:
                    self._notes.append(f"The training loss is not finite: {found['message']}.")
        acc_train = float(np.mean(self._scores(out_train)[1] == self.labels_train))
        acc_test = float(np.mean(self._scores(out_test)[1] == self.labels_test))
        record = {"epoch": round(self.epoch, 3), "train_loss": losses[0], "test_loss": losses[1],
                  "train_accuracy": acc_train, "test_accuracy": acc_test}
        self.history.append(record)
        neurons = []
        for out in neuron_outs:
            layer = []
            for unit in range(out.shape[1]):
                v = np.nan_to_num(out[:, unit].astype(np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
                # One fixed scale for all (as TF Playground): -1 orange, 0 white, +1 blue; so a dead unit is blank.
                layer.append({"min": _finite(v.min()), "max": _finite(v.max()), "image": _u8(0.5 + np.tanh(v) / 2)})
            neurons.append(layer)
        health["warnings"] = list(dict.fromkeys(health["warnings"] + self._notes))
        self._notes = []
        return {**record, "boundary": _u8(self._scores(grid_out)[0]), "neurons": neurons, "health": health}

    @contextlib.contextmanager
    def _watch(self):
        """Collect the warnings lamina raises while computing (the doctor's and the activations' own words,
        e.g. softmax over one unit) for the page, instead of printing them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        self._notes += [str(w.message) for w in caught]

    def _health(self) -> dict:
        """The doctor's statistics per layer and the warnings it would raise now (its own words)."""
        self.doctor._warned = set()  # report what holds now, every frame, not once per fit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = self.doctor.measure(int(self.epoch))
        layers = []
        for name, e in record["layers"].items():
            layers.append({"layer": name, "activation": e["activation"], "dead": e.get("dead"),
                           "saturated": e.get("saturated"), "paired_with_loss": bool(e.get("paired_with_loss")),
                           "grad_norm": _finite(record["grad_norm"].get(name, math.nan))})
        for name, value in record["grad_norm"].items():  # weighted layers without an activation of their own
            if name not in record["layers"]:
                layers.append({"layer": name, "activation": None, "dead": None, "saturated": None,
                               "grad_norm": _finite(value)})
        order = {layer.name: i for i, layer in enumerate(self.model.layers)}
        layers.sort(key=lambda e: order.get(e["layer"], len(order)))  # model order
        # The doctor's HealthWarnings, and what the activations themselves warn while it measures.
        return {"layers": layers, "warnings": [str(w.message) for w in caught]}

    # ------------------------------------------------------------------ what the page reads

    def frame(self) -> dict:
        return {"type": "frame", "step": len(self.history) - 1, **self._last,
                "history": self.history[-1:], "grid": BOUNDARY_GRID, "neuron_grid": NEURON_GRID}

    def setup(self) -> dict:
        """Everything the page needs once per network: points, lint findings, curves, the whole history."""
        def pts(points, labels):
            return [[round(float(a), 4), round(float(b), 4), int(c)] for (a, b), c in zip(points, labels)]

        return {"type": "setup", "settings": self.settings.to_dict(), "limit": data.LIMIT,
                "train": pts(self.points_train, self.labels_train), "test": pts(self.points_test, self.labels_test),
                "lint": self.lint, "curves": self.curves, "layers": [layer.name for layer in self.neuron_layers],
                "frame": {**self.frame(), "history": self.history}}
