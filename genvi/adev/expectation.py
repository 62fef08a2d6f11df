"""Expectation programs: `@gv.expectation` functions whose gradient is the ADEV estimate."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from genvi import _effects
from genvi.adev._primitive import add_cost_p, sample_p
from genvi.adev.estimators import Estimator, default_for
from genvi.adev.interpreter import run_expectation
from genvi.distributions._base import Distribution, Using, unwrap

_overrides: contextvars.ContextVar[dict | None] = contextvars.ContextVar("genvi_estimators", default=None)
_staging: contextvars.ContextVar[bool] = contextvars.ContextVar("genvi_staging", default=False)


def _norm_addr(a) -> tuple:
    return a if isinstance(a, tuple) else (a,)


def _choose(d, addr: tuple):
    dist, est = unwrap(d)
    if est is None:
        est = (_overrides.get() or {}).get(addr)
    if est is None:
        est = default_for(dist)
    if not isinstance(est, Estimator):
        raise TypeError(f"estimator at {addr!r} must be a gv.adev estimator, got {est!r}")
    est.check(dist, addr)
    return dist, est


def _bind_sample(d, key, addr: tuple, check: bool = True):
    if not isinstance(d, (Distribution, Using)):
        raise TypeError(f"gv.adev.sample expects a distribution, got {type(d).__name__}")
    if check:
        dist, est = _choose(d, addr)
    else:
        dist, est = unwrap(d)
        est = default_for(dist) if est is None else est
    if not jax.dtypes.issubdtype(jnp.result_type(key), jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    d_leaves, d_def = jax.tree.flatten(dist)
    e_leaves, e_def = jax.tree.flatten(est)
    return sample_p.bind(
        key, *d_leaves, *e_leaves, dist_def=d_def, est_def=e_def, n_dist=len(d_leaves),
        addr=addr, batch_ndims=0,
    )


@contextlib.contextmanager
def _staging_context(estimators):
    t1 = _overrides.set({**(_overrides.get() or {}), **estimators})
    t2 = _staging.set(True)
    try:
        with _effects.sampler(_bind_sample):
            yield
    finally:
        _staging.reset(t2)
        _overrides.reset(t1)


def sample(dist, key):
    """Sample an unaddressed value inside an expectation program, with its estimator.

    Example:
        >>> @gv.expectation
        ... def f(key, theta):
        ...     x = gv.adev.sample(gv.bernoulli(theta).using(gv.adev.enum), key)
        ...     return x * 2.0

    Outside an expectation program it just samples; differentiating that sample is an
    error (a discrete sample would silently get a zero gradient).
    """
    if not _staging.get():
        return _bind_sample(dist, key, (), check=False)
    return _effects.sample(dist, key, ())


def add_cost(value) -> None:
    """Add `value` to the result of the enclosing expectation program.

    Useful where a term arises deep inside a program (inside a generative function, a
    `cond` branch or a `scan` body) that would be awkward to thread to the return value.
    """
    if not _staging.get():
        raise RuntimeError(
            "gv.adev.add_cost was called outside an expectation program.\nFix: call it inside "
            "a function decorated with @gv.expectation."
        )
    add_cost_p.bind(jnp.asarray(value, jnp.result_type(float)))


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


class Expectation:
    """An expectation program `f(key, *args) -> scalar` (see `gv.expectation`)."""

    def __init__(self, fn: Callable, estimators: Mapping | None = None, name: str | None = None):
        self.fn = fn
        self.estimators = {_norm_addr(k): v for k, v in (estimators or {}).items()}
        self.name = name or getattr(fn, "__name__", "expectation")
        self._cache: dict = {}
        functools.update_wrapper(self, fn, updated=())

    def _stage(self, key, dyn, static):
        leaves, treedef = jax.tree.flatten(dyn)
        sig = (treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
        ck = (sig, jax.tree.structure(static), tuple(jax.tree.leaves(static)), jnp.shape(key))
        ck = ck if _hashable(ck) else None
        if ck is not None and ck in self._cache:
            return self._cache[ck]

        def flat_fn(k, *ls):
            args = eqx.combine(jax.tree.unflatten(treedef, ls), static)
            out = self.fn(k, *args)
            if jnp.shape(out) != () or not jnp.issubdtype(jnp.result_type(out), jnp.inexact):
                raise TypeError(
                    f"expectation program `{self.name}` must return a float scalar, got "
                    f"shape {jnp.shape(out)} dtype {jnp.result_type(out)}.\nFix: reduce it, "
                    "e.g. return jnp.mean(values)."
                )
            return jnp.asarray(out)

        with _staging_context(self.estimators):
            closed = jax.make_jaxpr(flat_fn)(key, *leaves)

        @jax.custom_jvp
        def run(k, *ls):
            return run_expectation(closed, [k, *ls])[0]

        @run.defjvp
        def run_jvp(primals, tangents):
            k, *ls = primals
            _, *ts = tangents
            ts = [
                None if (t is None or jnp.result_type(t) == jax.dtypes.float0
                         or type(t).__name__ == "Zero") else t
                for t in ts
            ]
            return run_expectation(closed, [k, *ls], [None, *ts])

        entry = (run, treedef)
        if ck is not None:
            self._cache[ck] = entry
        return entry

    def __call__(self, key, *args):
        """An unbiased estimate of the expectation; differentiate it for the ADEV gradient."""
        if not jax.dtypes.issubdtype(jnp.result_type(key), jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        dyn, static = eqx.partition(args, eqx.is_array)
        run, treedef = self._stage(key, dyn, static)
        return run(key, *jax.tree.leaves(dyn))

    def estimate(self, key, *args):
        """Same as calling the program: an unbiased estimate of its expectation."""
        return self(key, *args)

    def grad_estimate(self, key, *args, argnums=0):
        """The ADEV gradient estimate with respect to `args[argnums]`."""
        return jax.grad(lambda *a: self(key, *a), argnums=argnums)(*args)

    def value_and_grad_estimate(self, key, *args, argnums=0):
        """(estimate, gradient estimate) from one run of the program."""
        return jax.value_and_grad(lambda *a: self(key, *a), argnums=argnums)(*args)

    def __repr__(self):
        return f"<gv.expectation {self.name}>"


def expectation(fn: Callable | None = None, *, estimators: Mapping | None = None):
    """Make an expectation program: `f(key, *args) -> scalar`.

    Calling it returns an unbiased estimate of E[f]; `jax.grad` of that call is an unbiased
    estimate of the gradient (ADEV: Lew, Huot, Staton, Mansinghka, POPL 2023). Each random
    choice uses its site's estimator, `estimators={"addr": est}` overrides by address, and the
    default is REPARAM where possible, REINFORCE otherwise.

    Example:
        >>> @gv.expectation
        ... def f(key, mu):
        ...     x = gv.adev.sample(gv.normal(mu, 1.0), key)
        ...     return x ** 2
        >>> g = jax.grad(f, argnums=1)(jax.random.key(0), 0.5)   # estimates 2 * mu
    """
    if fn is None:
        return lambda f: expectation(f, estimators=estimators)
    if isinstance(fn, Expectation):
        return fn
    return Expectation(fn, estimators)


def E(fn) -> Expectation:
    """A nested expectation: `gv.adev.E(g)(key, *args)` inside another program."""
    return expectation(fn)
