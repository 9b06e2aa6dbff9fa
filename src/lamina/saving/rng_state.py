"""lamina's global random state in ``metadata.json``: written at save, checked at load, restored on request.

lamina writes the state of its global generator (``lamina.backend.rng().bit_generator.state``) under
``metadata.json``'s ``"lamina"`` key. Loading a model never changes the caller's random stream: the
layers a load builds draw initial weights (overwritten by the file's) from the global generator, so
its state is saved before the build and put back after. Only ``load_model(...,
restore_rng_state=True)`` replaces it with the file's state, to resume training where it stopped.

The state comes from a file, so it is checked in full before use: the generator's name, the exact
keys, every integer's type and range, the key length, and degenerate states (an all-zero MT19937
key, a PCG64 increment that is not odd, an all-zero SFC64 state, or any state whose next draws are
all equal) — such a state would make every new weight constant and Dropout a no-op.
"""

from __future__ import annotations

import contextlib

import numpy as np

from lamina import backend
from lamina.saving.errors import FileFormatError

_U32, _U64, _U128 = 1 << 32, 1 << 64, 1 << 128
_MT_WORDS = 624

# Per generator: the keys of the state dict (top level, then its "state" entry) → (length or None, bound).
# A length means a list of that many integers in [0, bound); None a single integer in [0, bound).
_PCG = {"state": {"state": (None, _U128), "inc": (None, _U128)}, "has_uint32": (None, 2), "uinteger": (None, _U32)}
_LAYOUTS = {
    "PCG64": _PCG,
    "PCG64DXSM": _PCG,
    "MT19937": {"state": {"key": (_MT_WORDS, _U32), "pos": (None, _MT_WORDS + 1)}},
    "Philox": {"state": {"counter": (4, _U64), "key": (2, _U64)}, "buffer": (4, _U64), "buffer_pos": (None, 5),
               "has_uint32": (None, 2), "uinteger": (None, _U32)},
    "SFC64": {"state": {"state": (4, _U64)}, "has_uint32": (None, 2), "uinteger": (None, _U32)},
}


def current_state() -> dict:
    """The global generator's state, JSON-ready (arrays as lists)."""
    state = backend.rng().bit_generator.state
    return _json_ready(state)


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _check_int(where: str, value, bound: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{where}' must be an integer. Received: {value!r:.80}")
    if not 0 <= value < bound:
        raise ValueError(f"'{where}' must be in [0, {bound}). Received: {value}")


def _check_layout(where: str, state, layout: dict, top: bool) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"'{where}' must be a dict. Received: {type(state).__name__}")
    expected = set(layout) | ({"bit_generator"} if top else set())
    if set(state) != expected:
        raise ValueError(f"'{where}' must have exactly the keys {sorted(expected)}. Received: {sorted(state)}")
    for key, spec in layout.items():
        value, path = state[key], f"{where}.{key}"
        if isinstance(spec, dict):
            _check_layout(path, value, spec, top=False)
            continue
        length, bound = spec
        if length is None:
            _check_int(path, value, bound)
            continue
        if not isinstance(value, list) or len(value) != length:
            got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
            raise ValueError(f"'{path}' must be a list of {length} integers. Received: {got}")
        for i, item in enumerate(value):
            _check_int(f"{path}[{i}]", item, bound)


def _check_not_degenerate(name: str, state: dict) -> None:
    inner = state["state"]
    if name.startswith("PCG64") and inner["inc"] % 2 == 0:
        raise ValueError(f"its PCG64 increment {inner['inc']} is even; every seeded state has an odd one")
    # MT19937 uses only the top bit of key[0]: with it and the other 623 words zero the generator is stuck.
    if name == "MT19937" and not (inner["key"][0] & 0x80000000) and not any(inner["key"][1:]):
        raise ValueError("its MT19937 key is all zeros, which yields only zeros")
    if name == "SFC64" and not any(inner["state"][:3]):
        raise ValueError("its SFC64 state words are all zero")


def parse(state, filename) -> np.random.Generator:
    """A generator in the saved ``state``, checked in full (nothing global changes here).

    Raises :class:`FileFormatError` naming ``filename`` for any malformed or degenerate state.
    """
    try:
        if not isinstance(state, dict):
            raise ValueError(f"it must be a dict. Received: {type(state).__name__}")
        name = state.get("bit_generator")
        if name not in _LAYOUTS:
            raise ValueError(f"unknown bit generator {name!r:.80}; expected one of {sorted(_LAYOUTS)}")
        _check_layout("rng_state", state, _LAYOUTS[name], top=True)
        _check_not_degenerate(name, state)
        gen = np.random.Generator(getattr(np.random, name)())
        gen.bit_generator.state = state
        probe = np.random.Generator(getattr(np.random, name)())
        probe.bit_generator.state = gen.bit_generator.state
        if len(set(probe.integers(0, 1 << 62, 8).tolist())) == 1:
            raise ValueError("its next draws are all equal (a degenerate state)")
        return gen
    except (ValueError, TypeError, OverflowError) as e:
        raise FileFormatError(filename, f"metadata.json has an invalid lamina random state: {e}.") from None


def restore(gen: np.random.Generator) -> None:
    """Make ``gen``'s state the global generator's (in place when the kinds match, so holders of
    ``lamina.backend.rng()`` — a Dropout layer, a data adapter — follow it)."""
    current = backend.rng()
    if type(current.bit_generator) is type(gen.bit_generator):
        current.bit_generator.state = gen.bit_generator.state
    else:
        backend._RNG = gen  # another generator kind: replace it (set_seed does the same)


@contextlib.contextmanager
def preserved():
    """Leave the global random stream as it was, whatever the block draws (a load's throwaway weights)."""
    gen = backend.rng()
    saved = gen.bit_generator.state
    try:
        yield
    finally:
        gen.bit_generator.state = saved
        backend._RNG = gen  # even if code run by the load called set_seed
