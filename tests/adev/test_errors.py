"""Errors: each names the mistake, the site and the fix."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import genvi as gv
from genvi import adev

KEY = jax.random.key(0)


@gv.gen
def coin_model(p):
    return gv.bernoulli(p) @ "coin"


def test_reparam_on_discrete_names_the_site():
    prog = gv.expectation(lambda k, p: coin_model.simulate(k, (p,)).retval * 1.0,
                          estimators={"coin": adev.reparam})
    with pytest.raises(ValueError, match=r"(?s)reparam.*'coin'.*not reparameterizable.*reinforce"):
        prog(KEY, 0.3)

    @gv.expectation
    def unaddressed(k, p):
        return adev.sample(gv.poisson(p).using(adev.reparam), k) * 1.0

    with pytest.raises(ValueError, match=r"(?s)\(unaddressed\).*Poisson.*discrete"):
        jax.grad(unaddressed, argnums=1)(KEY, 2.0)


@gv.gen
def flip_step(carry, p):
    f = gv.bernoulli(p) @ "flip"
    return carry + f, f


def test_enum_inside_scan_names_site_construct_and_alternatives():
    def fn(k, p):
        c, _ = gv.scan(flip_step).simulate(k, (jnp.int32(0), p * jnp.ones(3))).retval
        return c * 1.0

    # The site's address inside a top-level simulate is its own: "flip".
    prog = gv.expectation(fn, estimators={"flip": adev.enum})
    msg = r"(?s)enum at 'flip'.*continuation.*jax\.lax\.scan.*gv\.adev\.reinforce.*unroll"
    with pytest.raises(ValueError, match=msg):
        jax.grad(prog, argnums=1)(KEY, 0.3)
    with pytest.raises(ValueError, match=msg):  # the same without differentiating
        prog(KEY, 0.3)


@gv.gen
def nested_scan_model(p):
    return gv.scan(flip_step)(jnp.int32(0), p * jnp.ones(3)) @ "steps"


def test_mvd_inside_scan_combinator_names_the_full_address():
    prog = gv.expectation(
        lambda k, p: nested_scan_model.simulate(k, (p,)).retval[0] * 1.0,
        estimators={("steps", "flip"): adev.mvd},
    )
    with pytest.raises(ValueError, match=re.escape("mvd at ('steps', 'flip')") + ".*jax.lax.scan"):
        jax.grad(prog, argnums=1)(KEY, 0.3)


def test_enum_on_continuous_distribution():
    @gv.expectation
    def prog(k, m):
        return adev.sample(gv.normal(m, 1.0).using(adev.enum), k)

    with pytest.raises(ValueError, match=r"(?s)enum.*Normal has no finite support.*mvd"):
        prog(KEY, 0.0)


def test_mvd_without_decomposition_and_baseline_of_non_reinforce():
    @gv.expectation
    def prog(k, a):
        return adev.sample(gv.gamma(a, 1.0).using(adev.mvd), k)

    with pytest.raises(ValueError, match=r"(?s)mvd.*Gamma.*supported: Normal"):
        prog(KEY, 2.0)
    with pytest.raises(TypeError, match=r"(?s)baseline wraps gv.adev.reinforce"):
        adev.baseline(adev.reparam, 1.0)


@gv.gen
def one_normal(m):
    return gv.normal(m, 1.0) @ "x"


def test_sampling_in_while_loop():
    @gv.expectation
    def prog(k, m):
        def body(c):
            i, s, kk = c
            kk, sub = jax.random.split(kk)
            return i + 1, s + one_normal.simulate(sub, (m,)).retval, kk

        return jax.lax.while_loop(lambda c: c[0] < 3, body, (0, jnp.float32(0.0), k))[1]

    with pytest.raises(NotImplementedError, match=r"(?s)inside `while`.*'x'.*jax\.lax\.scan"):
        jax.grad(prog, argnums=1)(KEY, 0.3)


def test_deterministic_while_loop_is_fine():
    @gv.expectation
    def prog(k, m):
        x = adev.sample(gv.normal(m, 1.0), k)
        return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 0.5 + x),
                                  (0, x))[1]

    # forward-mode only: reverse mode through a while_loop is a JAX limitation
    out, tan = jax.jvp(lambda m: prog(KEY, m), (0.3,), (1.0,))
    assert jnp.isfinite(out) and abs(float(tan) - (1 + 0.5 + 0.25 + 0.125)) < 1e-5


def test_non_scalar_return():
    @gv.expectation
    def prog(k, m):
        return adev.sample(gv.normal(m, 1.0), k) * jnp.ones(3)

    with pytest.raises(TypeError, match=r"(?s)`prog` must return a float scalar.*\(3,\).*jnp.mean"):
        prog(KEY, 0.0)

    @gv.expectation
    def ints(k, p):
        return adev.sample(gv.bernoulli(p), k)

    with pytest.raises(TypeError, match=r"(?s)must return a float scalar.*int32"):
        ints(KEY, 0.5)


def test_differentiating_a_sample_outside_an_expectation_program():
    f = lambda m: adev.sample(gv.normal(m, 1.0), KEY) ** 2
    assert jnp.isfinite(f(0.3))  # sampling alone is fine
    with pytest.raises(TypeError, match=r"(?s)differentiated outside an expectation.*gv\.expectation"):
        jax.grad(f)(0.3)
    with pytest.raises(TypeError, match=r"(?s)gv\.expectation"):
        jax.grad(lambda p: adev.sample(gv.bernoulli(p), KEY) * 1.0)(0.3)


def test_add_cost_outside_a_program():
    with pytest.raises(RuntimeError, match=r"(?s)add_cost.*outside an expectation program"):
        adev.add_cost(1.0)
