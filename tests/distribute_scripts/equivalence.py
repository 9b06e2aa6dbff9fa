"""Run under `mpiexec -n 2`: data-parallel fit/evaluate/predict vs one process with batch 2b.

Each rank writes rank{r}.npz to the folder given as argv[1]; rank 0 also writes reference.npz, a
plain single-process run (no strategy) with batch 2b on the same permutation stream.
"""

import sys
from pathlib import Path

import numpy as np

import lamina
from lamina.distribute import MPIStrategy

OUT = Path(sys.argv[1])
B = 16  # per-rank batch
SHUFFLE_SEED = 1234
EPOCHS = 3


def build(init_seed: int):
    lamina.utils.set_random_seed(init_seed)
    model = lamina.Sequential([
        lamina.Input((20,)),
        lamina.layers.Dense(16, activation="relu"),
        lamina.layers.Dense(8, activation="tanh"),
        lamina.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=lamina.optimizers.Adam(learning_rate=1e-2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


data = np.random.default_rng(0)
# 100 samples = 3 global steps of 32, then 4: rank 1's share of the last step is empty.
x = data.normal(size=(100, 20)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
xv = data.normal(size=(37, 20)).astype("float32")
yv = (xv[:, 0] + xv[:, 1] > 0).astype("int64")

strategy = MPIStrategy(seed=SHUFFLE_SEED)
rank = strategy.rank
assert strategy.world_size == 2, f"expected 2 ranks, got {strategy.world_size}"
with strategy.scope():
    model = build(init_seed=7 + 100 * rank)  # different on rank 1: rank 0's weights must be broadcast
hist = model.fit(x, y, batch_size=B, epochs=EPOCHS, shuffle=True, verbose=0, validation_data=(xv, yv))
ev = model.evaluate(xv, yv, batch_size=8, verbose=0, return_dict=True)
pred = model.predict(xv, batch_size=8, verbose=0)
tiny = model.evaluate(xv[:5], yv[:5], batch_size=8, verbose=0, return_dict=True)  # rank 1's block is empty
with strategy.scope():  # fresh model, no fit: rank 1 never builds its metrics, then receives them
    fresh = build(init_seed=11 + 100 * rank)
fresh_ev = fresh.evaluate(xv[:5], yv[:5], batch_size=8, verbose=0, return_dict=True)
fresh_one = fresh.predict(xv[:1], verbose=0)  # rank 0's block is empty
inp = lamina.Input((20,))
hidden = lamina.layers.Dense(4, activation="relu")(inp)
with strategy.scope():
    lamina.utils.set_random_seed(5 + rank)
    multi = lamina.Model(inp, [lamina.layers.Dense(2)(hidden), lamina.layers.Dense(1)(hidden)])
    multi.compile(optimizer="sgd", loss="mse")
multi_pred = multi.predict(xv, batch_size=4, verbose=0)
np.savez(OUT / f"rank{rank}.npz", *model.get_weights(), pred=pred, multi0=multi_pred[0], multi1=multi_pred[1],
         fresh_ev=np.array([fresh_ev[k] for k in sorted(fresh_ev)]), fresh_one=fresh_one,
         hist=np.array([hist.history[k] for k in sorted(hist.history)]),
         ev=np.array([ev[k] for k in sorted(ev)]), tiny=np.array([tiny[k] for k in sorted(tiny)]),
         stats=np.array(strategy.collective_stats()["gradient_allreduce_calls"]))

if rank == 0:
    ref = build(init_seed=7)
    lamina.utils.set_random_seed(SHUFFLE_SEED)  # the permutation stream the strategy used
    ref_hist = ref.fit(x, y, batch_size=2 * B, epochs=EPOCHS, shuffle=True, verbose=0,
                       validation_data=(xv, yv))
    ref_ev = ref.evaluate(xv, yv, batch_size=8, verbose=0, return_dict=True)
    ref_tiny = ref.evaluate(xv[:5], yv[:5], batch_size=8, verbose=0, return_dict=True)
    fresh_ref = build(init_seed=11)
    fresh_ref_ev = fresh_ref.evaluate(xv[:5], yv[:5], batch_size=8, verbose=0, return_dict=True)
    multi._distribution = None  # the same (rank 0) weights, predicted in this process alone
    multi_ref = multi.predict(xv, batch_size=4, verbose=0)
    np.savez(OUT / "reference.npz", *ref.get_weights(), pred=ref.predict(xv, verbose=0),
             multi0=multi_ref[0], multi1=multi_ref[1], fresh_one=fresh_ref.predict(xv[:1], verbose=0),
             fresh_ev=np.array([fresh_ref_ev[k] for k in sorted(fresh_ref_ev)]),
             hist=np.array([ref_hist.history[k] for k in sorted(ref_hist.history)]),
             ev=np.array([ref_ev[k] for k in sorted(ref_ev)]),
             tiny=np.array([ref_tiny[k] for k in sorted(ref_tiny)]))
