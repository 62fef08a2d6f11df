"""The `Distribution` base class: parameters as pytree leaves, `sample`, `logpdf`, support."""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from genvi import _effects


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def as_float(x, name: str):
    """Convert a parameter to a floating array (keeps tracers and float dtypes as they are)."""
    if isinstance(x, jax.core.Tracer) or hasattr(x, "dtype"):
        arr = jnp.asarray(x)
        if not jnp.issubdtype(arr.dtype, jnp.inexact):
            arr = arr.astype(jnp.result_type(float))
        return arr
    if isinstance(x, (bool, int, float)) or isinstance(x, (list, tuple)):
        return jnp.asarray(x, dtype=jnp.result_type(float))
    raise TypeError(
        f"parameter `{name}` must be a number or an array, got {type(x).__name__}: {x!r}."
    )


def check_positive(x, name: str, dist: str):
    """Trace-time check of a concrete parameter; under `jit` a bad value gives a NaN logpdf."""
    if _is_concrete(x):
        import numpy as np

        if np.any(np.asarray(x) <= 0):
            raise ValueError(
                f"{dist}: parameter `{name}` must be > 0, got {x}. (Under `jit` such a "
                "value is not checked and gives a non-finite log density.)"
            )


def check_in_range(x, name: str, dist: str, low=None, high=None, *, what: str = ""):
    """Like `check_positive`, for closed bounds `low <= x <= high` (either may be None)."""
    if _is_concrete(x):
        import numpy as np

        v = np.asarray(x)
        if (low is not None and np.any(v < low)) or (high is not None and np.any(v > high)):
            bounds = what or f"in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ValueError(
                f"{dist}: parameter `{name}` must be {bounds}, got {x}. (Under `jit` such a "
                "value is not checked and gives a non-finite log density.)"
            )


def one_of(probs, logits, dist: str):
    """Validate the `probs=` / `logits=` pair: exactly one must be given."""
    if probs is None and logits is None:
        raise ValueError(f"{dist}: give one of `probs` or `logits`; neither was given.")
    if probs is not None and logits is not None:
        raise ValueError(f"{dist}: give only one of `probs` or `logits`; both were given.")


class Distribution(eqx.Module):
    """A primitive distribution. Parameters are array fields (pytree leaves).

    Subclasses implement `_sample(key, shape)` and `log_prob(x)` (elementwise over the batch
    shape, summed over the event shape); `logpdf(x)` sums `log_prob` to a scalar, which is
    what a trace's score adds up.
    """

    is_discrete: ClassVar[bool] = False
    reparameterizable: ClassVar[bool] = False
    support: ClassVar[str] = "real"
    event_ndims: ClassVar[int] = 0

    # -- to implement -------------------------------------------------------------------
    def _sample(self, key, shape: tuple):
        raise NotImplementedError

    def log_prob(self, x):
        raise NotImplementedError

    @property
    def batch_shape(self) -> tuple:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        return ()

    def sample(self, key, shape: tuple = ()):
        """Draw `shape + batch_shape + event_shape` values with a JAX PRNG key."""
        if isinstance(shape, int):
            shape = (shape,)
        return self._sample(key, tuple(shape))

    def logpdf(self, x):
        """Log density (or mass) of `x`, summed over all dimensions to a scalar."""
        return jnp.sum(self.log_prob(x))

    def enumerate_support(self):
        """The finite support as an array along axis 0, or None if it is not finite."""
        return None

    @property
    def has_finite_support(self) -> bool:
        return False

    def check_value(self, x, where: str = "") -> None:
        """Trace-time validation of a value given for this distribution (dtype and shape)."""
        name = type(self).__name__
        at = f" at address {where!r}" if where else ""
        if not hasattr(x, "shape"):
            try:
                x = jnp.asarray(x)
            except TypeError as e:
                raise TypeError(f"value{at} for {name} is not an array: {x!r}") from e
        dtype = jnp.result_type(x)
        if self.is_discrete and jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"value{at} has floating dtype {dtype}, but {name} is a discrete distribution "
                f"whose values are integers.\nFix: pass an integer array, e.g. "
                f"`jnp.asarray(v, dtype=jnp.int32)`."
            )
        if not self.is_discrete and not (
            jnp.issubdtype(dtype, jnp.inexact) or jnp.issubdtype(dtype, jnp.integer)
            or dtype == jnp.bool_
        ):
            raise TypeError(f"value{at} for {name} has unsupported dtype {dtype}.")
        expected = tuple(self.batch_shape) + tuple(self.event_shape)
        shape = tuple(jnp.shape(x))
        if self.event_ndims > 0:
            ev = tuple(self.event_shape)
            if shape[len(shape) - len(ev):] != ev:
                raise ValueError(
                    f"value{at} has shape {shape}, but {name} draws values of shape "
                    f"{expected} (event shape {ev}).\nFix: give a value whose trailing "
                    f"dimensions are {ev}."
                )
        try:
            jnp.broadcast_shapes(shape, expected)
        except ValueError as e:
            raise ValueError(
                f"value{at} has shape {shape}, which does not fit {name}'s value shape "
                f"{expected}."
            ) from e

    def using(self, estimator) -> Using:
        """This distribution with a gradient estimator chosen for its sample site.

        Example:
            `gv.bernoulli(p).using(gv.adev.enum) @ "coin"`
        """
        return Using(self, estimator)

    def __matmul__(self, addr):
        return _effects.visit(addr, self)


class Using(eqx.Module):
    """A distribution paired with the gradient estimator its sample site should use."""

    dist: Distribution
    estimator: Any

    def __matmul__(self, addr):
        return _effects.visit(addr, self)

    def using(self, estimator) -> Using:
        return Using(self.dist, estimator)

    def __getattr__(self, name):
        # Delegate distribution queries (logpdf, support, ...) to the wrapped distribution.
        if name in ("dist", "estimator"):
            raise AttributeError(name)
        return getattr(self.dist, name)


def unwrap(d):
    """(distribution, estimator-or-None) for a `Distribution` or a `Using`."""
    if isinstance(d, Using):
        return d.dist, d.estimator
    return d, None


def broadcast_batch(*params) -> tuple:
    return tuple(jnp.broadcast_shapes(*[jnp.shape(p) for p in params]))
