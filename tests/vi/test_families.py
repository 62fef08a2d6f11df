"""Programmable families: marginal density estimates and normalized (SIR) posteriors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_objectives import CONE_DATA, DATA, POST_MEAN, POST_SD, XY, guide, model, ring

import genvi as gv

PSI = {"s1": jnp.float32(-1.0), "s2": jnp.float32(-1.0)}


def _ring_density(x, y):
    """q(x, y) of the ring family by a midpoint rule over u (exact to float precision)."""
    u = (np.arange(20000) + 0.5) / 20000
    th, r, s = 2 * np.pi * u, math.sqrt(5.0), math.exp(-1.0)
    dens = np.exp(-((x - r * np.cos(th)) ** 2 + (y - r * np.sin(th)) ** 2) / (2 * s**2))
    return float(dens.mean() / (2 * np.pi * s**2))


def test_marginal_density_estimate_is_unbiased():
    q = gv.vi.marginal(ring, XY, gv.vi.sir(3))
    x = gv.choice_map({"x": 1.5, "y": 1.6})
    est = jax.jit(jax.vmap(lambda k: jnp.exp(q.estimate_logpdf(k, x, (CONE_DATA, PSI)))))(
        jax.random.split(jax.random.key(0), 40000))
    est = np.asarray(est, np.float64)
    exact = _ring_density(1.5, 1.6)
    assert abs(est.mean() - exact) <= 4.5 * est.std() / math.sqrt(len(est))
    assert 4.5 * est.std() / math.sqrt(len(est)) < 0.05 * exact


def test_marginal_simulate_reciprocal_is_unbiased_for_inverse_density():
    # E[f(x) / q-hat(x)] = integral of f when 1/q-hat is unbiased for 1/q(x): with f the
    # indicator of a box, the estimate of the box's area must be unbiased. A wide ring
    # (sd 2) keeps q(x | u) within a bounded factor across u, so 1/q-hat has light tails.
    q = gv.vi.marginal(ring, XY, gv.vi.sir(2))
    wide = {"s1": jnp.float32(math.log(2.0)), "s2": jnp.float32(math.log(2.0))}

    def one(k):
        tr = q.simulate(k, (CONE_DATA, wide))
        x, y = tr.choices["x"], tr.choices["y"]
        inside = (jnp.abs(x - 1.5) < 0.5) & (jnp.abs(y - 1.5) < 0.5)
        return jnp.where(inside, jnp.exp(-tr.score), 0.0)

    v = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), 400000)), np.float64)
    area = 1.0
    assert abs(v.mean() - area) <= 4.5 * v.std() / math.sqrt(len(v))
    assert 4.5 * v.std() / math.sqrt(len(v)) < 0.1 * area  # detects a 10% bias


def test_marginal_assess_explains_the_alternative():
    q = gv.vi.marginal(ring, XY)
    with pytest.raises(TypeError, match="estimate_logpdf"):
        q.assess(gv.choice_map({"x": 1.0, "y": 1.0}), (CONE_DATA, PSI))


def test_normalize_draws_approximate_posterior_samples():
    post = gv.vi.normalize(model, gv.vi.sir(200, proposal=guide))
    phi = {"m": jnp.float32(0.5), "ls": jnp.float32(math.log(0.4))}
    mus = jax.jit(jax.vmap(lambda k: post.simulate(k, (DATA, (0.0,), (phi,))).choices["mu"]))(
        jax.random.split(jax.random.key(2), 4000))
    mus = np.asarray(mus, np.float64)
    # SIR with 200 particles: a small O(1/n) bias is allowed beside 4.5 standard errors.
    assert abs(mus.mean() - POST_MEAN) <= 4.5 * mus.std() / math.sqrt(len(mus)) + 0.01
    assert abs(mus.std() - POST_SD) <= 0.05 * POST_SD
