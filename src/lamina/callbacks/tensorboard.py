"""``TensorBoard``: scalars, weight and activation histograms and the layer graph, as TensorBoard event files.

The files are written by ``tensorboardX`` (the ``tensorboard`` extra: ``pip install 'lamina[tensorboard]'``),
imported only when a ``TensorBoard`` callback is made. Layout, as Keras writes it: ``<log_dir>/train`` and
``<log_dir>/validation``, one run each in TensorBoard.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np

from lamina.callbacks._io import get_learning_rate
from lamina.callbacks.callback import Callback
from lamina.models import data as data_lib


def _require_tensorboardx() -> None:
    if importlib.util.find_spec("tensorboardX") is None:
        raise ImportError(
            "The TensorBoard callback writes its event files with the `tensorboardX` package, which is not "
            "installed. Install lamina's `tensorboard` extra: pip install 'lamina[tensorboard]' "
            "(or pip install tensorboardX). Received: no module named 'tensorboardX'"
        )


def _check_freq(name: str, value, allowed: tuple = ()) -> None:
    if value in allowed and isinstance(value, str):
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        expected = " or ".join([*(repr(a) for a in allowed), "a non-negative integer"])
        raise ValueError(f"TensorBoard: `{name}` must be {expected}. Received: {name}={value!r}")


def _finite(values) -> np.ndarray:
    """The finite entries of ``values`` as float64 (a histogram of nan/inf has no bins)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


class TensorBoard(Callback):
    """Writes what ``fit`` does as TensorBoard event files under ``log_dir``.

    * Scalars, per epoch: ``epoch_<metric>`` (and ``epoch_learning_rate``) in ``train``, the ``val_``
      metrics as ``epoch_<metric>`` in ``validation``; per batch ``batch_<metric>`` every
      ``update_freq`` batches (``"batch"`` = 1) at the global batch number; after each evaluation
      ``evaluation_<metric>_vs_iterations`` at the optimizer's step count.
    * Every ``histogram_freq`` epochs (0: never): a histogram of each weight (``<weight path>/histogram``)
      and of each layer's output on a sample batch (``<layer name>/activations``): ``activation_data``,
      or else the first ``activation_sample_size`` rows of the training data ``fit`` keeps (array
      data only). Activations need a Sequential or Functional model (a subclassed model has no layer
      graph to walk); nan/inf entries are left out of histograms.
    * ``write_graph``: the layer graph (one node per layer, edges from its inputs) in ``train``.
    * ``write_steps_per_second``: ``epoch_steps_per_second`` and ``batch_steps_per_second``.

    Keras's ``write_images``, ``profile_batch`` and ``embeddings_freq`` are accepted only at their
    off values (lamina has no profiler or embedding projector).

    Args:
        log_dir: the folder for the event files.
        histogram_freq: epochs between histograms (0: none).
        write_graph: write the layer graph.
        write_steps_per_second: log the training speed.
        update_freq: ``"epoch"``, ``"batch"`` or an integer ``n`` (batch scalars every ``n`` batches).
        activation_data: the inputs to compute activation histograms on (a model input).
        activation_sample_size: rows of ``fit``'s data used when ``activation_data`` is None.
    """

    def __init__(self, log_dir="logs", histogram_freq: int = 0, write_graph: bool = True, write_images: bool = False,
                 write_steps_per_second: bool = False, update_freq="epoch", profile_batch=0, embeddings_freq: int = 0,
                 embeddings_metadata=None, activation_data=None, activation_sample_size: int = 32):
        super().__init__()
        _require_tensorboardx()
        _check_freq("histogram_freq", histogram_freq)
        _check_freq("update_freq", update_freq, ("epoch", "batch"))
        if isinstance(activation_sample_size, bool) or not isinstance(activation_sample_size, (int, np.integer)) \
                or activation_sample_size < 1:
            raise ValueError("TensorBoard: `activation_sample_size` must be a positive integer. "
                             f"Received: activation_sample_size={activation_sample_size!r}")
        for name, value in (("write_images", write_images), ("profile_batch", profile_batch),
                            ("embeddings_freq", embeddings_freq), ("embeddings_metadata", embeddings_metadata)):
            if value:
                raise ValueError(f"TensorBoard: lamina does not support `{name}` (no image, profiler or "
                                 f"embedding summaries). Received: {name}={value!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = write_graph
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.activation_data = activation_data
        self.activation_sample_size = int(activation_sample_size)
        self._train_dir = os.path.join(self.log_dir, "train")
        self._val_dir = os.path.join(self.log_dir, "validation")
        self._writers: dict = {}
        self._global_train_batch = 0
        self._epoch_start = self._batch_start = 0.0
        self._epoch_batches = 0
        self._training = False

    # ------------------------------------------------------------------ writers

    def _writer(self, which: str):
        if which not in self._writers:
            from tensorboardX import SummaryWriter  # optional extra (checked at construction)

            self._writers[which] = SummaryWriter(self._train_dir if which == "train" else self._val_dir)
        return self._writers[which]

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()  # flushes
        self._writers = {}

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._training = True
        if self.write_graph:
            self._write_graph()

    def on_train_end(self, logs=None):
        self._training = False
        self._close_writers()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        self._epoch_batches += 1
        if self.write_steps_per_second:
            self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        writer, step = self._writer("train"), self._global_train_batch
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._batch_start
            writer.add_scalar("batch_steps_per_second", 1.0 / elapsed if elapsed > 0 else 0.0, step)
        for name, value in (logs or {}).items():
            if np.ndim(value) == 0:
                writer.add_scalar(f"batch_{name}", float(value), step)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if not logs or optimizer is None or not hasattr(optimizer, "iterations"):
            return
        step = int(np.asarray(getattr(optimizer.iterations, "value", optimizer.iterations)))
        writer = self._writer("validation")
        for name, value in logs.items():
            if np.ndim(value) == 0:
                writer.add_scalar(f"evaluation_{name}_vs_iterations", float(value), step)
        if not self._training:  # a standalone evaluate(): nothing else will close the files
            self._close_writers()

    def on_epoch_end(self, epoch, logs=None):
        self._log_epoch_scalars(epoch, logs or {})
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)
            self._log_activations(epoch)
        for writer in self._writers.values():
            writer.flush()

    # ------------------------------------------------------------------ what is written

    def _log_epoch_scalars(self, epoch: int, logs: dict) -> None:
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "learning_rate"):
            train["learning_rate"] = get_learning_rate(optimizer)
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._epoch_start
            train["steps_per_second"] = self._epoch_batches / elapsed if elapsed > 0 else 0.0
        for which, values in (("train", train), ("validation", val)):
            scalars = {k: v for k, v in values.items() if np.ndim(v) == 0}
            if scalars:
                writer = self._writer(which)
                for name, value in scalars.items():
                    writer.add_scalar(f"epoch_{name}", float(value), epoch)

    def _log_weights(self, epoch: int) -> None:
        writer = self._writer("train")
        for layer in self.model.layers:
            for weight in layer.weights:
                values = _finite(weight.numpy() if hasattr(weight, "numpy") else weight)
                if values.size:
                    writer.add_histogram(f"{weight.path.replace(':', '_')}/histogram", values, epoch)

    def _activation_inputs(self):
        if self.activation_data is not None:
            return self.activation_data
        sample = getattr(self.model, "_fit_sample", None)
        if sample is None:
            return None
        return data_lib.slice_all(sample[0], slice(0, self.activation_sample_size))

    def _log_activations(self, epoch: int) -> None:
        """A histogram of every layer's output on the sample batch, from one inference pass."""
        # lazy: the layer-graph walker lives with the diagnostics, loaded only for histograms
        from lamina.autodiff import stop_recording, unwrap
        from lamina.diagnostics._graph import Graph, flatten_inputs
        from lamina.layers.keras_tensor import flatten

        x = self._activation_inputs()
        graph = Graph(self.model)
        if x is None or not graph.known:
            return
        outputs: dict[str, list] = {}
        calls: dict[str, int] = {}

        def visit(g, args, outs):
            name = g.layer.name
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1:  # a layer called more than once: one histogram per call
                name = f"{name}_call{calls[name]}"
            outputs[name] = [np.asarray(unwrap(o)) for o in flatten(outs[-1])]

        flat = [np.asarray(a, dtype=self.model.dtype) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
                for a in flatten_inputs(self.model, x)]
        with stop_recording(), np.errstate(all="ignore"):
            graph.run(flat, training=False, visit=visit)
        writer = self._writer("train")
        for name, arrays in outputs.items():
            for i, a in enumerate(arrays):
                values = _finite(a) if a.dtype.kind in "biuf" else np.empty(0)
                if values.size:
                    writer.add_histogram(f"{name}/activations" + (f"_{i}" if i else ""), values, epoch)

    def _write_graph(self) -> None:
        """The layer graph as a TensorBoard GraphDef: a node per layer (op: its class), edges from inputs."""
        # lazy: optional extra (tensorboardX's protobuf messages) and the layer-graph walker
        from tensorboardX.proto.attr_value_pb2 import AttrValue
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.graph_pb2 import GraphDef
        from tensorboardX.proto.node_def_pb2 import NodeDef
        from tensorboardX.proto.versions_pb2 import VersionDef

        from lamina.diagnostics._graph import Graph

        graph = Graph(self.model)
        if not graph.known:
            return

        def source(t) -> str:
            history = getattr(t, "_keras_history", None)
            return history[0].name if history is not None else t.name

        nodes = [NodeDef(name=source(t), op="InputLayer",
                         attr={"shape": AttrValue(s=str(tuple(t.shape)).encode())}) for t in graph.inputs]
        produced: dict[int, str] = {}  # id(output tensor) -> its node's name (a shared layer has several)
        for g in graph.nodes:
            inputs = [produced.get(id(t), source(t)) for t in g.node.input_tensors]  # every tensor argument
            name = g.layer.name
            while any(n.name == name for n in nodes):
                name += "_"
            nodes.append(NodeDef(name=name, op=type(g.layer).__name__, input=inputs))
            produced.update({id(t): name for t in g.outputs})
        graph_def = GraphDef(node=nodes, versions=VersionDef(producer=22))
        # tensorboardX's own add_graph traces torch modules only, so the GraphDef event is written directly.
        self._writer("train")._get_file_writer().add_event(Event(graph_def=graph_def.SerializeToString()))
