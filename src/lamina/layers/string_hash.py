"""The two string hashes TensorFlow's ``to_hash_bucket_fast`` / ``to_hash_bucket_strong`` use, on NumPy alone.

* ``fingerprint64``: FarmHash's ``Fingerprint64`` (``farmhashna::Hash64``), stable across platforms.
* ``siphash24``: SipHash-2-4 keyed by two unsigned 64-bit integers (the ``Hashing`` layer's salt).

Both take a list of ``bytes`` and return a ``uint64`` array. They are vectorised over the strings: the
strings are grouped by byte length, and each group is a ``(count, length)`` byte matrix whose 64-bit words
are read as columns, so the arithmetic runs once per group and word position, not once per string.
NumPy's ``uint64`` arithmetic on arrays wraps modulo 2**64 without warnings, as the C code does.
"""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_K0 = _U64(0xC3A5C85C97CB3127)
_K1 = _U64(0xB492B66FBE98F273)
_K2 = _U64(0x9AE16A3B2F90404F)
_MASK64 = (1 << 64) - 1


def _by_length(data: list, group_fn) -> np.ndarray:
    """``group_fn(matrix, length)`` on each group of equal byte length, scattered back into input order."""
    lengths = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
    out = np.empty(len(data), dtype=np.uint64)
    if not len(data):
        return out
    order = np.argsort(lengths, kind="stable")
    buffer = np.frombuffer(b"".join([data[i] for i in order]), dtype=np.uint8)
    sorted_lengths = lengths[order]
    starts = np.flatnonzero(np.r_[True, sorted_lengths[1:] != sorted_lengths[:-1]])
    ends = np.r_[starts[1:], len(data)]
    offset = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        length = int(sorted_lengths[start])
        size = (end - start) * length
        matrix = buffer[offset:offset + size].reshape(end - start, length)
        offset += size
        out[order[start:end]] = group_fn(matrix, length)
    return out


def _fetch64(m: np.ndarray, at: int) -> np.ndarray:
    """The little-endian 64-bit word at byte ``at`` of every row."""
    return np.ascontiguousarray(m[:, at:at + 8]).view("<u8")[:, 0].astype(np.uint64, copy=False)


def _fetch32(m: np.ndarray, at: int) -> np.ndarray:
    return np.ascontiguousarray(m[:, at:at + 4]).view("<u4")[:, 0].astype(np.uint64)


def _rot(v, shift: int):
    """Rotate right by ``shift`` bits (0 < shift < 64)."""
    return (v >> _U64(shift)) | (v << _U64(64 - shift))


def _shift_mix(v):
    return v ^ (v >> _U64(47))


def _hash_len16(u, v, mul):
    a = (u ^ v) * mul
    a = a ^ (a >> _U64(47))
    b = (v ^ a) * mul
    b = b ^ (b >> _U64(47))
    return b * mul


def _len0to16(m: np.ndarray, n: int) -> np.ndarray:
    if n >= 8:
        mul = _K2 + _U64(n * 2)
        a = _fetch64(m, 0) + _K2
        b = _fetch64(m, n - 8)
        c = _rot(b, 37) * mul + a
        d = (_rot(a, 25) + b) * mul
        return _hash_len16(c, d, mul)
    if n >= 4:
        mul = _K2 + _U64(n * 2)
        a = _fetch32(m, 0)
        return _hash_len16(_U64(n) + (a << _U64(3)), _fetch32(m, n - 4), mul)
    if n > 0:
        y = m[:, 0].astype(np.uint64) + (m[:, n >> 1].astype(np.uint64) << _U64(8))
        z = _U64(n) + (m[:, n - 1].astype(np.uint64) << _U64(2))
        return _shift_mix(y * _K2 ^ z * _K0) * _K2
    return np.full(m.shape[0], _K2, dtype=np.uint64)


def _len17to32(m: np.ndarray, n: int) -> np.ndarray:
    mul = _K2 + _U64(n * 2)
    a = _fetch64(m, 0) * _K1
    b = _fetch64(m, 8)
    c = _fetch64(m, n - 8) * mul
    d = _fetch64(m, n - 16) * _K2
    return _hash_len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + _K2, 18) + c, mul)


def _len33to64(m: np.ndarray, n: int) -> np.ndarray:
    mul = _K2 + _U64(n * 2)
    a = _fetch64(m, 0) * _K2
    b = _fetch64(m, 8)
    c = _fetch64(m, n - 8) * mul
    d = _fetch64(m, n - 16) * _K2
    y = _rot(a + b, 43) + _rot(c, 30) + d
    z = _hash_len16(y, a + _rot(b + _K2, 18) + c, mul)
    e = _fetch64(m, 16) * mul
    f = _fetch64(m, 24)
    g = (y + _fetch64(m, n - 32)) * mul
    h = (z + _fetch64(m, n - 24)) * mul
    return _hash_len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


def _weak32(m: np.ndarray, at: int, a, b):
    """FarmHash's ``WeakHashLen32WithSeeds`` on the 32 bytes at ``at``: a pair of words."""
    w, x, y, z = (_fetch64(m, at + 8 * i) for i in range(4))
    a = a + w
    b = _rot(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rot(a, 44)
    return a + z, b + c


def _long(m: np.ndarray, n: int) -> np.ndarray:
    """More than 64 bytes: 64-byte blocks through a 56-byte state, then the last 64 bytes."""
    rows = m.shape[0]
    seed = 81
    x = np.full(rows, seed, dtype=np.uint64)
    y = np.full(rows, (seed * int(_K1) + 113) & _MASK64, dtype=np.uint64)  # Python ints: no scalar overflow
    z = _shift_mix(y * _K2 + _U64(113)) * _K2
    v0 = v1 = w0 = w1 = np.zeros(rows, dtype=np.uint64)
    x = x * _K2 + _fetch64(m, 0)
    for s in range(0, ((n - 1) // 64) * 64, 64):
        x = _rot(x + y + v0 + _fetch64(m, s + 8), 37) * _K1
        y = _rot(y + v1 + _fetch64(m, s + 48), 42) * _K1
        x = x ^ w1
        y = y + v0 + _fetch64(m, s + 40)
        z = _rot(z + w0, 33) * _K1
        v0, v1 = _weak32(m, s, v1 * _K1, x + w0)
        w0, w1 = _weak32(m, s + 32, z + w1, y + _fetch64(m, s + 16))
        z, x = x, z
    mul = _K1 + ((z & _U64(0xFF)) << _U64(1))
    s = n - 64
    w0 = w0 + _U64((n - 1) & 63)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + _fetch64(m, s + 8), 37) * mul
    y = _rot(y + v1 + _fetch64(m, s + 48), 42) * mul
    x = x ^ (w1 * _U64(9))
    y = y + v0 * _U64(9) + _fetch64(m, s + 40)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32(m, s, v1 * mul, x + w0)
    w0, w1 = _weak32(m, s + 32, z + w1, y + _fetch64(m, s + 16))
    z, x = x, z
    return _hash_len16(_hash_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z, _hash_len16(v1, w1, mul) + x, mul)


def _fingerprint_group(m: np.ndarray, n: int) -> np.ndarray:
    if n <= 16:
        return _len0to16(m, n)
    if n <= 32:
        return _len17to32(m, n)
    if n <= 64:
        return _len33to64(m, n)
    return _long(m, n)


def fingerprint64(data: list) -> np.ndarray:
    """FarmHash ``Fingerprint64`` of each ``bytes`` in ``data`` (TensorFlow's ``Fingerprint64``), as uint64."""
    return _by_length(data, _fingerprint_group)


def _rotl(v, shift: int):
    return (v << _U64(shift)) | (v >> _U64(64 - shift))


def _sip_rounds(v0, v1, v2, v3, count: int):
    for _ in range(count):
        v0 = v0 + v1
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = v2 + v3
        v3 = _rotl(v3, 16) ^ v2
        v0 = v0 + v3
        v3 = _rotl(v3, 21) ^ v0
        v2 = v2 + v1
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def _siphash_group(m: np.ndarray, n: int, k0: np.uint64, k1: np.uint64) -> np.ndarray:
    rows = m.shape[0]
    # the message padded with zeros to whole words, the last byte of the last word holding the length
    padded = np.zeros((rows, (n // 8 + 1) * 8), dtype=np.uint8)
    padded[:, :n] = m
    padded[:, -1] = n & 0xFF
    words = padded.view("<u8").astype(np.uint64, copy=False)
    v0 = np.full(rows, k0 ^ _U64(0x736F6D6570736575), dtype=np.uint64)
    v1 = np.full(rows, k1 ^ _U64(0x646F72616E646F6D), dtype=np.uint64)
    v2 = np.full(rows, k0 ^ _U64(0x6C7967656E657261), dtype=np.uint64)
    v3 = np.full(rows, k1 ^ _U64(0x7465646279746573), dtype=np.uint64)
    for i in range(words.shape[1]):
        word = words[:, i]
        v3 = v3 ^ word
        v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
        v0 = v0 ^ word
    v2 = v2 ^ _U64(0xFF)
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


def siphash24(data: list, key) -> np.ndarray:
    """SipHash-2-4 of each ``bytes`` in ``data`` under ``key`` (two unsigned 64-bit integers), as uint64."""
    k0, k1 = (_U64(int(k) & _MASK64) for k in key)
    return _by_length(data, lambda m, n: _siphash_group(m, n, k0, k1))


__all__ = ["fingerprint64", "siphash24"]
