"""The optional compiled optimizer kernel gives the NumPy path's weights, bit for bit."""

import numpy as np
import pytest

import lamina
from lamina.optimizers import _accel


def _run(monkeypatch, accelerate: bool, n: int = 50000, steps: int = 40):
    monkeypatch.setenv("LAMINA_ACCELERATE", "1" if accelerate else "0")
    rng = np.random.default_rng(0)
    w = lamina.Variable(rng.normal(size=n).astype("float32"))
    opt = lamina.optimizers.Adam(1e-2)
    for i in range(steps):
        # Zero gradients every third step drive moments towards subnormals, as dead units do.
        g = rng.normal(size=n).astype("float32") * (i % 3 != 0)
        opt.apply([g], [w])
    return w.numpy(), [v.numpy() for v in opt.variables]


def test_numba_adam_matches_numpy_bit_for_bit(monkeypatch):
    pytest.importorskip("numba")
    assert _accel.kernel("adam") is not None
    w_np, slots_np = _run(monkeypatch, False)
    w_nb, slots_nb = _run(monkeypatch, True)
    assert np.array_equal(w_np, w_nb)
    for a, b in zip(slots_np, slots_nb):
        assert np.array_equal(a, b)


def test_switch_off_and_small_sizes_use_numpy(monkeypatch):
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert _accel.kernel("adam") is None
    assert _accel.MIN_SIZE > 1000  # tiny models never pay numba's import and compile time


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("yes", True), ("", True), ("0", False),
                                       ("false", False), ("NO", False), ("Off", False)])
def test_the_switch_follows_the_environment_as_it_changes(monkeypatch, value, on):
    """``LAMINA_ACCELERATE`` is read on every check (set, changed or removed while running), case-insensitively."""
    from lamina import accel

    monkeypatch.setenv("LAMINA_ACCELERATE", "0" if on else "1")  # the opposite first: no stale answer
    assert accel.enabled() is (not on)
    if value is None:
        monkeypatch.delenv("LAMINA_ACCELERATE")
    else:
        monkeypatch.setenv("LAMINA_ACCELERATE", value)
    assert accel.enabled() is on
