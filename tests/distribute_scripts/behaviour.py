"""Run under `mpiexec -n 2`: who prints, which callbacks each rank keeps, a synchronised NaN stop,
and the learning-rate scaling helper. Each rank writes behaviour{rank}.json to argv[1]."""

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

import lamina
from lamina import callbacks as cbs
from lamina.distribute import MPIStrategy

OUT = Path(sys.argv[1])
strategy = MPIStrategy(comm=MPI.COMM_WORLD, timeout=10)
rank = strategy.rank
result = {"rank": rank, "world": strategy.world_size, "replicas": strategy.num_replicas_in_sync,
          "chief": strategy.is_chief, "shard": list(strategy.shard)}

# Only rank 0 prints progress.
data = np.random.default_rng(1)
x = data.normal(size=(64, 6)).astype("float32")
y = (x[:, 0] > 0).astype("float32")[:, None]
lamina.utils.set_random_seed(2)
model = lamina.Sequential([lamina.Input((6,)), lamina.layers.Dense(4, activation="relu"),
                           lamina.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="sgd", loss="binary_crossentropy")
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    model.fit(x, y, batch_size=8, epochs=2, verbose=1, strategy=strategy)
result["printed_chars"] = len(printed.getvalue())

# Which callbacks each rank keeps.
kept = strategy.filter_callbacks([
    cbs.History(), cbs.ProgbarLogger(), cbs.ModelCheckpoint(str(OUT / "unused.keras")),
    cbs.CSVLogger(str(OUT / "unused.csv")), cbs.EarlyStopping(verbose=1), cbs.TerminateOnNaN(),
])
result["kept"] = [type(c).__name__ for c in kept]
result["early_stopping_verbose"] = [c.verbose for c in kept if isinstance(c, cbs.EarlyStopping)]

# A NaN loss on rank 1 only, from epoch 1 batch 2: both ranks must stop at that same batch.
factor = {"value": 1.0}


def scaled_mse(y_true, y_pred):
    return lamina.ops.mean(lamina.ops.square(y_true - y_pred)) * factor["value"]


class PoisonRank1(cbs.Callback):
    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.last = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if rank == 1 and (self.epoch, batch) == (1, 2):
            factor["value"] = math.nan

    def on_train_batch_end(self, batch, logs=None):
        self.last = [self.epoch, batch]


lamina.utils.set_random_seed(2)
nan_model = lamina.Sequential([lamina.Input((6,)), lamina.layers.Dense(1)])
nan_model.compile(optimizer="sgd", loss=scaled_mse)
poison = PoisonRank1()
with contextlib.redirect_stdout(io.StringIO()):
    nan_model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[poison, cbs.TerminateOnNaN()],
                  strategy=strategy)
result["nan_stop"] = poison.last
result["nan_weights_finite"] = bool(all(np.isfinite(w).all() for w in nan_model.get_weights()))

# The in-place flat form: rank 0 holds 3 samples of gradient 1, rank 1 one sample of gradient 2.
flat = np.full(6, rank + 1.0, dtype="float32")
strategy.reduce_flat_gradients(flat, [3, 1][rank])
result["flat_avg"] = flat.tolist()
flat = np.full(6, rank + 1.0, dtype="float32")
strategy.reduce_flat_gradients(flat, [3, 0][rank])  # rank 1's share is empty
result["flat_avg_empty"] = flat.tolist()

# The linear scaling helper.
result["scaled_lr"] = strategy.scale_learning_rate(0.01)
opt = lamina.optimizers.SGD(learning_rate=0.1)
result["scaled_opt_lr"] = float(strategy.scale_learning_rate(opt).learning_rate)  # a Variable, as in Keras
(OUT / f"behaviour{rank}.json").write_text(json.dumps(result))
