"""The kit's one timer: percentiles of a call's duration after a warm-up.

Timing rule: warm up (at least `warmup` calls and `warmup_time` s), then repeat until at least
`min_reps` calls and `min_time` s have been timed (or `max_time` s have passed); report
percentiles and the spread (IQR, min/max), never a single run. With min_time=0 it times exactly
`min_reps` calls. Used by the bench probe and by the compress stage's latency figures.
"""
from __future__ import annotations

import time

import numpy as np


def summarize(seconds: list[float]) -> dict:
    """Statistics of call durations given in seconds, reported in milliseconds: n, mean, min, p25/p50/p75/p90/p99, max and IQR."""
    ms = np.asarray(seconds, np.float64) * 1e3
    q = np.percentile(ms, [25, 50, 75, 90, 99])
    return {
        "n": int(ms.size),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "p25": float(q[0]),
        "p50": float(q[1]),
        "p75": float(q[2]),
        "p90": float(q[3]),
        "p99": float(q[4]),
        "max": float(ms.max()),
        "iqr": float(q[2] - q[0]),
    }


def time_calls(fn, warmup: int = 5, warmup_time: float = 0.5, min_reps: int = 30, min_time: float = 2.0, max_time: float = 10.0) -> dict:
    """Percentiles (ms) of `fn()` durations after a warm-up, and the median CPU time of this
    process per call (`cpu_p50`, all its threads): on a shared, loaded machine wall time counts
    the waits for a core, CPU time does not (a runtime that sleeps or spins shows up as the gap)."""
    start = time.perf_counter()
    n = 0
    while n < warmup or time.perf_counter() - start < warmup_time:
        fn()
        n += 1
        if time.perf_counter() - start > max_time:
            break
    durations: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while True:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        durations.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        elapsed = time.perf_counter() - start
        if (len(durations) >= min_reps and elapsed >= min_time) or (elapsed >= max_time and len(durations) >= 3):
            break
    return {**summarize(durations), "cpu_p50": float(np.median(cpu) * 1e3)}
