"""lamina.distribute: data-parallel training over MPI.

The multi-process tests launch ``mpiexec -n 2 python tests/distribute_scripts/<script>.py DIR`` and
check what the ranks wrote to DIR. They need mpi4py and an ``mpiexec`` of the same MPI (the ``mpi``
extra: ``pip install mpi4py mpich``) and are skipped, with the reason, where those are absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).parent / "distribute_scripts"
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None


def _find_mpiexec() -> str | None:
    # The mpich wheel installs mpiexec next to the interpreter; prefer it over another MPI's on PATH.
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    return shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
needs_mpi4py = pytest.mark.skipif(not HAVE_MPI4PY,
                                  reason="mpi4py is not installed (pip install mpi4py mpich)")
needs_mpiexec = pytest.mark.skipif(
    not HAVE_MPI4PY or MPIEXEC is None,
    reason="multi-process tests need mpi4py and mpiexec (pip install mpi4py mpich)",
)


def _launch(script: str, *args: str, mpmd_rank1_wrapper: bool = False, timeout: float = 60,
            env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    full_env.update(env or {})
    run = [sys.executable, str(SCRIPTS / script), *args]
    if mpmd_rank1_wrapper:
        # Rank 1 runs under a shell that outlives it: when it dies the launcher sees nothing, as when
        # a node drops off the network, so rank 0 must notice by itself.
        shell = " ".join(run) + "; sleep 60"
        cmd = [MPIEXEC, "-n", "1", *run, ":", "-n", "1", "sh", "-c", shell]
    else:
        cmd = [MPIEXEC, "-n", "2", *run]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    return proc, time.monotonic() - start


def _check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"mpiexec failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ---------------------------------------------------------------------------- in this process


def test_import_does_not_load_mpi4py():
    code = ("import sys, lamina, lamina.distribute; "
            "from lamina.distribute import MPIStrategy, DistributedError; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_distributed_error_is_a_runtime_error():
    from lamina.distribute import DistributedError

    assert issubclass(DistributedError, RuntimeError)


@pytest.mark.parametrize("kwargs, match", [
    ({"timeout": -1}, "timeout"), ({"timeout": 0}, "timeout"), ({"timeout": "5"}, "timeout"),
    ({"timeout": float("inf")}, "timeout"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"),
])
def test_bad_arguments(kwargs, match):
    from lamina.distribute import MPIStrategy

    with pytest.raises(ValueError, match=f"`{match}`.*Received"):
        MPIStrategy(**kwargs)


def test_missing_mpi4py_names_the_extra(monkeypatch):
    from lamina.distribute import MPIStrategy

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` fail
    with pytest.raises(ImportError, match=r'lamina\[mpi\]'):
        MPIStrategy()


@needs_mpi4py
def test_single_process_strategy():
    import lamina
    from lamina.distribute import MPIStrategy, current

    s = MPIStrategy(timeout=30)
    assert (s.rank, s.world_size, s.num_replicas_in_sync, s.is_chief, s.shard) == (0, 1, 1, True, (0, 1))
    assert current() is None
    with s.scope() as inner:
        assert inner is s and current() is s
    assert current() is None
    assert s.block_of(7) == slice(0, 7)
    with pytest.raises(TypeError, match="scale_learning_rate.*Received"):
        s.scale_learning_rate("adam")
    sched = lamina.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    with pytest.raises(TypeError, match="schedule"):
        s.scale_learning_rate(lamina.optimizers.SGD(learning_rate=sched))
    with pytest.raises(TypeError, match="communicator"):
        MPIStrategy(comm="world")

    # One rank: the "average" of one gradient is that gradient (None -> zeros).
    v1 = lamina.Variable(np.zeros((2, 3), "float32"))
    v2 = lamina.Variable(np.zeros((3,), "float32"))
    g1 = np.arange(6, dtype="float32").reshape(2, 3)
    out = s.reduce_gradients([g1, None], [v1, v2], 5)
    np.testing.assert_allclose(out[0], g1, rtol=1e-7)
    np.testing.assert_array_equal(out[1], np.zeros(3, "float32"))
    assert out[0].dtype == np.float32
    assert s.collective_stats()["gradient_allreduce_calls"] == 1
    flat = np.array([1.5, -2.0, 0.0], "float32")
    s.reduce_flat_gradients(flat, 4)
    np.testing.assert_allclose(flat, [1.5, -2.0, 4.0])
    with pytest.raises(ValueError, match="flat.*Received"):
        s.reduce_flat_gradients(np.zeros((2, 2), "float32"), 1)

    # Gathering predictions: arrays, lists and dicts, concatenated in order.
    a, b = np.ones((2, 3), "float32"), np.zeros((1, 3), "float32")
    np.testing.assert_array_equal(s.gather_blocks([a, b]), np.concatenate([a, b]))
    got = s.gather_blocks([[a, a[:, :1]], [b, b[:, :1]]])
    assert [g.shape for g in got] == [(3, 3), (3, 1)]
    got = s.gather_blocks([{"p": a}, {"p": b}])
    assert list(got) == ["p"] and got["p"].shape == (3, 3)
    assert s.gather_blocks([]).shape == (0,)


@needs_mpi4py
def test_launcher_mismatch_is_explained(monkeypatch):
    from lamina.distribute import DistributedError, MPIStrategy

    monkeypatch.setenv("PMI_SIZE", "4")  # "started 4 processes" but this process sees a world of 1
    with pytest.raises(DistributedError, match="different MPI library"):
        MPIStrategy()


def test_fit_settings_ignore_names_and_seeds_but_not_hyper_parameters():
    """What the start-of-fit agreement check compares, without MPI: auto-numbered names, initializers
    and per-rank seeds may differ; a layer setting may not; the message groups ranks by value."""
    import lamina
    from lamina.distribute import _agreement
    from lamina.models.data import ArrayBatches

    def table(seed, rate=0.5):
        model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2, kernel_initializer=
                                   lamina.initializers.GlorotUniform(seed=seed)),
                                   lamina.layers.Dropout(rate, seed=seed)])
        model.compile(optimizer=lamina.optimizers.SGD(learning_rate=0.01), loss="mse")
        train = ArrayBatches(np.zeros((10, 3), "float32"), np.zeros((10, 2), "float32"), batch_size=4)
        return _agreement.fit_settings(model, train, 4, 2, 0, None)

    a, b, c = table(seed=1), table(seed=2), table(seed=1, rate=0.25)
    assert a == b and _agreement.digest(a) == _agreement.digest(b)  # other names, initializer seeds
    assert _agreement.digest(a) != _agreement.digest(c)
    assert a["optimizer.learning_rate"] == "0.01" and a["fit.steps_per_epoch"] == "3"
    assert _agreement.differences([a, c, a]) == ["model.layers[1].rate = 0.5 on ranks [0, 2], 0.25 on rank 1"]


# ---------------------------------------------------------------------------- under mpiexec -n 2


@needs_mpiexec
def test_two_ranks_match_one_process_with_double_batch(tmp_path):
    """fit (3 epochs, shuffled, short last batch), evaluate and predict: 2 ranks x b == 1 x 2b."""
    proc, _ = _launch("equivalence.py", str(tmp_path))
    _check_ok(proc)
    r0, r1, ref = (np.load(tmp_path / f"{n}.npz") for n in ("rank0", "rank1", "reference"))
    weights = sorted(k for k in ref.files if k.startswith("arr_"))
    assert len(weights) == 6
    for k in weights:
        np.testing.assert_array_equal(r0[k], r1[k])  # ranks never drift apart
        assert _rel_err(r0[k], ref[k]) < 1e-5, k
    for k in ("hist", "ev", "tiny", "fresh_ev", "pred", "multi0", "multi1", "fresh_one"):
        np.testing.assert_array_equal(r0[k], r1[k])  # every rank gets the full, reduced result
        np.testing.assert_allclose(r0[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert r0["pred"].shape == (37, 3) and r0["fresh_one"].shape == (1, 3)
    assert int(r0["stats"]) == 3 * 4  # one gradient allreduce per global step (4 steps/epoch)


@needs_mpiexec
def test_chief_prints_callbacks_split_and_nan_stop_is_synchronised(tmp_path):
    proc, _ = _launch("behaviour.py", str(tmp_path))
    _check_ok(proc)
    r0, r1 = (json.loads((tmp_path / f"behaviour{r}.json").read_text()) for r in (0, 1))
    assert (r0["chief"], r1["chief"]) == (True, False)
    assert r0["shard"] == [0, 2] and r1["shard"] == [1, 2] and r0["replicas"] == 2
    assert r0["printed_chars"] > 0 and r1["printed_chars"] == 0
    assert r0["kept"] == ["History", "ProgbarLogger", "ModelCheckpoint", "CSVLogger", "EarlyStopping",
                          "SyncedTerminateOnNaN"]
    assert r1["kept"] == ["History", "EarlyStopping", "SyncedTerminateOnNaN"]
    assert r0["early_stopping_verbose"] == [1] and r1["early_stopping_verbose"] == [0]
    # The NaN appears on rank 1 only; both ranks stop after that very batch (no hang).
    assert r0["nan_stop"] == r1["nan_stop"] == [1, 2]
    for r in (r0, r1):
        assert r["flat_avg"] == pytest.approx([1.25] * 5 + [4.0])  # (3*1 + 1*2) / 4; last slot: count
        assert r["flat_avg_empty"] == pytest.approx([1.0] * 5 + [3.0])
    assert r0["scaled_lr"] == pytest.approx(0.02) and r0["scaled_opt_lr"] == pytest.approx(0.2)


@needs_mpiexec
def test_killed_rank_fails_fast_and_training_resumes_from_checkpoint(tmp_path):
    timeout = 3.0
    proc, elapsed = _launch("fault.py", str(tmp_path), "kill", mpmd_rank1_wrapper=True,
                            env={"LAMINA_TEST_TIMEOUT": str(timeout)})
    assert (tmp_path / "rank1_kill").exists()  # rank 1 did reach its SIGKILL
    assert proc.returncode != 0
    assert "DistributedError" in proc.stderr, proc.stderr
    assert f"gradient allreduce on rank 0 of 2 failed: it did not complete within timeout={timeout:g} s" \
        in proc.stderr, proc.stderr
    assert "UNEXPECTED" not in proc.stdout
    assert elapsed < timeout + 10  # bounded: startup + two epochs + the timeout + abort
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.keras")) == ["ckpt-01.keras", "ckpt-02.keras"]

    proc, _ = _launch("fault.py", str(tmp_path), "resume")
    _check_ok(proc)
    r0, r1 = (np.load(tmp_path / f"resumed{r}.npz") for r in (0, 1))
    for k in r0.files:
        np.testing.assert_array_equal(r0[k], r1[k])
    assert int(r0["done"]) == 2 and len(r0["loss"]) == 3  # epochs 3..5
    assert np.all(np.isfinite(r0["loss"])) and r0["loss"][-1] < r0["loss"][0]
    assert int(r0["iterations"]) == 5 * 8  # the optimizer state came back with the checkpoint
    assert (tmp_path / "ckpt-05.keras").exists()


@needs_mpiexec
def test_hung_rank_times_out_with_a_clear_error(tmp_path):
    timeout = 3.0
    proc, elapsed = _launch("fault.py", str(tmp_path), "hang", env={"LAMINA_TEST_TIMEOUT": str(timeout)})
    assert (tmp_path / "rank1_hang").exists()
    assert proc.returncode != 0
    assert f"did not complete within timeout={timeout:g} s" in proc.stderr, proc.stderr
    assert "gradient allreduce" in proc.stderr
    assert timeout <= elapsed < timeout + 10  # bounded: the hung rank is aborted with the job


@needs_mpiexec
def test_ranks_that_disagree_stop_together_with_one_clear_error(tmp_path):
    """Different optimizer, learning rate, loss, metrics, layer settings, batch size, data length or
    epochs on rank 1: both ranks raise the same DistributedError naming the setting and each rank's
    value, at once (not after the strategy's 5 s timeout), and the strategy stays usable."""
    proc, _ = _launch("disagree.py", str(tmp_path))
    _check_ok(proc)
    r0, r1 = (json.loads((tmp_path / f"disagree{r}.json").read_text()) for r in (0, 1))
    expected = {
        "learning_rate": ["optimizer.learning_rate = 0.01 on rank 0, 0.02 on rank 1"],
        "optimizer": ["optimizer = SGD on rank 0, Adam on rank 1"],
        "loss": ["loss = LossFunctionWrapper(fn=mean_squared_error", "on rank 0, LossFunctionWrapper("
                 "fn=mean_absolute_error"],
        "metrics": ["metrics = [] on rank 0, [mae] on rank 1"],
        "activation": ["model.layers[0].activation = relu on rank 0, tanh on rank 1"],
        "batch_size": ["fit.batch_size = 8 on rank 0, 16 on rank 1",
                       "fit.steps_per_epoch = 4 on rank 0, 2 on rank 1"],
        "data_length": ["fit.samples = 64 on rank 0, 48 on rank 1"],
        "epochs": ["fit.epochs = 2 on rank 0, 3 on rank 1"],
        "stream": ["fit.data = arrays on rank 0, an iterable of batches on rank 1"],
    }
    for case, parts in expected.items():
        message = r0[case]["error"]
        assert message is not None, f"{case}: the ranks trained although they disagree"
        assert r1[case]["error"] == message, case  # the same error on every rank
        assert message.startswith("MPIStrategy: the ranks disagree") and "Received: " in message, message
        for part in parts:
            assert part in message, f"{case}: {part!r} not in {message!r}"
        assert max(r0[case]["seconds"], r1[case]["seconds"]) < 30, case  # far below the 60 s timeout: no wait
    assert r0["agree"] == r1["agree"] and r0["agree_stream"] == r1["agree_stream"]


@needs_mpiexec
def test_disagreeing_ranks_exit_nonzero_without_waiting(tmp_path):
    proc, elapsed = _launch("disagree.py", str(tmp_path), "raise")
    assert proc.returncode != 0
    # Both ranks stop, each with the same error, and neither waited inside a collective.
    assert proc.stderr.count("DistributedError: MPIStrategy: the ranks disagree") == 2, proc.stderr
    assert "optimizer.learning_rate = 0.01 on rank 0, 0.02 on rank 1" in proc.stderr
    assert "UNEXPECTED" not in proc.stdout and "did not complete within" not in proc.stderr
    assert elapsed < 30
