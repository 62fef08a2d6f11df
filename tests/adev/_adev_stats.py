"""Shared statistics for the ADEV tests.

Rule used in every statistical test of this directory: N gradient estimates (one per
split key, fixed seeds) are averaged and the mean is required to lie within 4.5 standard
errors (SE = std / sqrt(N)) of the exact derivative, a false-alarm rate of about 7e-6 per
comparison for a normal mean. The test must also have power: 4.5 * SE <= 0.05 * |exact|,
so a bias of 5% of the exact value would be detected. A float tolerance of 2e-5 * (1 +
|exact|) is added for estimators with zero or near-zero variance (enumeration).
"""

from __future__ import annotations

import jax
import numpy as np

Z = 4.5
POWER = 0.05
FLOAT_TOL = 2e-5
SEEN: list[float] = []  # |mean - exact| / SE of every check in this process, for reports


def deriv(fn, theta: float, h: float = 1e-3) -> float:
    """d/dθ fn(θ) by the five-point stencil (error O(h^4)); fn is float64 NumPy/SciPy."""
    return float(
        (-fn(theta + 2 * h) + 8 * fn(theta + h) - 8 * fn(theta - h) + fn(theta - 2 * h))
        / (12 * h)
    )


def keys(seed: int, n: int):
    return jax.random.split(jax.random.key(seed), n)


def check_unbiased(samples, exact: float, *, power: bool = True) -> float:
    """Assert the rule above; returns |mean - exact| / SE (0 for zero variance)."""
    g = np.asarray(samples, dtype=np.float64).reshape(-1)
    assert np.all(np.isfinite(g)), "non-finite gradient estimates"
    mean, se = g.mean(), g.std(ddof=1) / np.sqrt(g.size)
    err = abs(mean - exact)
    if power:
        assert Z * se <= POWER * abs(exact), (
            f"too noisy to detect a 5% bias: 4.5*SE = {Z * se:.4g} > 0.05*|exact| = "
            f"{POWER * abs(exact):.4g} (mean {mean:.5g}, exact {exact:.5g})"
        )
    assert err <= Z * se + FLOAT_TOL * (1 + abs(exact)), (
        f"mean {mean:.6g} vs exact {exact:.6g}: |diff| = {err:.3g} > 4.5*SE = {Z * se:.3g}"
    )
    # Rows whose spread is at float rounding level (enumeration, mvd on a finite support)
    # are exact, not statistical: report them as 0.
    ratio = float(err / se) if Z * se > FLOAT_TOL * (1 + abs(exact)) else 0.0
    SEEN.append(ratio)
    return ratio
