"""Unbiasedness of every supported (distribution, estimator) pair, one parametrised table.

Rule (see `_adev_stats.py`): for each row, N ADEV gradient estimates of d/dθ E[f(x)],
x ~ dist(θ), are drawn with `jax.jit(jax.vmap(...))` over split keys (fixed seeds); their
mean must lie within 4.5 standard errors of the exact derivative (false-alarm rate about
7e-6 per row), and the test must be able to see a 5% bias: 4.5 * SE <= 0.05 * |exact|.
Exact derivatives are float64 NumPy/SciPy: closed forms, sums over the support (poisson
and geometric truncated at 200, where the tail is below 1e-60), or adaptive quadrature,
differentiated in θ with a five-point stencil.

Not in the table, on purpose: REINFORCE on a uniform whose bounds depend on θ (the score
function is biased when the support moves with θ), and reparam on discrete distributions
(an error, tested in test_errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
from _adev_stats import check_unbiased, deriv, keys

import genvi as gv
from genvi import adev

sig = lambda t: 1.0 / (1.0 + np.exp(-t))


@dataclass(frozen=True)
class Family:
    """A distribution whose parameters depend on θ, a test function f and E_θ[f(x)]."""

    make: Callable  # θ (a traced float32) -> genvi distribution
    f: Callable  # (x, xp) -> scalar, xp = jnp or np; x is float
    expect: Callable  # θ (float64) -> E_θ[f(x)]
    theta: float


def _quad(frozen, f, lo, hi):
    val, _ = si.quad(lambda x: f(x, np) * frozen.pdf(x), lo, hi, epsabs=1e-13, epsrel=1e-12,
                     limit=400)
    return val


def _sum(frozen, f, support):
    k = np.asarray(support, dtype=np.float64)
    return float(np.sum(f(k, np) * frozen.pmf(k)))


def _cat_logits(t):
    return jnp.array([t, -t, 0.5 * t, 0.2])


CAT_F = np.array([0.0, -3.0, 2.0, -0.5])


def _cat_expect(t):
    lg = np.array([t, -t, 0.5 * t, 0.2])
    p = np.exp(lg - lg.max())
    return float(np.sum(CAT_F / p.sum() * p))


def _mvn_diag_expect(t):
    m = np.array([t, -t, 0.5])
    v = np.array([1 + 0.5 * t, 1.0, 0.5]) ** 2
    return float(np.sum(np.sin(m) * np.exp(-v / 2) + (m**2 + v) / 2)) - 2.0


def _mvn_tril(t, xp):
    return xp.array([[1.0 + 0.3 * t, 0.0], [t, 0.8]])


def _mvn_expect(t):
    m = np.array([t, 0.3])
    L = _mvn_tril(t, np)
    S = L @ L.T
    return float(np.sum(np.sin(m) * np.exp(-np.diag(S) / 2)) + S[0, 1] + m[0] * m[1]) - 1.2


DIR_W = np.array([1.0, -0.5, 2.0])


def _dir_expect(t):
    a = np.array([1 + t, 2.0, 3 - t])
    a0 = a.sum()
    ex2 = a * (a + 1) / (a0 * (a0 + 1))
    return float(np.sum(DIR_W * ex2) + a[0] * a[1] / (a0 * (a0 + 1))) - 0.5


FAMILIES = {
    "normal": Family(
        lambda t: gv.normal(t, 1 + 0.25 * t),
        lambda x, xp: x**2 + xp.sin(x) - 1.8,
        lambda t: _quad(st.norm(t, 1 + 0.25 * t), FAMILIES["normal"].f, -np.inf, np.inf),
        0.5,
    ),
    "uniform": Family(
        lambda t: gv.uniform(t - 1, 2 * t + 1),
        lambda x, xp: x**2 + xp.sin(x),
        lambda t: _quad(st.uniform(t - 1, t + 2), FAMILIES["uniform"].f, t - 1, 2 * t + 1),
        0.5,
    ),
    "lognormal": Family(
        lambda t: gv.lognormal(t, 0.3 + 0.2 * t),
        lambda x, xp: x + xp.sin(x) - 2.2,
        lambda t: _quad(st.lognorm(0.3 + 0.2 * t, scale=np.exp(t)), FAMILIES["lognormal"].f,
                        0, np.inf),
        0.2,
    ),
    "laplace": Family(
        lambda t: gv.laplace(t, 1 + 0.5 * t),
        lambda x, xp: x**2 + xp.sin(x) - 3.6,
        lambda t: (_quad(st.laplace(t, 1 + 0.5 * t), FAMILIES["laplace"].f, -np.inf, t)
                   + _quad(st.laplace(t, 1 + 0.5 * t), FAMILIES["laplace"].f, t, np.inf)),
        0.5,
    ),
    "exponential": Family(
        lambda t: gv.exponential(1 + t),
        lambda x, xp: x + xp.sin(2 * x) - 1.1,
        lambda t: _quad(st.expon(scale=1 / (1 + t)), FAMILIES["exponential"].f, 0, np.inf),
        0.5,
    ),
    "half_normal": Family(
        lambda t: gv.half_normal(1 + t),
        lambda x, xp: x + xp.sin(2 * x) - 1.5,
        lambda t: _quad(st.halfnorm(scale=1 + t), FAMILIES["half_normal"].f, 0, np.inf),
        0.5,
    ),
    "student_t": Family(
        lambda t: gv.student_t(3 + 2 * t, t, 1 + 0.5 * t),
        lambda x, xp: xp.arctan(2 * x) + 0.5 * xp.sin(x) - 0.6,
        lambda t: _quad(st.t(3 + 2 * t, t, 1 + 0.5 * t), FAMILIES["student_t"].f, -np.inf,
                        np.inf),
        0.5,
    ),
    "gamma": Family(
        lambda t: gv.gamma(1.5 + t, 2 - 0.5 * t),
        lambda x, xp: x + xp.sin(2 * x) - 1.6,
        lambda t: _quad(st.gamma(1.5 + t, scale=1 / (2 - 0.5 * t)), FAMILIES["gamma"].f, 0,
                        np.inf),
        0.5,
    ),
    "beta": Family(
        lambda t: gv.beta(1 + t, 2 + t),
        lambda x, xp: xp.sin(3 * x) + x**2 - 0.9,
        lambda t: _quad(st.beta(1 + t, 2 + t), FAMILIES["beta"].f, 0, 1),
        0.5,
    ),
    "mv_normal_diag": Family(
        lambda t: gv.mv_normal_diag(jnp.array([t, -t, 0.5]), jnp.array([1 + 0.5 * t, 1.0, 0.5])),
        lambda x, xp: xp.sum(xp.sin(x) + x**2 / 2) - 2.0,
        _mvn_diag_expect,
        0.4,
    ),
    "mv_normal": Family(
        lambda t: gv.mv_normal(jnp.array([t, 0.3]), scale_tril=_mvn_tril(t, jnp)),
        lambda x, xp: xp.sum(xp.sin(x)) + x[0] * x[1] - 1.2,
        _mvn_expect,
        0.5,
    ),
    "dirichlet": Family(
        lambda t: gv.dirichlet(jnp.array([1 + t, 2.0, 3 - t])),
        lambda x, xp: xp.sum(xp.asarray(DIR_W) * x**2) + x[0] * x[1] - 0.5,
        _dir_expect,
        0.5,
    ),
    "bernoulli": Family(
        lambda t: gv.bernoulli(jax.nn.sigmoid(t)),
        lambda x, xp: (3 * x + 1) ** 2 - 9.6,
        lambda t: 16 * sig(t) + (1 - sig(t)) - 9.6,
        0.3,
    ),
    "categorical": Family(
        lambda t: gv.categorical(logits=_cat_logits(t)),
        lambda x, xp: xp.asarray(CAT_F)[x.astype(int) if xp is np else x.astype(jnp.int32)],
        _cat_expect,
        0.4,
    ),
    "poisson": Family(
        lambda t: gv.poisson(2 + t),
        lambda x, xp: xp.sin(x) + 0.5 * x - 1.5,
        lambda t: _sum(st.poisson(2 + t), FAMILIES["poisson"].f, range(201)),
        0.5,
    ),
    "geometric": Family(
        lambda t: gv.geometric(jax.nn.sigmoid(t)),
        lambda x, xp: x + xp.sin(x) - 1.1,
        # scipy's geom counts trials (1, 2, ...); genvi counts failures (0, 1, ...).
        lambda t: _sum(st.geom(sig(t), loc=-1), FAMILIES["geometric"].f, range(201)),
        0.2,
    ),
    "binomial": Family(
        lambda t: gv.binomial(6, jax.nn.sigmoid(t)),
        lambda x, xp: (x - 2) ** 2 + xp.sin(x) - 3.4,
        lambda t: _sum(st.binom(6, sig(t)), FAMILIES["binomial"].f, range(7)),
        0.3,
    ),
}
# Normal with θ in one parameter only, for the two measure-valued decompositions.
FAMILIES["normal_loc"] = Family(
    lambda t: gv.normal(t, 1.2),
    lambda x, xp: x**2 + xp.sin(x),
    lambda t: _quad(st.norm(t, 1.2), FAMILIES["normal_loc"].f, -np.inf, np.inf),
    0.5,
)
FAMILIES["normal_scale"] = Family(
    lambda t: gv.normal(0.3, t),
    lambda x, xp: x**2 + xp.sin(x),
    lambda t: _quad(st.norm(0.3, t), FAMILIES["normal_scale"].f, -np.inf, np.inf),
    0.8,
)

CONTINUOUS = ["normal", "uniform", "lognormal", "laplace", "exponential", "half_normal",
              "student_t", "gamma", "beta", "mv_normal_diag", "mv_normal", "dirichlet"]
DISCRETE = ["bernoulli", "categorical", "poisson", "geometric", "binomial"]


def _const(est):
    return lambda t, fam: est


def _b_in_program(t, fam):
    # A baseline computed inside the program from θ: f at the distribution's mean.
    return adev.baseline(adev.reinforce, fam.f(fam.make(t).mean.astype(jnp.float32), jnp))


N = 200_000  # estimates per row (enumeration rows: 64, they have zero variance)

# (family, estimator name, (θ, family) -> estimator, number of estimates)
ROWS = (
    [(d, "reparam", _const(adev.reparam), N) for d in CONTINUOUS]
    # The score function is biased when the support moves with θ (uniform's bounds).
    + [(d, "reinforce", _const(adev.reinforce), N) for d in CONTINUOUS if d != "uniform"]
    + [(d, "reinforce", _const(adev.reinforce), N) for d in DISCRETE]
    + [
        ("bernoulli", "baseline_const", _const(adev.baseline(adev.reinforce, -1.0)), N),
        ("categorical", "baseline_const", _const(adev.baseline(adev.reinforce, 0.5)), N),
        ("normal", "baseline_program", _b_in_program, N),
        ("poisson", "baseline_program", _b_in_program, N),
    ]
    + [(d, "enum", _const(adev.enum), 64) for d in ("bernoulli", "categorical", "binomial")]
    + [(d, "mvd", _const(adev.mvd), N)
       for d in ("normal_loc", "normal_scale", "bernoulli", "categorical", "poisson",
                 "geometric")]
)


def _program(fam: Family, est_fn):
    @gv.expectation
    def prog(key, theta):
        x = gv.adev.sample(fam.make(theta).using(est_fn(theta, fam)), key)
        return fam.f(x.astype(jnp.float32), jnp)

    return prog


@pytest.mark.parametrize(
    "family,est_name,est_fn,n", ROWS, ids=[f"{r[1]}-{r[0]}" for r in ROWS]
)
def test_unbiased(family, est_name, est_fn, n):
    fam = FAMILIES[family]
    prog = _program(fam, est_fn)
    exact = deriv(fam.expect, fam.theta)
    grad = jax.jit(jax.vmap(lambda k: jax.grad(prog, argnums=1)(k, jnp.float32(fam.theta))))
    seed = sum(map(ord, family + est_name))
    check_unbiased(grad(keys(seed, n)), exact)


def test_pairs_cover_the_brief():
    pairs = {(r[0].split("_")[0] if r[0].startswith("normal_") else r[0], r[1]) for r in ROWS}
    for d in CONTINUOUS:
        assert (d, "reparam") in pairs
    for d in CONTINUOUS + DISCRETE:
        assert (d, "reinforce") in pairs or d == "uniform"
    for d in ("bernoulli", "categorical", "binomial"):
        assert (d, "enum") in pairs
    for d in ("normal", "bernoulli", "categorical", "poisson", "geometric"):
        assert (d, "mvd") in pairs


@pytest.mark.parametrize("family,est", [("normal", adev.reparam), ("poisson", adev.mvd),
                                        ("categorical", adev.reinforce)])
def test_expectation_value_is_unbiased_too(family, est):
    """Calling a program estimates E[f] (f shifted by 3 so the power rule applies)."""
    fam = FAMILIES[family]
    inner = _program(fam, _const(est))
    prog = gv.expectation(lambda k, t: inner(k, t) + 3.0)
    vals = jax.jit(jax.vmap(lambda k: prog(k, jnp.float32(fam.theta))))(keys(7, 50_000))
    check_unbiased(vals, fam.expect(fam.theta) + 3.0)
