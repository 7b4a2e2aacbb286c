"""Counter-based random numbers: every draw is a pure function of (key, counter).

Simulators step many users at once. Giving each user a ``np.random.Generator`` would force a
Python loop over users; instead each user holds a 64-bit root key (drawn once from the
environment's ``np_random`` when it is seeded) and every draw is ``hash(root, episode, step,
stream, index)``. A batch of B users and B single environments seeded alike therefore see
bit-identical numbers, and no draw depends on how many users are stepped together.

The hash is the SplitMix64 finaliser (Steele, Lea & Flood, 2014) with wrapping ``uint64``
arithmetic; counters are folded in with distinct odd multipliers before one finaliser pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Stream", "derive", "normal", "stream", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_COUNTER_MULTIPLIERS = tuple(np.uint64(m) for m in (
    0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0xAEF17502108EF2D9, 0xF1357AEA2E62A9C5, 0xC2B2AE3D27D4EB4F))
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV_2_53 = 1.0 / float(1 << 53)


class Stream:
    """Named stream ids so that different uses of randomness never collide."""

    USER_INIT = 1
    RESPONSE = 2
    LEAVE = 3
    CANDIDATES = 4
    CATALOG = 5


_MASK = 0xFFFFFFFFFFFFFFFF
_SMALL = 4  # batches up to this size take the pure-Python path: identical bits, far less overhead
_M1_INT, _M2_INT = int(_M1), int(_M2)


def _mix_int(x: int) -> int:
    """The same finaliser on one Python int: much cheaper than a ufunc chain on a 1-element array."""
    x ^= x >> 30
    x = (x * _M1_INT) & _MASK
    x ^= x >> 27
    x = (x * _M2_INT) & _MASK
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a ``uint64`` array (wraps modulo 2**64)."""
    x = x ^ (x >> _S30)
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def derive(keys: np.ndarray, *counters: np.ndarray | int) -> np.ndarray:
    """Fold up to five counters (episode, step, stream...) into per-user keys with one hash pass.

    Args:
        keys: ``uint64`` array of shape (B,).
        *counters: non-negative integers or integer arrays broadcastable to (B,).

    Returns:
        A new ``uint64`` key array of shape (B,).
    """
    keys = np.asarray(keys, dtype=np.uint64)
    if keys.size <= _SMALL:
        ints = [int(k) for k in keys]
        for mult, c in zip(_COUNTER_MULTIPLIERS, counters, strict=False):
            cs = [c] * len(ints) if isinstance(c, int) else np.asarray(c).ravel().tolist()
            cs = cs * len(ints) if len(cs) == 1 else cs
            ints = [k + int(mult) * (int(ci) + 1) for k, ci in zip(ints, cs, strict=True)]
        return np.array([_mix_int(k & _MASK) for k in ints], dtype=np.uint64)
    out = keys.copy()
    for mult, c in zip(_COUNTER_MULTIPLIERS, counters, strict=False):
        if isinstance(c, int):
            out += np.uint64((int(mult) * (c + 1)) & _MASK)
        else:
            out += mult * (np.asarray(c).astype(np.uint64) + np.uint64(1))
    return _mix(out)


def stream(keys: np.ndarray, stream_id: int) -> np.ndarray:
    """A key for an independent stream of an already derived key (cheap: no hash pass)."""
    return keys ^ np.uint64(_mix_int(stream_id))


def uniform(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` uniform floats in [0, 1) per key: shape (B, n), float64."""
    keys = np.asarray(keys, dtype=np.uint64)
    if keys.size <= _SMALL:
        golden = int(_GOLDEN)
        return np.array([[(_mix_int((int(k) + golden * j) & _MASK) >> 11) * _INV_2_53 for j in range(1, n + 1)]
                         for k in keys], dtype=np.float64).reshape(len(keys), n)
    idx = np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix(keys[:, None] + idx[None, :])
    return (bits >> _S11).astype(np.float64) * _INV_2_53


def normal(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` standard normal floats per key (Box-Muller, both halves): shape (B, n), float64."""
    half = (n + 1) // 2
    u = uniform(keys, 2 * half)
    radius = np.sqrt(-2.0 * np.log1p(-u[:, :half]))
    angle = 2.0 * np.pi * u[:, half:]
    if n == half:
        return radius * np.cos(angle)
    return np.concatenate((radius * np.cos(angle), radius[:, : n - half] * np.sin(angle[:, : n - half])), axis=1)
