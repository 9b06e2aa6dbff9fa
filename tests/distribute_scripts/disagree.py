"""Run under `mpiexec -n 2`: ranks that call fit() with different settings must all stop at once.

    disagree.py DIR          each case gives rank 1 one setting that differs from rank 0's; every
                             rank records the DistributedError it caught (or that it trained) in
                             DIR/disagree{rank}.json, then both ranks train one agreeing fit
    disagree.py DIR raise    one case, uncaught: the job must exit non-zero, promptly

The strategy's timeout (60 s) is only a backstop: a clear error comes from the check at the start
of fit(), before any collective could wait for a rank that trains differently.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import lamina
from lamina.distribute import DistributedError, MPIStrategy

OUT = Path(sys.argv[1])
strategy = MPIStrategy(timeout=60)
rank = strategy.rank
data = np.random.default_rng(0)
X = data.normal(size=(64, 6)).astype("float32")
Y = (X[:, 0] > 0).astype("float32")[:, None]

# name -> settings of rank 1 that differ from the defaults rank 0 uses
CASES = {
    "learning_rate": {"lr": 0.02},
    "optimizer": {"optimizer": "adam"},
    "loss": {"loss": "mae"},
    "metrics": {"metrics": ["mae"]},
    "activation": {"activation": "tanh"},
    "batch_size": {"batch_size": 16},
    "data_length": {"n": 48},
    "epochs": {"epochs": 3},
}


def batches(batch_size):
    """Each rank's own stream of batches (a stream is not sharded): four per epoch, forever."""
    while True:
        for i in range(4):
            rows = slice((2 * i + rank) * batch_size, (2 * i + rank + 1) * batch_size)
            yield X[rows], Y[rows]


def train(lr=0.01, optimizer="sgd", loss="mse", metrics=(), activation="relu", batch_size=8, n=64, epochs=2,
          stream=False):
    lamina.utils.set_random_seed(3)
    model = lamina.Sequential([lamina.Input((6,)), lamina.layers.Dense(4, activation=activation),
                               lamina.layers.Dense(1)])
    opt = lamina.optimizers.SGD(learning_rate=lr) if optimizer == "sgd" else lamina.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=loss, metrics=list(metrics))
    if stream:
        model.fit(batches(batch_size), steps_per_epoch=4, epochs=epochs, verbose=0, strategy=strategy)
    else:
        model.fit(X[:n], Y[:n], batch_size=batch_size, epochs=epochs, verbose=0, strategy=strategy)
    return model


if sys.argv[2:] == ["raise"]:
    train(**(CASES["learning_rate"] if rank == 1 else {}))
    print(f"rank {rank}: UNEXPECTED: training finished", flush=True)
    sys.exit(0)



def run_case(name, settings):
    start = time.monotonic()
    try:
        model = train(**(settings if rank == 1 else {}))
        result[name] = {"error": None, "weights": [w.tolist() for w in model.get_weights()]}
    except DistributedError as exc:
        result[name] = {"error": str(exc)}
    result[name]["seconds"] = time.monotonic() - start


result = {}
for name, settings in CASES.items():
    run_case(name, settings)

# After those errors the strategy still works: a fit on which the ranks agree trains in step.
result["agree"] = [w.tolist() for w in train().get_weights()]
# Arrays on rank 0, a stream on rank 1; then a stream on both, which must not trip over the shuffle
# seed that rank 0 drew for the failed fit (only array fits share one).
run_case("stream", {"stream": True})
result["agree_stream"] = [w.tolist() for w in train(stream=True).get_weights()]
(OUT / f"disagree{rank}.json").write_text(json.dumps(result))
