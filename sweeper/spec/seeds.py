"""Run seeds: SeedSequence(seed) spawned at a position given by content-hash words, the first 63 bits of its
state. `spawned` is numpy's SeedSequence algorithm (mix the entropy into a pool of four 32-bit words, then
hash the pool out) vectorised over many spawn keys, so a plan of 10^6 runs draws its seeds in a second; it
equals `np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] >> 1` exactly (tested)."""
from __future__ import annotations

import numpy as np

POOL = 4
INIT_A, MULT_A, INIT_B, MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
MIX_L, MIX_R = 0xCA01F9DD, 0x4973F715
U32 = np.uint32


def words(n: int) -> list:
    """An int as numpy's SeedSequence takes it: 32-bit words, least significant first ([0] for 0)."""
    if n < 0:
        raise ValueError(f"a seed word must be non-negative, got {n}")
    out = [n & 0xFFFFFFFF]
    n >>= 32
    while n:
        out.append(n & 0xFFFFFFFF)
        n >>= 32
    return out


def _hashmix(value: np.ndarray, const: list) -> np.ndarray:
    value = value ^ U32(const[0])
    const[0] = (const[0] * MULT_A) & 0xFFFFFFFF
    value = value * U32(const[0])
    return value ^ (value >> U32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = U32(MIX_L) * x - U32(MIX_R) * y
    return result ^ (result >> U32(16))


def _pool(entropy: np.ndarray) -> list:
    """The mixed pool (four uint32 columns) of entropy rows of one length ([n, L] uint32)."""
    const = [INIT_A]
    pool = [_hashmix(entropy[:, i] if i < entropy.shape[1] else np.zeros(len(entropy), U32), const)
            for i in range(POOL)]
    for src in range(POOL):
        for dst in range(POOL):
            if src != dst:
                pool[dst] = _mix(pool[dst], _hashmix(pool[src], const))
    for src in range(POOL, entropy.shape[1]):
        for dst in range(POOL):
            pool[dst] = _mix(pool[dst], _hashmix(entropy[:, src], const))
    return pool


def _first_uint64(pool: list) -> np.ndarray:
    """generate_state(1, np.uint64) of each pool: two 32-bit words, low first."""
    const, out = INIT_B, []
    for i in range(2):
        value = pool[i] ^ U32(const)
        const = (const * MULT_B) & 0xFFFFFFFF
        value = value * U32(const)
        out.append(value ^ (value >> U32(16)))
    return out[0].astype(np.uint64) | (out[1].astype(np.uint64) << np.uint64(32))


def spawned(seed: int, columns: list) -> np.ndarray:
    """The 63-bit seed (int64) of SeedSequence(seed, spawn_key=key) for every row of `columns` (the key's
    words as equal-length arrays of non-negative ints below 2**64; a row's key is one value from each)."""
    run = words(seed)
    run += [0] * (POOL - len(run))  # numpy pads the run entropy to the pool size when there is a spawn key
    cols = [np.asarray(c, dtype=np.uint64) for c in columns]
    n = len(cols[0]) if cols else 0
    low = [(c & np.uint64(0xFFFFFFFF)).astype(U32) for c in cols]
    high = [(c >> np.uint64(32)).astype(U32) for c in cols]
    pattern = sum(((h != 0).astype(np.int64) << i) for i, h in enumerate(high)) if cols else np.zeros(n, np.int64)
    out = np.empty(n, np.int64)
    with np.errstate(over="ignore"):
        for code in np.unique(pattern).tolist():
            at = np.flatnonzero(pattern == code)
            parts = [np.full(len(at), w, U32) for w in run]
            for i in range(len(cols)):
                parts.append(low[i][at])
                if code >> i & 1:
                    parts.append(high[i][at])
            out[at] = (_first_uint64(_pool(np.stack(parts, axis=1))) >> np.uint64(1)).astype(np.int64)
    return out
