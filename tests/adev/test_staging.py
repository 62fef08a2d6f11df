"""Staging: a program is traced once per argument structure, and the time to stage and
compile a program grows about linearly with its number of sites."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv
from genvi import adev


def test_program_is_staged_once_per_shape():
    traces = []

    @gv.expectation
    def prog(key, m):
        traces.append(jnp.shape(m))
        x = adev.sample(gv.normal(m, 1.0), key)
        b = adev.sample(gv.bernoulli(jax.nn.sigmoid(jnp.sum(x))).using(adev.enum), key)
        return jnp.sum(x**2) * b

    k = jax.random.key(0)
    prog(k, jnp.float32(0.1))
    prog(k, jnp.float32(0.2))
    jax.grad(prog, argnums=1)(k, jnp.float32(0.3))
    prog.value_and_grad_estimate(k, jnp.float32(0.4))
    g = jax.jit(jax.vmap(lambda kk, m: jax.grad(prog, argnums=1)(kk, m)))
    g(jax.random.split(k, 4), jnp.ones(4))
    g(jax.random.split(k, 4), jnp.zeros(4))  # jit cache: no new trace of anything
    assert traces == [()]
    prog(k, jnp.ones(3))  # a new shape is a new program
    prog(k, jnp.zeros(3))
    assert traces == [(), (3,)]


def _many_sites(n):
    # One shared key: XLA then deduplicates the random bits, so the timing measures what
    # genvi controls (staging, interpretation, lowering) rather than n threefry kernels.
    @gv.expectation
    def prog(key, m):
        total = 0.0
        for i in range(n):
            total = total + jnp.sin(adev.sample(gv.normal(m + 0.01 * i, 1.0), key))
        return total

    return prog


def _stage_and_compile_time(n):
    prog, k = _many_sites(n), jax.random.key(1)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.grad(prog, argnums=1)).lower(k, 0.5).compile()
    elapsed = time.perf_counter() - t0
    assert np.isfinite(compiled(k, 0.5))
    return elapsed


def test_compile_time_grows_about_linearly_with_sites():
    _stage_and_compile_time(5)  # warm up JAX's own caches
    t50 = min(_stage_and_compile_time(50) for _ in range(2))
    t200 = _stage_and_compile_time(200)
    assert t200 / t50 < 8, f"50 sites: {t50:.2f}s, 200 sites: {t200:.2f}s (ratio {t200 / t50:.1f})"
