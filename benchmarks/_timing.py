"""Timing helpers for benchmarks on a noisy, shared machine.

Everything here reports medians and inter-quartile ranges rather than means, and the
runtime comparison interleaves the contenders call by call so that slow phases of the
machine (other jobs, frequency changes) hit all of them alike.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np


def summarize(xs: Sequence[float], scale: float = 1.0) -> dict:
    """median, quartiles, IQR, min and max of `xs` (each multiplied by `scale`)."""
    a = np.asarray(xs, dtype=float) * scale
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(med), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1),
        "min": float(a.min()), "max": float(a.max()), "n": int(a.size),
    }


def time_call(fn: Callable, *args) -> float:
    """Seconds for one call of `fn(*args)`, waiting for the result to be computed."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def interleaved(fns: Mapping[str, Callable], args: tuple, reps: int, warmup: int = 3) -> dict:
    """Time each function `reps` times, interleaved call by call.

    Round i calls every function once, in an order rotated by one each round (A B, B A,
    A B, ... for two; A B C, B C A, C A B, ... for three) so that no contender holds a
    fixed position relative to the others. Returns
    {name: [seconds per round]}; entry i of every list comes from the same round, which is
    what makes per-round (paired) ratios meaningful.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            jax.block_until_ready(fns[n](*args))
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(reps):
        r = i % len(names)
        order = names[r:] + names[:r]
        for n in order:
            out[n].append(time_call(fns[n], *args))
    return out


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(num, den, strict=True)]


def compile_times(makers: Mapping[str, Callable[[], Callable]], args: tuple, reps: int = 3):
    """Fresh trace + lower + compile of each function, `reps` times, interleaved.

    `makers[name]()` must build a *fresh* function (no Python-side caches carried over);
    `jax.clear_caches()` runs before each measurement so that JAX's tracing and compilation
    caches are empty too. Returns ({name: {"trace": [...], "lower": [...], "compile": [...],
    "total": [...]}} in seconds, {name: last (traced, lowered, compiled)}).
    """
    times = {n: {"trace": [], "lower": [], "compile": [], "total": []} for n in makers}
    last = {}
    for _ in range(reps):
        for n, make in makers.items():
            jax.clear_caches()
            fn = make()
            t0 = time.perf_counter()
            traced = jax.jit(fn).trace(*args)
            t1 = time.perf_counter()
            lowered = traced.lower()
            t2 = time.perf_counter()
            compiled = lowered.compile()
            t3 = time.perf_counter()
            for k, v in (("trace", t1 - t0), ("lower", t2 - t1), ("compile", t3 - t2),
                         ("total", t3 - t0)):
                times[n][k].append(v)
            last[n] = (traced, lowered, compiled)
    return times, last


# -- program size ------------------------------------------------------------------------

def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for j in v if isinstance(v, (tuple, list)) else (v,):
            if hasattr(j, "jaxpr") and hasattr(j.jaxpr, "eqns"):
                yield j.jaxpr
            elif hasattr(j, "eqns"):
                yield j


def jaxpr_primitive_counts(jaxpr, counts: Counter | None = None) -> Counter:
    """Primitive name -> number of equations, sub-jaxprs (jit, cond, scan ...) included."""
    counts = Counter() if counts is None else counts
    for eqn in jaxpr.eqns:
        counts[eqn.primitive.name] += 1
        for sub in _sub_jaxprs(eqn):
            jaxpr_primitive_counts(sub, counts)
    return counts


_STABLEHLO_OP = re.compile(r"\b(?:stablehlo|chlo|func|call)\.([a-z_]+)|\bcall @")
_HLO_OP = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*[^=]*?\s([a-z][a-z0-9\-]*)\(", re.M)


def stablehlo_op_counts(text: str) -> Counter:
    """Op name -> count in StableHLO text (`jax.jit(f).lower(...).as_text()`)."""
    c = Counter()
    for m in _STABLEHLO_OP.finditer(text):
        c[m.group(1) or "call"] += 1
    return c


def hlo_op_counts(text: str) -> Counter:
    """Instruction opcode -> count in optimized HLO text (`compiled.as_text()`)."""
    return Counter(m.group(1) for m in _HLO_OP.finditer(text))


def normalized_hlo(text: str) -> list[str]:
    """The instructions of optimized HLO text with names, metadata and backend configs
    removed, sorted: two modules with equal lists compute the same thing the same way up to
    renaming and instruction order."""
    out = []
    for line in text.splitlines():
        if " = " not in line or "{file_location_id" in line:
            continue
        line = re.sub(r",?\s*metadata=\{.*?\}(?=,|$)", "", line)
        line = re.sub(r",?\s*backend_config=.*$", "", line)
        line = re.sub(r"%[\w.\-]+", "%v", line)
        line = re.sub(r"[\w.\-]+(?= = )", "v", line)
        out.append(line.strip())
    return sorted(out)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))
