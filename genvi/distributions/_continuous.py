"""Continuous scalar distributions (NumPyro's parameterizations, positionally).

Every one is reparameterizable: `_sample` is a differentiable function of the parameters.
`log_prob` is -inf outside the support.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, gammaln, xlog1py, xlogy

from genvi.distributions._base import Distribution, as_float, broadcast_batch, check_positive


class Normal(Distribution):
    """Normal(loc, scale). Reparameterizable: `loc + scale * eps`."""

    loc: jax.Array
    scale: jax.Array
    reparameterizable: ClassVar[bool] = True

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = as_float(loc, "loc")
        self.scale = as_float(scale, "scale")
        check_positive(self.scale, "scale", "normal")

    @property
    def batch_shape(self):
        return broadcast_batch(self.loc, self.scale)

    def _sample(self, key, shape):
        eps = jax.random.normal(key, shape + self.batch_shape, dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, x):
        z = (x - self.loc) / self.scale
        return -0.5 * z**2 - jnp.log(self.scale) - 0.5 * math.log(2 * math.pi)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape)

    @property
    def variance(self):
        return jnp.broadcast_to(self.scale**2, self.batch_shape)


def normal(loc=0.0, scale=1.0) -> Normal:
    """Normal distribution with mean `loc` and standard deviation `scale`."""
    return Normal(loc, scale)


def _masked(ok, lp):
    """`lp` where `ok`, else -inf. Callers evaluate `lp` at a safe in-support stand-in for
    `x` where `ok` is False, so the discarded branch cannot put NaN into gradients."""
    return jnp.where(ok, lp, -jnp.inf)


def _dtype(*params):
    return jnp.result_type(*params)


class Uniform(Distribution):
    """Uniform(low, high) on the closed interval. Reparameterizable: `low + (high-low)*u`."""

    low: jax.Array
    high: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "interval"

    def __init__(self, low=0.0, high=1.0):
        self.low = as_float(low, "low")
        self.high = as_float(high, "high")
        check_positive(self.high - self.low, "high - low", "uniform")

    @property
    def batch_shape(self):
        return broadcast_batch(self.low, self.high)

    def _sample(self, key, shape):
        u = jax.random.uniform(key, shape + self.batch_shape, dtype=_dtype(self.low, self.high))
        return self.low + (self.high - self.low) * u

    def log_prob(self, x):
        ok = (x >= self.low) & (x <= self.high)
        return _masked(ok, -jnp.log(self.high - self.low))

    @property
    def mean(self):
        return jnp.broadcast_to((self.low + self.high) / 2, self.batch_shape)

    @property
    def variance(self):
        return jnp.broadcast_to((self.high - self.low) ** 2 / 12, self.batch_shape)


def uniform(low=0.0, high=1.0) -> Uniform:
    """Uniform distribution on the interval `[low, high]`.

    Args:
        low: lower bound.
        high: upper bound; must exceed `low` (checked for concrete values; under `jit`
            a bad value gives a non-finite log density).
    """
    return Uniform(low, high)


class Beta(Distribution):
    """Beta(concentration1, concentration0), density ∝ x^(c1-1) (1-x)^(c0-1).

    Reparameterizable: a ratio of gamma draws, differentiable through the gamma sampler's
    implicit-reparameterization JVP.
    """

    concentration1: jax.Array
    concentration0: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "unit_interval"

    def __init__(self, concentration1=1.0, concentration0=1.0):
        self.concentration1 = as_float(concentration1, "concentration1")
        self.concentration0 = as_float(concentration0, "concentration0")
        check_positive(self.concentration1, "concentration1", "beta")
        check_positive(self.concentration0, "concentration0", "beta")

    @property
    def batch_shape(self):
        return broadcast_batch(self.concentration1, self.concentration0)

    def _sample(self, key, shape):
        # x = g_a / (g_a + g_b) with both gamma draws in one (log-space) sampler call: one
        # rejection loop to compile instead of two, and no underflow for small parameters.
        a, b = self.concentration1, self.concentration0
        full = shape + self.batch_shape
        conc = jnp.stack([jnp.broadcast_to(a, full), jnp.broadcast_to(b, full)])
        log_g = jax.random.loggamma(key, conc, (2,) + full, dtype=_dtype(a, b))
        return jax.nn.sigmoid(log_g[0] - log_g[1])

    def log_prob(self, x):
        a, b = self.concentration1, self.concentration0
        ok = (x >= 0) & (x <= 1)
        xs = jnp.where(ok, x, 0.5)
        lp = xlogy(a - 1, xs) + xlog1py(b - 1, -xs) - betaln(a, b)
        return _masked(ok, lp)

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return jnp.broadcast_to(a / (a + b), self.batch_shape)

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        return jnp.broadcast_to(a * b / ((a + b) ** 2 * (a + b + 1)), self.batch_shape)


def beta(concentration1=1.0, concentration0=1.0) -> Beta:
    """Beta distribution on `[0, 1]` with density ∝ `x**(c1 - 1) * (1 - x)**(c0 - 1)`.

    Args:
        concentration1: the first shape parameter ("alpha", the exponent of `x`), > 0.
        concentration0: the second shape parameter ("beta", the exponent of `1 - x`), > 0.
    """
    return Beta(concentration1, concentration0)


class Gamma(Distribution):
    """Gamma(concentration, rate), mean `concentration / rate`.

    Reparameterizable: `jax.random.gamma(key, concentration) / rate`, differentiable in the
    concentration through its implicit-reparameterization JVP.
    """

    concentration: jax.Array
    rate: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "positive"

    def __init__(self, concentration=1.0, rate=1.0):
        self.concentration = as_float(concentration, "concentration")
        self.rate = as_float(rate, "rate")
        check_positive(self.concentration, "concentration", "gamma")
        check_positive(self.rate, "rate", "gamma")

    @property
    def batch_shape(self):
        return broadcast_batch(self.concentration, self.rate)

    def _sample(self, key, shape):
        c, r = self.concentration, self.rate
        return jax.random.gamma(key, c, shape + self.batch_shape, dtype=_dtype(c, r)) / r

    def log_prob(self, x):
        c, r = self.concentration, self.rate
        ok = x >= 0
        xs = jnp.where(ok, x, 1.0)
        # xlogy keeps the exponential case (c == 1) finite at x == 0.
        lp = c * jnp.log(r) + xlogy(c - 1, xs) - r * xs - gammaln(c)
        return _masked(ok, lp)

    @property
    def mean(self):
        return jnp.broadcast_to(self.concentration / self.rate, self.batch_shape)

    @property
    def variance(self):
        return jnp.broadcast_to(self.concentration / self.rate**2, self.batch_shape)


def gamma(concentration=1.0, rate=1.0) -> Gamma:
    """Gamma distribution with shape `concentration` and inverse scale `rate`.

    Density ∝ `x**(concentration - 1) * exp(-rate * x)`; mean `concentration / rate`
    (scipy's `gamma(a=concentration, scale=1/rate)`).
    """
    return Gamma(concentration, rate)


class Exponential(Distribution):
    """Exponential(rate), mean `1 / rate`. Reparameterizable: `E / rate`, E ~ Exp(1)."""

    rate: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "positive"

    def __init__(self, rate=1.0):
        self.rate = as_float(rate, "rate")
        check_positive(self.rate, "rate", "exponential")

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.rate))

    def _sample(self, key, shape):
        e = jax.random.exponential(key, shape + self.batch_shape, dtype=self.rate.dtype)
        return e / self.rate

    def log_prob(self, x):
        ok = x >= 0
        xs = jnp.where(ok, x, 0.0)
        return _masked(ok, jnp.log(self.rate) - self.rate * xs)

    @property
    def mean(self):
        return 1 / self.rate

    @property
    def variance(self):
        return 1 / self.rate**2


def exponential(rate=1.0) -> Exponential:
    """Exponential distribution with density `rate * exp(-rate * x)` on `x >= 0`."""
    return Exponential(rate)


class Laplace(Distribution):
    """Laplace(loc, scale), density `exp(-|x - loc| / scale) / (2 scale)`."""

    loc: jax.Array
    scale: jax.Array
    reparameterizable: ClassVar[bool] = True

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = as_float(loc, "loc")
        self.scale = as_float(scale, "scale")
        check_positive(self.scale, "scale", "laplace")

    @property
    def batch_shape(self):
        return broadcast_batch(self.loc, self.scale)

    def _sample(self, key, shape):
        eps = jax.random.laplace(key, shape + self.batch_shape, dtype=_dtype(self.loc, self.scale))
        return self.loc + self.scale * eps

    def log_prob(self, x):
        return -jnp.abs(x - self.loc) / self.scale - jnp.log(2 * self.scale)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape)

    @property
    def variance(self):
        return jnp.broadcast_to(2 * self.scale**2, self.batch_shape)


def laplace(loc=0.0, scale=1.0) -> Laplace:
    """Laplace (double exponential) distribution with location `loc` and scale `scale`.

    The variance is `2 * scale**2`.
    """
    return Laplace(loc, scale)


class LogNormal(Distribution):
    """LogNormal(loc, scale): `exp(Normal(loc, scale))`. Reparameterizable."""

    loc: jax.Array
    scale: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "positive"

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = as_float(loc, "loc")
        self.scale = as_float(scale, "scale")
        check_positive(self.scale, "scale", "lognormal")

    @property
    def batch_shape(self):
        return broadcast_batch(self.loc, self.scale)

    def _sample(self, key, shape):
        eps = jax.random.normal(key, shape + self.batch_shape, dtype=_dtype(self.loc, self.scale))
        return jnp.exp(self.loc + self.scale * eps)

    def log_prob(self, x):
        ok = x > 0
        logx = jnp.log(jnp.where(ok, x, 1.0))
        lp = Normal(self.loc, self.scale).log_prob(logx) - logx
        return _masked(ok, lp)

    @property
    def mean(self):
        return jnp.broadcast_to(jnp.exp(self.loc + self.scale**2 / 2), self.batch_shape)

    @property
    def variance(self):
        s2 = self.scale**2
        return jnp.broadcast_to(jnp.expm1(s2) * jnp.exp(2 * self.loc + s2), self.batch_shape)


def lognormal(loc=0.0, scale=1.0) -> LogNormal:
    """Log-normal distribution: `exp(z)` with `z ~ normal(loc, scale)`.

    `loc` and `scale` are the mean and standard deviation of `log(x)` (scipy's
    `lognorm(s=scale, scale=exp(loc))`).
    """
    return LogNormal(loc, scale)


class HalfNormal(Distribution):
    """HalfNormal(scale): `|Normal(0, scale)|`. Reparameterizable."""

    scale: jax.Array
    reparameterizable: ClassVar[bool] = True
    support: ClassVar[str] = "positive"

    def __init__(self, scale=1.0):
        self.scale = as_float(scale, "scale")
        check_positive(self.scale, "scale", "half_normal")

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.scale))

    def _sample(self, key, shape):
        eps = jax.random.normal(key, shape + self.batch_shape, dtype=self.scale.dtype)
        return self.scale * jnp.abs(eps)

    def log_prob(self, x):
        ok = x >= 0
        xs = jnp.where(ok, x, 0.0)
        return _masked(ok, Normal(0.0, self.scale).log_prob(xs) + math.log(2.0))

    @property
    def mean(self):
        return self.scale * math.sqrt(2 / math.pi)

    @property
    def variance(self):
        return self.scale**2 * (1 - 2 / math.pi)


def half_normal(scale=1.0) -> HalfNormal:
    """Half-normal distribution: `|z|` with `z ~ normal(0, scale)`, on `x >= 0`."""
    return HalfNormal(scale)


class StudentT(Distribution):
    """StudentT(df, loc, scale). Reparameterizable in all three parameters.

    Sampled as `loc + scale * z / sqrt(g / (df/2))` with `g ~ Gamma(df/2, 1)`, so the
    implicit-reparameterization gradient of the gamma draw carries `d/d df`. The gamma
    draw is taken in log space so that small `df` does not underflow.
    """

    df: jax.Array
    loc: jax.Array
    scale: jax.Array
    reparameterizable: ClassVar[bool] = True

    def __init__(self, df=1.0, loc=0.0, scale=1.0):
        self.df = as_float(df, "df")
        self.loc = as_float(loc, "loc")
        self.scale = as_float(scale, "scale")
        check_positive(self.df, "df", "student_t")
        check_positive(self.scale, "scale", "student_t")

    @property
    def batch_shape(self):
        return broadcast_batch(self.df, self.loc, self.scale)

    def _sample(self, key, shape):
        dtype = _dtype(self.df, self.loc, self.scale)
        kz, kg = jax.random.split(key)
        full = shape + self.batch_shape
        z = jax.random.normal(kz, full, dtype=dtype)
        half = self.df / 2
        log_g = jax.random.loggamma(kg, half, full, dtype=dtype)
        return self.loc + self.scale * z * jnp.exp(-0.5 * (log_g - jnp.log(half)))

    def log_prob(self, x):
        df = self.df
        z = (x - self.loc) / self.scale
        return (
            gammaln((df + 1) / 2) - gammaln(df / 2) - 0.5 * jnp.log(df * math.pi)
            - jnp.log(self.scale) - (df + 1) / 2 * jnp.log1p(z**2 / df)
        )

    @property
    def mean(self):
        m = jnp.where(self.df > 1, self.loc, jnp.nan)
        return jnp.broadcast_to(m, self.batch_shape)

    @property
    def variance(self):
        df = self.df
        v = jnp.where(df > 2, self.scale**2 * df / jnp.where(df > 2, df - 2, 1.0), jnp.inf)
        return jnp.broadcast_to(jnp.where(df > 1, v, jnp.nan), self.batch_shape)


def student_t(df=1.0, loc=0.0, scale=1.0) -> StudentT:
    """Student's t distribution with `df` degrees of freedom, location `loc`, scale `scale`.

    `mean` is NaN for `df <= 1`; `variance` is `scale**2 * df / (df - 2)` for `df > 2`,
    inf for `1 < df <= 2`, NaN otherwise.
    """
    return StudentT(df, loc, scale)
