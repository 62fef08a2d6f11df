"""The ways of differentiating a program agree: `jax.grad` of a call, `grad_estimate`,
`value_and_grad` (whose value is the call's value, also for enum and mvd sites), and
`equinox.filter_grad` with an equinox module argument."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from genvi import adev


@gv.expectation
def mixed(key, t):
    """One site of each estimator, feeding each other."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = adev.sample(gv.normal(t, 1.0), k1)
    b = adev.sample(gv.bernoulli(jax.nn.sigmoid(x)).using(adev.enum), k2)
    n = adev.sample(gv.poisson(jnp.exp(0.3 * t)).using(adev.mvd), k3)
    c = adev.sample(gv.categorical(logits=jnp.stack([t, -t, x])), k4)
    return jnp.sin(x) * (b + 1) + 0.1 * n**2 + c * t


KEYS = jax.random.split(jax.random.key(0), 8)


def test_grad_of_call_equals_grad_estimate():
    t = jnp.float32(0.4)

    def all_ways(k):
        return (jax.grad(mixed, argnums=1)(k, t), mixed.grad_estimate(k, t),
                *mixed.value_and_grad_estimate(k, t), mixed(k, t))

    g1, g2, v3, g3, v4 = jax.jit(jax.vmap(all_ways))(KEYS)  # one compilation
    np.testing.assert_allclose(g1, g2, rtol=1e-6)
    np.testing.assert_allclose(g1, g3, rtol=1e-6)
    np.testing.assert_allclose(v3, v4, rtol=1e-5)


def test_outside_jit():
    @gv.expectation
    def prog(key, t):
        x = adev.sample(gv.normal(t, 1.0), key)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(x)).using(adev.enum), key)
        return x**2 * b

    k, t = jax.random.key(5), jnp.float32(0.2)
    v, g = jax.value_and_grad(prog, argnums=1)(k, t)
    np.testing.assert_allclose(v, prog(k, t), rtol=1e-6)
    np.testing.assert_allclose(g, jax.jit(prog.grad_estimate)(k, t), rtol=1e-5)


@pytest.mark.parametrize("est", [adev.enum, adev.mvd, adev.reinforce, adev.reparam])
def test_value_and_grad_value_equals_call(est):
    dist = (lambda t: gv.normal(t, 1.0)) if est in (adev.reparam, adev.mvd) else (
        lambda t: gv.bernoulli(jax.nn.sigmoid(t)))

    @gv.expectation
    def prog(key, t):
        k1, k2 = jax.random.split(key)
        x = adev.sample(dist(t).using(est), k1)
        y = adev.sample(gv.normal(x, 1.0), k2)
        return jnp.cos(y) + x

    t = jnp.float32(0.3)
    both = jax.jit(jax.vmap(lambda k: (jax.value_and_grad(prog, argnums=1)(k, t)[0], prog(k, t))))
    v_grad, v_call = both(jax.random.split(jax.random.key(1), 64))
    np.testing.assert_allclose(v_grad, v_call, rtol=1e-5, atol=1e-6)


class Params(eqx.Module):
    layer: eqx.nn.Linear
    loc: jax.Array
    log_scale: jax.Array
    act: object = eqx.field(static=True)


def _net(p, x):
    h = p.act(p.layer(jnp.stack([x, x**2])))
    return jax.nn.logsumexp(h) + jax.nn.softplus(h[0])


@gv.expectation
def with_module(key, p):
    x = adev.sample(gv.normal(p.loc, jnp.exp(p.log_scale)), key)
    return _net(p, x)


def test_filter_grad_with_equinox_module():
    """Custom-derivative calls (softplus, logsumexp, an equinox layer) inside a program,
    a module argument with static fields; the gradient is the hand-written reparam one."""
    p = Params(eqx.nn.Linear(2, 3, key=jax.random.key(2)), jnp.float32(0.2), jnp.float32(-0.3),
               jax.nn.tanh)
    key = jax.random.key(3)
    g = eqx.filter_jit(eqx.filter_grad(lambda p, k: with_module(k, p)))(p, key)

    def by_hand(p):
        eps = jax.random.normal(key, (), jnp.float32)
        return _net(p, p.loc + jnp.exp(p.log_scale) * eps)

    ref = eqx.filter_jit(eqx.filter_grad(by_hand))(p)
    for a, b in zip(jax.tree.leaves(eqx.filter(g, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(ref, eqx.is_array)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # jit + filter_value_and_grad, twice (the second call reuses the staged program)
    step = eqx.filter_jit(eqx.filter_value_and_grad(lambda p, k: with_module(k, p)))
    v1, _ = step(p, key)
    v2, _ = step(p, key)
    np.testing.assert_allclose(v1, with_module(key, p), rtol=1e-6)
    np.testing.assert_allclose(v1, v2)
