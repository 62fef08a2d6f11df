"""Vector-valued distributions: the last axis is the event axis (`event_ndims = 1`).

`log_prob` sums over the event axis, so its shape is the batch shape (broadcast with any
leading sample dimensions of the value).
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln, xlogy

from genvi.distributions._base import Distribution, _is_concrete, as_float, check_positive


def _at_least_1d(x, name: str, dist: str):
    if jnp.ndim(x) < 1:
        raise ValueError(
            f"{dist}: parameter `{name}` must have at least one dimension (the event "
            f"dimension), got a scalar {x}."
        )


def _check_event(x, event_shape: tuple, dist: str):
    """Shapes are static, so this check also runs under `jit`: it stops a length-1 value
    from silently broadcasting against the event axis."""
    shape = tuple(jnp.shape(x))
    if shape[-1:] != tuple(event_shape):
        raise ValueError(
            f"{dist}: value has shape {shape}, but its last dimension must be the event "
            f"shape {tuple(event_shape)}."
        )


class MvNormalDiag(Distribution):
    """Multivariate normal with diagonal covariance `diag(scale_diag**2)`. Reparameterizable."""

    loc: jax.Array
    scale_diag: jax.Array
    reparameterizable: ClassVar[bool] = True
    event_ndims: ClassVar[int] = 1

    def __init__(self, loc, scale_diag):
        self.loc = as_float(loc, "loc")
        self.scale_diag = as_float(scale_diag, "scale_diag")
        try:
            shape = jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale_diag))
        except ValueError as e:
            raise ValueError(
                f"mv_normal_diag: `loc` shape {jnp.shape(self.loc)} and `scale_diag` shape "
                f"{jnp.shape(self.scale_diag)} do not broadcast."
            ) from e
        if len(shape) < 1:
            raise ValueError(
                "mv_normal_diag: `loc` or `scale_diag` must have at least one dimension "
                "(the event dimension); both are scalars."
            )
        check_positive(self.scale_diag, "scale_diag", "mv_normal_diag")

    @property
    def _shape(self):
        return tuple(jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale_diag)))

    @property
    def batch_shape(self):
        return self._shape[:-1]

    @property
    def event_shape(self):
        return self._shape[-1:]

    def _sample(self, key, shape):
        dtype = jnp.result_type(self.loc, self.scale_diag)
        eps = jax.random.normal(key, shape + self._shape, dtype=dtype)
        return self.loc + self.scale_diag * eps

    def log_prob(self, x):
        _check_event(x, self.event_shape, "mv_normal_diag")
        z = (x - self.loc) / self.scale_diag
        lp = -0.5 * z**2 - jnp.log(self.scale_diag) - 0.5 * math.log(2 * math.pi)
        return jnp.sum(lp, axis=-1)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self._shape)

    @property
    def variance(self):
        return jnp.broadcast_to(self.scale_diag**2, self._shape)


def mv_normal_diag(loc, scale_diag) -> MvNormalDiag:
    """Multivariate normal with mean `loc` and independent coordinates of std `scale_diag`.

    The covariance is `diag(scale_diag**2)`. The last axis of the broadcast of `loc` and
    `scale_diag` is the event axis; leading axes are batch axes.
    """
    return MvNormalDiag(loc, scale_diag)


class MvNormal(Distribution):
    """Multivariate normal with full covariance, stored as its Cholesky factor `scale_tril`.

    Storing only the factor keeps the pytree free of redundant leaves that could disagree
    after a tree transformation; `covariance` is derived. Reparameterizable:
    `loc + scale_tril @ eps`.
    """

    loc: jax.Array
    scale_tril: jax.Array
    reparameterizable: ClassVar[bool] = True
    event_ndims: ClassVar[int] = 1

    def __init__(self, loc, covariance=None, *, scale_tril=None):
        if (covariance is None) == (scale_tril is None):
            raise ValueError("mv_normal: give exactly one of `covariance` or `scale_tril`.")
        name = "covariance" if scale_tril is None else "scale_tril"
        mat = as_float(covariance if scale_tril is None else scale_tril, name)
        loc = as_float(loc, "loc")
        if jnp.ndim(mat) < 2 or jnp.shape(mat)[-1] != jnp.shape(mat)[-2]:
            raise ValueError(
                f"mv_normal: `{name}` must be a (batch of) square matrices, got shape "
                f"{jnp.shape(mat)}."
            )
        d = jnp.shape(mat)[-1]
        if jnp.ndim(loc) == 0:
            loc = jnp.broadcast_to(loc, (d,))
        if jnp.shape(loc)[-1] != d:
            raise ValueError(
                f"mv_normal: `loc` has shape {jnp.shape(loc)} (event size {jnp.shape(loc)[-1]}) "
                f"but `{name}` has shape {jnp.shape(mat)} (event size {d}); the last "
                "dimension of `loc` must match."
            )
        if scale_tril is None:
            # Cholesky reads one triangle only, so an asymmetric matrix would pass silently.
            if _is_concrete(mat) and not bool(jnp.allclose(mat, jnp.swapaxes(mat, -1, -2))):
                raise ValueError("mv_normal: `covariance` must be symmetric.")
            mat = jnp.linalg.cholesky(mat)
            if _is_concrete(mat) and not bool(jnp.all(jnp.isfinite(mat))):
                raise ValueError(
                    "mv_normal: `covariance` must be symmetric positive definite (its "
                    "Cholesky factorization failed). (Under `jit` this is not checked and "
                    "gives NaN samples and log densities.)"
                )
        else:
            mat = jnp.tril(mat)
            check_positive(jnp.diagonal(mat, axis1=-2, axis2=-1), "diag(scale_tril)", "mv_normal")
        self.loc = loc
        self.scale_tril = mat

    @property
    def batch_shape(self):
        return tuple(jnp.broadcast_shapes(jnp.shape(self.loc)[:-1], jnp.shape(self.scale_tril)[:-2]))

    @property
    def event_shape(self):
        return tuple(jnp.shape(self.loc)[-1:])

    @property
    def covariance(self):
        L = self.scale_tril
        return L @ jnp.swapaxes(L, -1, -2)

    def _sample(self, key, shape):
        dtype = jnp.result_type(self.loc, self.scale_tril)
        eps = jax.random.normal(key, shape + self.batch_shape + self.event_shape, dtype=dtype)
        return self.loc + jnp.einsum("...ij,...j->...i", self.scale_tril, eps)

    def log_prob(self, x):
        _check_event(x, self.event_shape, "mv_normal")
        diff = x - self.loc
        L = jnp.broadcast_to(self.scale_tril, diff.shape[:-1] + self.scale_tril.shape[-2:])
        z = solve_triangular(L, diff[..., None], lower=True)[..., 0]
        half_logdet = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1)
        d = self.event_shape[0]
        return -0.5 * jnp.sum(z**2, -1) - half_logdet - 0.5 * d * math.log(2 * math.pi)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        """Marginal variances: the diagonal of the covariance."""
        var = jnp.sum(self.scale_tril**2, axis=-1)
        return jnp.broadcast_to(var, self.batch_shape + self.event_shape)


def mv_normal(loc, covariance=None, *, scale_tril=None) -> MvNormal:
    """Multivariate normal with mean `loc` and covariance matrix `covariance`.

    Args:
        loc: mean, shape `batch + (d,)` (a scalar is broadcast to `(d,)`).
        covariance: symmetric positive-definite matrix, shape `batch + (d, d)`; factorized
            once here by Cholesky. A non-PD concrete matrix raises ValueError; under `jit`
            it gives NaN.
        scale_tril: alternatively (keyword only), the lower-triangular Cholesky factor `L`
            with `covariance = L @ L.T` and positive diagonal; convenient for variational
            families, since any such `L` is valid.
    """
    return MvNormal(loc, covariance, scale_tril=scale_tril)


class Dirichlet(Distribution):
    """Dirichlet(concentration) on the probability simplex (last axis).

    Reparameterizable through `jax.random.dirichlet` (normalized gamma draws with the
    implicit-reparameterization gradient).
    """

    concentration: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "simplex"
    event_ndims: ClassVar[int] = 1

    def __init__(self, concentration):
        self.concentration = as_float(concentration, "concentration")
        _at_least_1d(self.concentration, "concentration", "dirichlet")
        check_positive(self.concentration, "concentration", "dirichlet")

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.concentration)[:-1])

    @property
    def event_shape(self):
        return tuple(jnp.shape(self.concentration)[-1:])

    def _sample(self, key, shape):
        a = self.concentration
        return jax.random.dirichlet(key, a, shape + self.batch_shape, dtype=a.dtype)

    def log_prob(self, x):
        _check_event(x, self.event_shape, "dirichlet")
        a = self.concentration
        # The sum tolerance allows float32 rounding of values that were normalized.
        ok = jnp.all(x >= 0, -1) & (jnp.abs(jnp.sum(x, -1) - 1) <= 1e-4)
        xs = jnp.where(ok[..., None], x, 1.0 / x.shape[-1])
        lp = jnp.sum(xlogy(a - 1, xs), -1) + gammaln(jnp.sum(a, -1)) - jnp.sum(gammaln(a), -1)
        return jnp.where(ok, lp, -jnp.inf)

    @property
    def mean(self):
        a = self.concentration
        return a / jnp.sum(a, -1, keepdims=True)

    @property
    def variance(self):
        a = self.concentration
        a0 = jnp.sum(a, -1, keepdims=True)
        return a * (a0 - a) / (a0**2 * (a0 + 1))


def dirichlet(concentration) -> Dirichlet:
    """Dirichlet distribution over probability vectors, density ∝ `prod(x**(concentration - 1))`.

    The last axis of `concentration` (all entries > 0) is the event axis.
    """
    return Dirichlet(concentration)
