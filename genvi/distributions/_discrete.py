"""Discrete distributions. Samples are int32; `log_prob` is -inf off the support.

None is reparameterizable: gradients through their sites come from ADEV's estimators
(score function, enumeration, ...), which need `log_prob` differentiable in the
parameters and, for enumeration, `enumerate_support()`.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, logsumexp, xlog1py, xlogy

from genvi.distributions._base import (
    Distribution,
    _is_concrete,
    as_float,
    broadcast_batch,
    check_in_range,
    check_positive,
    one_of,
)


def _integer_in(x, low, high=None):
    """Mask of `x` being an integer in `[low, high]` (float inputs must be whole numbers)."""
    ok = x >= low
    if high is not None:
        ok = ok & (x <= high)
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        ok = ok & (x == jnp.floor(x))
    return ok


def _enumerate(n: int, batch_shape: tuple):
    """`arange(n)` along axis 0, expanded over the batch shape."""
    vals = jnp.arange(n, dtype=jnp.int32).reshape((n,) + (1,) * len(batch_shape))
    return jnp.broadcast_to(vals, (n,) + tuple(batch_shape))


def _check_probs(p, dist: str):
    check_in_range(p, "probs", dist, 0.0, 1.0)


class Bernoulli(Distribution):
    """Bernoulli over {0, 1}, parameterized by `probs` or `logits` (whichever was given is
    the stored leaf, so gradients of `log_prob` reach exactly that parameter)."""

    param: jax.Array
    is_logits: bool = eqx.field(static=True)
    is_discrete: ClassVar[bool] = True
    support: ClassVar[str] = "boolean"

    def __init__(self, probs=None, *, logits=None):
        one_of(probs, logits, "bernoulli")
        self.is_logits = logits is not None
        if self.is_logits:
            self.param = as_float(logits, "logits")
        else:
            self.param = as_float(probs, "probs")
            _check_probs(self.param, "bernoulli")

    @property
    def probs(self):
        return jax.nn.sigmoid(self.param) if self.is_logits else self.param

    @property
    def logits(self):
        if self.is_logits:
            return self.param
        return jnp.log(self.param) - jnp.log1p(-self.param)

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.param))

    def _sample(self, key, shape):
        return jax.random.bernoulli(key, self.probs, shape + self.batch_shape).astype(jnp.int32)

    def log_prob(self, x):
        ok = (x == 0) | (x == 1)
        one = x == 1
        if self.is_logits:
            lp = jnp.where(one, jax.nn.log_sigmoid(self.param), jax.nn.log_sigmoid(-self.param))
        else:
            # Select before the log so the unselected branch's 1/p cannot become NaN.
            lp = jnp.log(jnp.where(one, self.param, 1 - self.param))
        return jnp.where(ok, lp, -jnp.inf)

    def enumerate_support(self):
        return _enumerate(2, self.batch_shape)

    @property
    def has_finite_support(self):
        return True

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        p = self.probs
        return p * (1 - p)


def bernoulli(probs=None, *, logits=None) -> Bernoulli:
    """Bernoulli distribution over `{0, 1}` (int32 values), `P(x = 1) = probs`.

    Args:
        probs: probability of 1, in `[0, 1]`.
        logits: alternatively (keyword only), `log(probs / (1 - probs))`.

    Exactly one of `probs` and `logits` must be given.
    """
    return Bernoulli(probs, logits=logits)


flip = bernoulli


class Categorical(Distribution):
    """Categorical over {0, ..., K-1}; the last axis of `probs`/`logits` indexes categories.

    Unnormalized `probs` or `logits` are normalized inside `log_prob`, so gradients are
    correct for any positive `probs` / real `logits`.
    """

    param: jax.Array
    is_logits: bool = eqx.field(static=True)
    is_discrete: ClassVar[bool] = True
    support: ClassVar[str] = "integer_interval"

    def __init__(self, probs=None, *, logits=None):
        one_of(probs, logits, "categorical")
        self.is_logits = logits is not None
        name = "logits" if self.is_logits else "probs"
        self.param = as_float(logits if self.is_logits else probs, name)
        if jnp.ndim(self.param) < 1:
            raise ValueError(
                f"categorical: `{name}` must have at least one dimension (the last one "
                f"indexes the categories), got a scalar {self.param}."
            )
        if not self.is_logits:
            check_in_range(self.param, "probs", "categorical", 0.0)

    @property
    def num_categories(self) -> int:
        return jnp.shape(self.param)[-1]

    @property
    def logits(self):
        """Normalized log-probabilities."""
        if self.is_logits:
            return self.param - logsumexp(self.param, -1, keepdims=True)
        return jnp.log(self.param) - jnp.log(jnp.sum(self.param, -1, keepdims=True))

    @property
    def probs(self):
        if self.is_logits:
            return jax.nn.softmax(self.param, -1)
        return self.param / jnp.sum(self.param, -1, keepdims=True)

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.param)[:-1])

    def _sample(self, key, shape):
        logits = self.param if self.is_logits else jnp.log(self.param)
        return jax.random.categorical(key, logits, -1, shape + self.batch_shape).astype(jnp.int32)

    def log_prob(self, x):
        k = self.num_categories
        ok = _integer_in(x, 0, k - 1)
        full = jnp.broadcast_shapes(jnp.shape(x), self.batch_shape)
        idx = jnp.broadcast_to(jnp.clip(x, 0, k - 1).astype(jnp.int32), full)
        param = jnp.broadcast_to(self.param, full + (k,))
        # Gather before the log so unselected zero-probability entries cannot make NaN grads.
        picked = jnp.take_along_axis(param, idx[..., None], -1)[..., 0]
        if self.is_logits:
            lp = picked - logsumexp(self.param, -1)
        else:
            lp = jnp.log(picked) - jnp.log(jnp.sum(self.param, -1))
        return jnp.where(ok, lp, -jnp.inf)

    def enumerate_support(self):
        return _enumerate(self.num_categories, self.batch_shape)

    @property
    def has_finite_support(self):
        return True

    @property
    def mean(self):
        k = jnp.arange(self.num_categories, dtype=self.param.dtype)
        return jnp.sum(self.probs * k, -1)

    @property
    def variance(self):
        k = jnp.arange(self.num_categories, dtype=self.param.dtype)
        p = self.probs
        return jnp.sum(p * k**2, -1) - jnp.sum(p * k, -1) ** 2


def categorical(probs=None, *, logits=None) -> Categorical:
    """Categorical distribution over `{0, ..., K-1}` (int32 values).

    Args:
        probs: nonnegative category weights; the last axis (size K) indexes categories.
            They are normalized to sum to 1.
        logits: alternatively (keyword only), unnormalized log-probabilities.

    Exactly one of `probs` and `logits` must be given.
    """
    return Categorical(probs, logits=logits)


class Poisson(Distribution):
    """Poisson(rate) over {0, 1, 2, ...}."""

    rate: jax.Array
    is_discrete: ClassVar[bool] = True
    support: ClassVar[str] = "integer_nonnegative"

    def __init__(self, rate=1.0):
        self.rate = as_float(rate, "rate")
        check_in_range(self.rate, "rate", "poisson", 0.0)

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.rate))

    def _sample(self, key, shape):
        return jax.random.poisson(key, self.rate, shape + self.batch_shape).astype(jnp.int32)

    def log_prob(self, x):
        ok = _integer_in(x, 0)
        # Float values: xlogy's JVP breaks on an integer first argument (float0 tangent).
        xs = jnp.where(ok, x, 0).astype(self.rate.dtype)
        lp = xlogy(xs, self.rate) - self.rate - gammaln(xs + 1)
        return jnp.where(ok, lp, -jnp.inf)

    @property
    def mean(self):
        return self.rate

    @property
    def variance(self):
        return self.rate


def poisson(rate=1.0) -> Poisson:
    """Poisson distribution with mean `rate` (>= 0) over `{0, 1, 2, ...}` (int32 values)."""
    return Poisson(rate)


class Geometric(Distribution):
    """Geometric(probs): number of failures before the first success, over {0, 1, ...}."""

    probs: jax.Array
    is_discrete: ClassVar[bool] = True
    support: ClassVar[str] = "integer_nonnegative"

    def __init__(self, probs):
        self.probs = as_float(probs, "probs")
        check_positive(self.probs, "probs", "geometric")
        _check_probs(self.probs, "geometric")

    @property
    def batch_shape(self):
        return tuple(jnp.shape(self.probs))

    def _sample(self, key, shape):
        p = self.probs
        tiny = jnp.finfo(p.dtype).tiny
        u = jax.random.uniform(key, shape + self.batch_shape, dtype=p.dtype, minval=tiny)
        k = jnp.floor(jnp.log(u) / jnp.log1p(-p))
        # Tiny `probs` can give counts beyond int32; saturate rather than wrap around.
        return jnp.minimum(k, jnp.iinfo(jnp.int32).max).astype(jnp.int32)

    def log_prob(self, x):
        ok = _integer_in(x, 0)
        xs = jnp.where(ok, x, 0).astype(self.probs.dtype)
        # xlog1py keeps probs == 1 (always 0 failures) finite at x == 0.
        return jnp.where(ok, jnp.log(self.probs) + xlog1py(xs, -self.probs), -jnp.inf)

    @property
    def mean(self):
        return (1 - self.probs) / self.probs

    @property
    def variance(self):
        return (1 - self.probs) / self.probs**2


def geometric(probs) -> Geometric:
    """Geometric distribution: the number of failures before the first success.

    `P(x = k) = probs * (1 - probs)**k` for `k = 0, 1, 2, ...` (int32 values); `probs` is
    the success probability, in `(0, 1]`. (scipy's `geom` counts trials, on 1, 2, ...)
    """
    return Geometric(probs)


class Binomial(Distribution):
    """Binomial(total_count, probs) over {0, ..., total_count}.

    `total_count` is stored as a float leaf (so the module can pass through `jax.grad`
    like the others), but it must be a whole number.
    """

    total_count: jax.Array
    probs: jax.Array
    # max(total_count) + 1 when `total_count` was given as a concrete number or array, so
    # the support can be enumerated under `jit` (where even a constant becomes a tracer).
    support_size: int | None = eqx.field(static=True)
    is_discrete: ClassVar[bool] = True
    support: ClassVar[str] = "integer_interval"

    def __init__(self, total_count=1, probs=0.5):
        self.support_size = (
            None if isinstance(total_count, jax.core.Tracer) or jnp.size(total_count) == 0
            else int(np.max(np.asarray(total_count))) + 1
        )
        self.total_count = as_float(total_count, "total_count")
        self.probs = as_float(probs, "probs")
        check_in_range(self.total_count, "total_count", "binomial", 0)
        if _is_concrete(self.total_count) and not bool(
            jnp.all(self.total_count == jnp.floor(self.total_count))
        ):
            raise ValueError(
                f"binomial: parameter `total_count` must be a whole number, got {total_count}."
            )
        _check_probs(self.probs, "binomial")

    @property
    def batch_shape(self):
        return broadcast_batch(self.total_count, self.probs)

    def _sample(self, key, shape):
        n, p = self.total_count, self.probs
        return jax.random.binomial(key, n, p, shape + self.batch_shape).astype(jnp.int32)

    def log_prob(self, x):
        n, p = self.total_count, self.probs
        ok = _integer_in(x, 0, n)
        xs = jnp.where(ok, x, 0).astype(jnp.result_type(n, p))
        log_choose = gammaln(n + 1) - gammaln(xs + 1) - gammaln(n - xs + 1)
        lp = log_choose + xlogy(xs, p) + xlog1py(n - xs, -p)
        return jnp.where(ok, lp, -jnp.inf)

    def enumerate_support(self):
        """`arange(max(total_count) + 1)` along axis 0; values above a batch member's own
        `total_count` get log-probability -inf there."""
        if self.support_size is not None:
            return _enumerate(self.support_size, self.batch_shape)
        if not _is_concrete(self.total_count):
            raise ValueError(
                "binomial.enumerate_support() needs a concrete `total_count` (the number of "
                "support points fixes an array shape), but it is a traced value. Fix: build "
                "the binomial with a Python/NumPy `total_count` outside `jit`/`vmap`."
            )
        n = int(jnp.max(self.total_count)) if self.total_count.size else 0
        return _enumerate(n + 1, self.batch_shape)

    @property
    def has_finite_support(self):
        return True

    @property
    def mean(self):
        return self.total_count * self.probs

    @property
    def variance(self):
        return self.total_count * self.probs * (1 - self.probs)


def binomial(total_count=1, probs=0.5) -> Binomial:
    """Binomial distribution: successes in `total_count` independent trials of success
    probability `probs`, over `{0, ..., total_count}` (int32 values).

    Args:
        total_count: number of trials, a nonnegative whole number.
        probs: success probability per trial, in `[0, 1]`.
    """
    return Binomial(total_count, probs)
