"""Run under `mpiexec -n 2`: a rank fails mid-epoch; then a resumed run from the last checkpoint.

    fault.py DIR kill     rank 1 SIGKILLs itself in epoch 3; rank 0 must exit with DistributedError
                          (launch rank 1 under `sh -c "python ...; sleep 60"` so that the launcher
                          does not see the death and kill rank 0 itself: rank 0 must find out alone)
    fault.py DIR hang     rank 1 stops responding in epoch 3; rank 0 must time out (timeout=TIMEOUT s)
    fault.py DIR resume   load DIR's newest checkpoint and train the remaining epochs

ModelCheckpoint writes DIR/ckpt-{epoch}.keras on rank 0 only. `resume` writes DIR/resumed{rank}.npz.
"""

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import lamina
from lamina.distribute import MPIStrategy

OUT = Path(sys.argv[1])
MODE = sys.argv[2]
TIMEOUT = float(os.environ.get("LAMINA_TEST_TIMEOUT", "3"))
EPOCHS = 5
FAIL_EPOCH, FAIL_BATCH = 2, 3

data = np.random.default_rng(0)
x = data.normal(size=(256, 12)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("float32")[:, None]

strategy = MPIStrategy(timeout=TIMEOUT)


class FailOnRank1(lamina.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if strategy.rank == 1 and (self.epoch, batch) == (FAIL_EPOCH, FAIL_BATCH):
            sys.stdout.flush()
            (OUT / f"rank1_{MODE}").write_text("x")
            if MODE == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)  # "hang": alive but never joins the allreduce again


checkpoint = lamina.callbacks.ModelCheckpoint(str(OUT / "ckpt-{epoch:02d}.keras"))
if MODE in ("kill", "hang"):
    lamina.utils.set_random_seed(3)
    model = lamina.Sequential([lamina.Input((12,)), lamina.layers.Dense(8, activation="relu"),
                               lamina.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    print(f"rank {strategy.rank}: training", flush=True)
    model.fit(x, y, batch_size=16, epochs=EPOCHS, verbose=0, callbacks=[checkpoint, FailOnRank1()],
              strategy=strategy)
    print(f"rank {strategy.rank}: UNEXPECTED: training finished", flush=True)
else:
    newest = sorted(OUT.glob("ckpt-*.keras"))[-1]
    done = int(newest.stem.split("-")[1])  # epochs completed when it was written
    model = lamina.saving.load_model(newest)
    start = [w.copy() for w in model.get_weights()]
    hist = model.fit(x, y, batch_size=16, epochs=EPOCHS, initial_epoch=done, verbose=0,
                     callbacks=[checkpoint], strategy=strategy)
    np.savez(OUT / f"resumed{strategy.rank}.npz", *model.get_weights(), done=done,
             loss=np.array(hist.history["loss"]), acc=np.array(hist.history["accuracy"]),
             iterations=int(np.asarray(model.optimizer.iterations)),
             moved=sum(float(np.abs(a - b).sum()) for a, b in zip(model.get_weights(), start)))
