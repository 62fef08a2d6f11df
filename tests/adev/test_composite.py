"""Unbiasedness of ADEV on composite programs: sites feeding sites, branches on discrete
samples, nested expectations, `vmap`/`scan` of sites, added costs, and generative functions
with combinators and per-address estimator overrides.

Rule (see `_adev_stats.py`): the mean of N gradient estimates must lie within 4.5 standard
errors of the exact derivative (false-alarm rate about 7e-6 per comparison), and
4.5 * SE <= 0.05 * |exact| so that a 5% bias would be seen. Exact values are float64
closed forms, enumerations or Gauss–Hermite quadrature, differentiated by a five-point
stencil. Fixed seeds.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _adev_stats import check_unbiased, deriv, keys

import genvi as gv
from genvi import adev

sig = lambda t: 1.0 / (1.0 + np.exp(-t))
GH_T, GH_W = np.polynomial.hermite.hermgauss(80)


def normal_expect(g, m, s=1.0):
    """E[g(x)], x ~ N(m, s^2), by Gauss–Hermite quadrature (float64)."""
    return float(np.sum(GH_W * g(m + np.sqrt(2.0) * s * GH_T)) / np.sqrt(np.pi))


def grads(prog, theta, n, seed):
    """n ADEV estimates of d/dθ E[prog], one per split key."""
    g = jax.jit(jax.vmap(lambda k: jax.grad(prog, argnums=1)(k, jnp.float32(theta))))
    return g(keys(seed, n))


# -- a continuous site feeding a discrete one ----------------------------------------------
def test_normal_reparam_then_bernoulli_enum():
    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        x = adev.sample(gv.normal(t, 1.0), k1)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(x)).using(adev.enum), k2)
        return jnp.where(b == 1, x**2, jnp.sin(3 * x)) - 0.7

    g = lambda x: sig(x) * x**2 + (1 - sig(x)) * np.sin(3 * x) - 0.7
    exact = deriv(lambda t: normal_expect(g, t), 0.4)
    check_unbiased(grads(prog, 0.4, 100_000, 1), exact)


# -- branching on a discrete sample ----------------------------------------------------------
def _branch_exact(t):
    p = sig(t)
    return p * (t**2 + 1) + (1 - p) * np.sin(2 * t) * np.exp(-0.125) - 1.0


@pytest.mark.parametrize(
    "est", [adev.reinforce, adev.baseline(adev.reinforce, 0.6), adev.enum],
    ids=["reinforce", "baseline", "enum"],
)
def test_cond_on_bernoulli(est):
    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)).using(est), k1)
        return jax.lax.cond(
            b == 1,
            lambda: adev.sample(gv.normal(t, 1.0), k2) ** 2,
            lambda: jnp.sin(adev.sample(gv.normal(2 * t, 0.5), k2)),
        ) - 1.0

    check_unbiased(grads(prog, 0.7, 200_000, 2), deriv(_branch_exact, 0.7))


def test_cond_program_vmapped_inside_grad():
    """`jax.grad` of a sum over `jax.vmap` of the program (vmap inside grad, as a training
    loss over a batch of keys does): the cond's predicate is then batched, which JAX turns
    into a select with stop_gradient on every operand, tangents included
    (jax-ml/jax#22011). One θ per lane, so each lane's gradient is one estimate."""

    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)), k1)
        return jax.lax.cond(
            b == 1,
            lambda: adev.sample(gv.normal(t, 1.0), k2) ** 2,
            lambda: jnp.sin(adev.sample(gv.normal(2 * t, 0.5), k2)),
        ) - 1.0

    n = 200_000
    per_lane = jax.jit(jax.grad(lambda ts: jnp.sum(jax.vmap(prog)(keys(13, n), ts))))
    check_unbiased(per_lane(jnp.full(n, 0.7, jnp.float32)), deriv(_branch_exact, 0.7))


def test_enum_then_cond_with_nonfinite_untaken_branch():
    """After an enum site, a deterministic cond whose untaken branch has an infinite
    derivative (log 0): the gradient is finite and exact."""

    @gv.expectation
    def prog(key, t):
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)).using(adev.enum), key)
        x = b * t  # 0 where b == 0, where the log branch is not taken
        return jax.lax.cond(b == 1, lambda: jnp.log(x), lambda: t)

    exact = deriv(lambda t: sig(t) * np.log(t) + (1 - sig(t)) * t, 0.7)
    g = jax.jit(jax.vmap(lambda k: jax.grad(prog, argnums=1)(k, jnp.float32(0.7))))(keys(14, 8))
    np.testing.assert_allclose(g, exact, rtol=1e-5)


# -- nested expectations ----------------------------------------------------------------------
@pytest.mark.parametrize("inner_est", [adev.reparam, adev.reinforce], ids=["reparam", "reinforce"])
def test_nested_expectation(inner_est):
    """E_x[x * E_y[sin y + y]], x ~ N(θ, 1), y ~ N(x, 1): the inner estimate enters a product,
    so it must be unbiased in value and in derivative.
    Exact: e^{-1} (θ sin θ + cos θ) + θ^2 + 1."""

    def inner(key, x):
        y = adev.sample(gv.normal(x, 1.0).using(inner_est), key)
        return jnp.sin(y) + y

    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        x = adev.sample(gv.normal(t, 1.0), k1)
        return x * adev.E(inner)(k2, x)

    exact = deriv(lambda t: np.exp(-1.0) * (t * np.sin(t) + np.cos(t)) + t**2 + 1, 0.9)
    check_unbiased(grads(prog, 0.9, 200_000, 3), exact)


# -- sites inside nested jit and checkpoint ---------------------------------------------------
@jax.jit
def _jitted_coin(key, t):
    b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)).using(adev.enum), key)
    return 2.0 * b + t


def test_sites_inside_jit_and_checkpoint():
    """An enum site inside a jitted helper (its continuation leaves the helper) and a
    reparam site inside jax.checkpoint. Exact: E[(2b + θ) x] = (2σ(θ) + θ) θ."""

    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        y = _jitted_coin(k1, t)
        x = jax.checkpoint(lambda k, m: adev.sample(gv.normal(m, 1.0), k))(k2, t)
        return y * x

    check_unbiased(grads(prog, 0.3, 50_000, 12), deriv(lambda t: (2 * sig(t) + t) * t, 0.3))


# -- vmap of sites ---------------------------------------------------------------------------
def test_vmap_of_normal_reparam_sites():
    @gv.expectation
    def prog(key, t):
        xs = jax.vmap(lambda k: adev.sample(gv.normal(t, 1.0), k))(jax.random.split(key, 5))
        return jnp.mean(xs**2 + jnp.sin(xs))

    exact = deriv(lambda t: normal_expect(lambda x: x**2 + np.sin(x), t), 0.5)
    check_unbiased(grads(prog, 0.5, 50_000, 4), exact)


OFFSETS = np.array([0.0, 0.5, -1.0], dtype=np.float32)


def _lanes_exact(t):
    p = sig(t + OFFSETS.astype(np.float64))
    total = 0.0
    for bs in itertools.product([0, 1], repeat=3):
        bs = np.array(bs)
        w = np.prod(np.where(bs == 1, p, 1 - p))
        total += w * ((bs.sum() - 1.0) ** 2 + bs[0] * bs[2])
    return total


@pytest.mark.parametrize("est", [adev.enum, adev.mvd, adev.reinforce],
                         ids=["enum", "mvd", "reinforce"])
def test_vmap_of_bernoulli_lanes(est):
    """Each lane of a batched enum/mvd site is handled on its own, the others held fixed."""

    @gv.expectation
    def prog(key, t):
        bs = jax.vmap(
            lambda k, o: adev.sample(gv.bernoulli(jax.nn.sigmoid(t + o)).using(est), k)
        )(jax.random.split(key, 3), jnp.asarray(OFFSETS))
        return (jnp.sum(bs) - 1.0) ** 2 + bs[0] * bs[2] * 1.0

    check_unbiased(grads(prog, 0.3, 100_000, 5), deriv(_lanes_exact, 0.3))


# -- scan of sites -----------------------------------------------------------------------------
def _ar_moments(t, n=4, rho=0.5):
    m, v, ms, vs = 0.0, 0.0, [], []
    for _ in range(n):
        m, v = t + rho * m, 1.0 + rho**2 * v
        ms.append(m)
        vs.append(v)
    return np.array(ms), np.array(vs)


def _scan_exact(t):
    m, v = _ar_moments(t)
    return float(np.sum(m**2 + v + 2 * sig(t) * m)) - 8.0


@pytest.mark.parametrize("x_est", [adev.reparam, adev.reinforce], ids=["reparam", "reinforce"])
def test_scan_with_reparam_and_reinforce(x_est):
    """x_t ~ N(θ + x_{t-1}/2, 1) and b_t ~ Bernoulli(σ(θ)) inside jax.lax.scan."""

    @gv.expectation
    def prog(key, t):
        def body(x_prev, k):
            k1, k2 = jax.random.split(k)
            x = adev.sample(gv.normal(t + 0.5 * x_prev, 1.0).using(x_est), k1)
            b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)), k2)
            return x, x**2 + 2.0 * b * x

        _, terms = jax.lax.scan(body, jnp.float32(0.0), jax.random.split(key, 4))
        return jnp.sum(terms) - 8.0

    n = 50_000 if x_est is adev.reparam else 200_000
    check_unbiased(grads(prog, 0.6, n, 6), deriv(_scan_exact, 0.6))


# -- add_cost ----------------------------------------------------------------------------------
def test_add_cost_in_scan_and_cond():
    """Costs added inside a scan body and a cond branch count like returned terms, including
    for the REINFORCE site that precedes them."""

    @gv.expectation
    def prog(key, t):
        k1, k2, k3 = jax.random.split(key, 3)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)), k1)

        def body(c, k):
            y = adev.sample(gv.normal(t, 1.0), k)
            adev.add_cost(0.5 * y**2)
            return c, None

        jax.lax.scan(body, 0.0, jax.random.split(k2, 3))
        jax.lax.cond(b == 1, lambda: adev.add_cost(2.0 * t), lambda: adev.add_cost(-1.0))
        x = adev.sample(gv.normal(t, 1.0), k3)
        return jnp.sin(x) - 1.6

    def exact(t):
        p = sig(t)
        return 1.5 * (t**2 + 1) + p * 2 * t - (1 - p) + np.sin(t) * np.exp(-0.5) - 1.6

    check_unbiased(grads(prog, 0.4, 100_000, 7), deriv(exact, 0.4))
    vals = jax.jit(jax.vmap(lambda k: prog(k, jnp.float32(0.4))))(keys(8, 50_000))
    check_unbiased(vals + 5.0, exact(0.4) + 5.0)


# -- generative functions with combinators ------------------------------------------------------
@gv.gen
def point(t):
    z = gv.normal(t, 1.0) @ "z"
    c = gv.bernoulli(jax.nn.sigmoid(t)) @ "c"
    return z**2 + 2.0 * c


@gv.gen
def step(carry, t):
    y = gv.normal(t + 0.5 * carry, 1.0) @ "y"
    return y, y


@gv.gen
def hi(t):
    return (gv.normal(t, 1.0) @ "w") ** 2


@gv.gen
def lo(t):
    return jnp.sin(gv.normal(-t, 0.5) @ "w")


@gv.gen
def model(t):
    b = gv.bernoulli(jax.nn.sigmoid(t)) @ "b"
    pts = gv.vmap(point, in_axes=None, axis_size=3)(t) @ "pts"
    _, ys = gv.scan(step)(jnp.float32(0.0), t * jnp.ones(3)) @ "steps"
    br = gv.cond(b, hi, lo)(t) @ "br"
    return jnp.sum(pts) + jnp.sum(ys**2) + br


def _model_exact(t):
    p = sig(t)
    m, v = _ar_moments(t, n=3)
    branch = p * (t**2 + 1) + (1 - p) * np.sin(-t) * np.exp(-0.125)
    return 3 * (t**2 + 1 + 2 * p) + float(np.sum(m**2 + v)) + branch


MODEL_BASE = 13.0  # about E[retval] at θ = 0.5: a baseline for the REINFORCE site "b"

OVERRIDES = {
    "defaults": {"b": adev.baseline(adev.reinforce, MODEL_BASE)},
    "reinforce_everywhere": {
        "b": adev.baseline(adev.reinforce, MODEL_BASE),
        ("pts", "z"): adev.reinforce,
        ("steps", "y"): adev.reinforce,
        ("br", "w"): adev.reinforce,
    },
    "enum_and_mvd": {"b": adev.enum, ("pts", "c"): adev.mvd},
}


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_generative_function_with_combinators(name):
    def fn(key, t):
        return model.simulate(key, (t,)).retval - MODEL_BASE

    prog = gv.expectation(fn, estimators=OVERRIDES[name])
    check_unbiased(grads(prog, 0.5, 200_000, 9), deriv(_model_exact, 0.5))


# -- enumeration of a purely discrete program --------------------------------------------------
CAT3 = np.array([1.0, -2.0, 0.5])


def _discrete_exact(t):
    total = 0.0
    for b in (0, 1):
        pb = sig(t) if b else 1 - sig(t)
        lg = np.array([t * b, -t, 0.5])
        pc = np.exp(lg - lg.max())
        pc /= pc.sum()
        for c in range(3):
            q = sig(t - c)
            for n in range(4):
                pn = math.comb(3, n) * q**n * (1 - q) ** (3 - n)
                total += pb * pc[c] * pn * ((b + 1) * CAT3[c] + n**2)
    return total


def test_enum_on_discrete_program_has_zero_variance():
    """Chained enum sites (each parameter depends on earlier values): every estimate, of
    the value and of the derivative, is the exact one."""

    @gv.expectation
    def prog(key, t):
        k1, k2, k3 = jax.random.split(key, 3)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(t)).using(adev.enum), k1)
        logits = jnp.stack([t * b, -t, jnp.float32(0.5)])
        c = adev.sample(gv.categorical(logits=logits).using(adev.enum), k2)
        n = adev.sample(gv.binomial(3, jax.nn.sigmoid(t - c)).using(adev.enum), k3)
        return (b + 1) * jnp.asarray(CAT3, jnp.float32)[c] + n**2 * 1.0

    vg = jax.jit(jax.vmap(lambda k: jax.value_and_grad(prog, argnums=1)(k, jnp.float32(0.3))))
    vals, gs = vg(keys(10, 256))
    np.testing.assert_allclose(gs, deriv(_discrete_exact, 0.3), rtol=1e-5)
    np.testing.assert_allclose(vals, _discrete_exact(0.3), rtol=1e-5)
    plain = jax.jit(jax.vmap(lambda k: prog(k, jnp.float32(0.3))))(keys(11, 16))
    np.testing.assert_allclose(plain, _discrete_exact(0.3), rtol=1e-5)
