"""Counter-based random numbers: every draw is a pure function of (key, counter).

Simulators step many users at once. Giving each user a ``np.random.Generator`` would force a
Python loop over users; instead each user holds a 64-bit root key (drawn once from the
environment's ``np_random`` when it is seeded) and every draw is ``hash(root, episode, step,
stream, index)``. A batch of B users and B single environments seeded alike therefore see
bit-identical numbers, and no draw depends on how many users are stepped together.

The hash is the SplitMix64 finaliser (Steele, Lea & Flood, 2014), applied with wrapping
``uint64`` arithmetic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Stream", "derive", "normal", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV_2_53 = 1.0 / float(1 << 53)


class Stream:
    """Named stream ids so that different uses of randomness never collide."""

    USER_INIT = 1
    RESPONSE = 2
    LEAVE = 3
    CANDIDATES = 4
    CATALOG = 5


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a ``uint64`` array (wraps modulo 2**64)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def derive(keys: np.ndarray, *counters: np.ndarray | int) -> np.ndarray:
    """Fold counters (episode, step, stream...) into per-user keys.

    Args:
        keys: ``uint64`` array of shape (B,).
        *counters: integers or integer arrays broadcastable to (B,).

    Returns:
        A new ``uint64`` key array of shape (B,).
    """
    out = np.asarray(keys, dtype=np.uint64)
    for c in counters:
        step = np.atleast_1d(np.asarray(c)).astype(np.uint64) + np.uint64(1)
        out = _mix(out + _GOLDEN * step)
    return out


def uniform(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` uniform floats in [0, 1) per key: shape (B, n), float64."""
    idx = np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix(np.asarray(keys, dtype=np.uint64)[:, None] + idx[None, :])
    return (bits >> _S11).astype(np.float64) * _INV_2_53


def normal(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` standard normal floats per key (Box-Muller): shape (B, n), float64."""
    u = uniform(keys, 2 * n)
    radius = np.sqrt(-2.0 * np.log1p(-u[:, :n]))
    return radius * np.cos(2.0 * np.pi * u[:, n:])
