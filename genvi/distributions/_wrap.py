"""`wrap`: use a distribution object from another JAX library (NumPyro, TFP-on-JAX, distrax)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import jax
import jax.numpy as jnp

from genvi.distributions._base import Distribution


def _sample_call(obj):
    """How `obj.sample` takes its key: NumPyro's `sample(key, sample_shape)`, or the
    `sample(sample_shape, seed=key)` / `sample(seed=key, sample_shape=...)` of TFP and
    distrax."""
    try:
        params = inspect.signature(obj.sample).parameters
    except (TypeError, ValueError):
        params = {}
    if "seed" in params:
        return lambda key, shape: obj.sample(seed=key, sample_shape=shape)
    if "sample_shape" in params:
        return lambda key, shape: obj.sample(key, sample_shape=shape)
    return lambda key, shape: obj.sample(key, shape)


def _attr(obj, name):
    """An attribute that some libraries expose as a property and others as a method."""
    v = getattr(obj, name)
    return v() if callable(v) else v


class Wrapped(Distribution):
    """A `Distribution` that delegates to a foreign distribution object `obj`.

    `obj` is a field, so it is part of the pytree: NumPyro distributions are pytrees
    themselves, and their parameters become leaves (traced by `jit`, differentiated by
    `grad`).
    """

    obj: Any

    def __init__(self, obj):
        missing = [m for m in ("sample", "log_prob") if not callable(getattr(obj, m, None))]
        if missing:
            raise TypeError(
                f"wrap: {type(obj).__name__} has no {' or '.join(f'`{m}`' for m in missing)} "
                "method; `wrap` needs an object with `sample(key, sample_shape)` and "
                "`log_prob(x)` (e.g. a NumPyro, TFP-on-JAX or distrax distribution)."
            )
        self.obj = obj

    @property
    def is_discrete(self) -> bool:
        support = getattr(self.obj, "support", None)
        if hasattr(support, "is_discrete"):
            return bool(support.is_discrete)
        dtype = getattr(self.obj, "dtype", None)
        try:
            return dtype is not None and jnp.issubdtype(dtype, jnp.integer)
        except TypeError:
            return False

    @property
    def reparameterizable(self) -> bool:
        if hasattr(self.obj, "has_rsample"):
            return bool(self.obj.has_rsample)
        # TFP marks this with `reparameterization_type == FULLY_REPARAMETERIZED`.
        rt = getattr(self.obj, "reparameterization_type", None)
        return rt is not None and "FULLY" in str(rt).upper()

    @property
    def support(self) -> str:
        """NumPyro's constraint class name in genvi's spelling (`_UnitInterval` ->
        'unit_interval'); an `independent` constraint reports its base constraint."""
        s = getattr(self.obj, "support", None)
        if s is None:
            return "unknown"
        s = getattr(s, "base_constraint", s)
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(s).__name__.strip("_")).lower()

    @property
    def event_shape(self) -> tuple:
        ev = getattr(self.obj, "event_shape", None)
        if ev is None:
            return tuple(self._draw_shape()[len(self.batch_shape):])
        return tuple(ev)

    @property
    def event_ndims(self) -> int:
        return len(self.event_shape)

    @property
    def batch_shape(self) -> tuple:
        bs = getattr(self.obj, "batch_shape", None)
        if bs is None:
            # Without metadata, treat the whole draw as batch (event_shape then is ()).
            return self._draw_shape()
        return tuple(bs)

    def _draw_shape(self) -> tuple:
        out = jax.eval_shape(lambda k: _sample_call(self.obj)(k, ()), jax.random.key(0))
        return tuple(out.shape)

    def _sample(self, key, shape):
        return _sample_call(self.obj)(key, shape)

    def log_prob(self, x):
        return self.obj.log_prob(x)

    def enumerate_support(self):
        if getattr(self.obj, "has_enumerate_support", False):
            return self.obj.enumerate_support()
        return None

    @property
    def has_finite_support(self) -> bool:
        return bool(getattr(self.obj, "has_enumerate_support", False))

    @property
    def mean(self):
        return _attr(self.obj, "mean")

    @property
    def variance(self):
        return _attr(self.obj, "variance")


def wrap(obj) -> Wrapped:
    """Adapt a foreign distribution object into a genvi `Distribution`.

    Args:
        obj: any object with `sample` and `log_prob` methods: a NumPyro distribution
            (`sample(key, sample_shape)`), or a TFP-on-JAX / distrax one (which take the key
            as `seed=`).

    `is_discrete` comes from `obj.support.is_discrete` (else an integer `obj.dtype`);
    `reparameterizable` from `obj.has_rsample` (else TFP's reparameterization type, else
    False). Raises TypeError if `sample` or `log_prob` is missing.
    """
    return Wrapped(obj)
