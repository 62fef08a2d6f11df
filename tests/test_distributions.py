"""Distributions: log densities and their gradients against scipy, sample moments,
reparameterization gradients, discrete supports, shapes, errors, and `wrap`.

One table (`CASES`) drives the per-distribution checks; every test is deterministic
(fixed `jax.random.key` seeds and a fixed NumPy generator).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
import scipy.stats as st

import genvi.distributions as gd

N = 20_000  # draws per moment check

# The file's time is mostly XLA compiling one sampler and one scorer per case (the gamma
# family's rejection loops above all); skipping LLVM optimization roughly halves that.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@dataclass(frozen=True, eq=False)  # hashed by identity, for functools.cache
class Case:
    id: str
    make: Callable  # *params -> Distribution
    params: tuple
    ref: Callable  # *params (float64 NumPy) -> frozen scipy distribution
    points: Any  # values to score, stacked along axis 0
    fixed: tuple = ()  # indices of params held fixed in derivative checks
    sym: tuple = ()  # indices of matrix params perturbed symmetrically (covariances)


def _cat_ref(p):
    p = np.asarray(p, dtype=np.float64)
    return st.rv_discrete(values=(np.arange(p.shape[-1]), p / p.sum()))


_COV = np.array([[2.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.5]])

CASES = [
    Case("normal", gd.normal, (0.5, 1.3), lambda m, s: st.norm(m, s), [-1.5, 0.0, 0.7, 2.3]),
    Case("uniform", gd.uniform, (-1.0, 2.5), lambda lo, hi: st.uniform(lo, hi - lo),
         [-0.9, 0.0, 1.2, 2.4]),
    Case("beta", gd.beta, (2.0, 3.5), lambda a, b: st.beta(a, b), [0.05, 0.3, 0.5, 0.9]),
    Case("gamma", gd.gamma, (2.5, 1.5), lambda c, r: st.gamma(c, scale=1 / r),
         [0.1, 0.8, 1.7, 4.0]),
    Case("exponential", gd.exponential, (1.7,), lambda r: st.expon(scale=1 / r),
         [0.0, 0.3, 1.0, 3.0]),
    Case("laplace", gd.laplace, (0.3, 0.8), lambda m, s: st.laplace(m, s),
         [-2.0, 0.0, 0.9, 3.0]),
    Case("lognormal", gd.lognormal, (0.2, 0.5), lambda m, s: st.lognorm(s=s, scale=np.exp(m)),
         [0.3, 1.0, 1.5, 4.0]),
    Case("half_normal", gd.half_normal, (1.4,), lambda s: st.halfnorm(scale=s),
         [0.0, 0.5, 1.3, 3.5]),
    # df = 9: the moment check needs a finite 8th moment (variance of the sample 4th moment).
    Case("student_t", gd.student_t, (9.0, 0.5, 1.5), lambda df, m, s: st.t(df, m, s),
         [-3.0, 0.0, 0.6, 4.0]),
    Case("mv_normal_diag", gd.mv_normal_diag, (np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.5, 2.0])),
         lambda m, s: st.multivariate_normal(m, np.diag(s**2)),
         [[0.0, 0.0, 0.0], [1.0, -1.5, 3.0], [0.5, -0.2, -1.0]]),
    Case("mv_normal", gd.mv_normal, (np.array([0.5, -1.0, 2.0]), _COV),
         lambda m, c: st.multivariate_normal(m, c),
         [[0.0, 0.0, 0.0], [1.0, -1.5, 3.0], [0.5, -0.2, -1.0]], sym=(1,)),
    Case("dirichlet", gd.dirichlet, (np.array([2.0, 3.0, 4.5]),), lambda a: st.dirichlet(a),
         [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3], [0.25, 0.5, 0.25]]),
    Case("bernoulli", gd.bernoulli, (0.3,), lambda p: st.bernoulli(p), [0, 1, 1]),
    Case("bernoulli_logits", lambda lg: gd.bernoulli(logits=lg), (-0.7,),
         lambda lg: st.bernoulli(sps.expit(lg)), [0, 1, 0]),
    Case("categorical", gd.categorical, (np.array([0.2, 0.5, 0.1, 0.2]),), _cat_ref, [0, 1, 2, 3]),
    Case("categorical_logits", lambda lg: gd.categorical(logits=lg),
         (np.array([0.3, -1.0, 1.2]),), lambda lg: _cat_ref(sps.softmax(lg)), [0, 1, 2]),
    Case("poisson", gd.poisson, (3.5,), lambda r: st.poisson(r), [0, 1, 3, 8]),
    Case("geometric", gd.geometric, (0.3,), lambda p: st.geom(p, loc=-1), [0, 1, 2, 7]),
    Case("binomial", gd.binomial, (12, 0.35), lambda n, p: st.binom(n, p), [0, 3, 4, 12],
         fixed=(0,)),
]
IDS = [c.id for c in CASES]
REPARAM = [c for c in CASES if c.make(*c.params).reparameterizable]


def _params(case):
    return tuple(jnp.asarray(p, dtype=jnp.float32) for p in case.params)


def _points(case, dist):
    return jnp.asarray(case.points, dtype=jnp.int32 if dist.is_discrete else jnp.float32)


def _ref_logp(ref, points):
    f = ref.logpmf if hasattr(ref, "logpmf") else ref.logpdf
    return np.array([f(np.asarray(x, dtype=np.float64)) for x in points])


def _ref_moments(ref):
    if not callable(ref.mean):  # multivariate_normal: marginal variances
        return np.asarray(ref.mean), np.diag(ref.cov)
    return np.asarray(ref.mean()), np.asarray(ref.var())


def _directions(case, seed=0):
    """One random tangent per parameter (zero for fixed ones, symmetric for covariances)."""
    rng = np.random.default_rng(seed)
    dirs = []
    for i, p in enumerate(case.params):
        v = rng.normal(size=np.shape(p))
        if i in case.sym:
            v = (v + v.T) / 2
        dirs.append(np.zeros(np.shape(p)) if i in case.fixed else v)
    return dirs


@functools.cache
def _scored(case):
    """One compile per case: log_prob and its directional derivative along
    `_directions(case)`, with the distribution built inside `vmap` (so its parameters are
    traced: no concrete checks) over two identical copies of the parameters, under `jit`."""
    params = _params(case)
    pts = _points(case, case.make(*params))
    dirs = tuple(jnp.asarray(d, jnp.float32) for d in _directions(case))
    two = lambda tree: jax.tree.map(lambda a: jnp.stack([a, a]), tree)
    run = jit(jax.vmap(lambda p, t: jax.jvp(lambda *q: case.make(*q).log_prob(pts), p, t)))
    return run(two(params), two(dirs))


@functools.cache
def _sampler(case):
    """One compile per case: `N` draws and, for reparameterizable distributions, their
    pathwise derivatives along a tangent given at call time."""
    if not case.make(*_params(case)).reparameterizable:
        return jit(lambda p, t, k: (case.make(*p).sample(k, (N,)), None))
    return jit(lambda p, t, k: jax.jvp(lambda *q: case.make(*q).sample(k, (N,)), p, t))


def _draw(case, dirs=None, seed=None):
    dirs = _directions(case, seed=1) if dirs is None else dirs
    key = jax.random.key(sum(map(ord, case.id)) if seed is None else seed)
    t = tuple(jnp.asarray(d, jnp.float32) for d in dirs)
    return _sampler(case)(_params(case), t, key)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_prob_matches_scipy_under_jit_and_vmap(case):
    lp, _ = _scored(case)
    ref = _ref_logp(case.ref(*case.params), case.points)
    np.testing.assert_allclose(lp, np.stack([ref, ref]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_prob_gradient_matches_finite_differences(case):
    """Directional derivative of the summed log density along a random parameter tangent,
    against a central difference of scipy's float64 log density."""
    tangent = np.sum(_scored(case)[1], axis=-1)
    dirs = _directions(case)
    h = 1e-6
    shifted = lambda s: np.sum(_ref_logp(
        case.ref(*[np.asarray(p, np.float64) + s * d for p, d in zip(case.params, dirs, strict=True)]),
        case.points,
    ))
    fd = (shifted(h) - shifted(-h)) / (2 * h)
    np.testing.assert_allclose(tangent, [fd, fd], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sample_moments(case):
    dist = case.make(*_params(case))
    mean, var = _ref_moments(case.ref(*case.params))
    np.testing.assert_allclose(dist.mean, mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dist.variance, var, rtol=1e-4, atol=1e-6)

    x, _ = _draw(case)
    assert x.shape == (N,) + dist.batch_shape + dist.event_shape
    assert x.dtype == (jnp.int32 if dist.is_discrete else jnp.float32)
    x = np.asarray(x, dtype=np.float64)
    # Tolerance rule. Mean: within 4.5 standard errors, SE = sqrt(var / N) with the exact
    # variance. Variance: within 5 standard errors of the sample variance, whose SE is
    # sqrt((m4 - s2**2) / N) with the sample's own 4th central moment m4.
    s_mean, s_var = x.mean(0), x.var(0)
    assert np.all(np.abs(s_mean - mean) <= 4.5 * np.sqrt(var / N)), (s_mean, mean)
    m4 = ((x - s_mean) ** 4).mean(0)
    se_var = np.sqrt(np.maximum(m4 - s_var**2, 0) / N)
    assert np.all(np.abs(s_var - var) <= 5 * se_var + 1e-7), (s_var, var, se_var)


@pytest.mark.parametrize("case", REPARAM, ids=[c.id for c in REPARAM])
def test_reparameterized_sample_gradient_is_unbiased(case):
    """Monte Carlo mean of the pathwise derivative d x / d theta (along a random tangent)
    vs the exact d E[x] / d theta, within 5 standard errors of the per-draw derivatives."""
    dirs = _directions(case, seed=1)
    _, dx = _draw(case, dirs)
    dx = np.asarray(dx, np.float64)
    assert np.all(np.isfinite(dx))
    t = tuple(jnp.asarray(d, jnp.float32) for d in dirs)
    _, dmean = jax.jvp(lambda *q: case.make(*q).mean, _params(case), t)
    se = dx.std(0) / np.sqrt(N)
    assert np.all(np.abs(dx.mean(0) - dmean) <= 5 * se + 1e-5), (dx.mean(0), dmean, se)


def test_normal_reparameterization_gradient_wrt_loc():
    f = jax.jit(jax.grad(lambda loc: jnp.mean(gd.normal(loc, 2.0).sample(jax.random.key(3), (1000,)))))
    np.testing.assert_allclose(f(0.4), 1.0, rtol=1e-5)


def test_gamma_gradient_wrt_concentration_is_one_over_rate():
    case = next(c for c in CASES if c.id == "gamma")
    rate = case.params[1]
    _, dx = _draw(case, dirs=(1.0, 0.0), seed=11)  # tangent: d / d concentration
    dx = np.asarray(dx, np.float64)
    assert abs(dx.mean() - 1 / rate) <= 4.5 * dx.std() / np.sqrt(N)


# -- discrete supports --------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist, values",
    [
        (gd.bernoulli(0.3), [0, 1]),
        (gd.flip(logits=1.2), [0, 1]),
        (gd.categorical(jnp.array([0.1, 0.6, 0.3])), [0, 1, 2]),
        (gd.categorical(logits=jnp.array([0.1, -2.0, 0.3, 1.0])), [0, 1, 2, 3]),
        (gd.binomial(5, 0.4), [0, 1, 2, 3, 4, 5]),
    ],
    ids=["bernoulli", "flip_logits", "categorical", "categorical_logits", "binomial"],
)
def test_enumerate_support_is_normalized(dist, values):
    assert dist.has_finite_support
    s = dist.enumerate_support()
    assert s.dtype == jnp.int32
    np.testing.assert_array_equal(s, values)
    total = jax.jit(lambda d, s: jnp.sum(jnp.exp(d.log_prob(s))))(dist, s)
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_enumerate_support_batched():
    d = gd.binomial(jnp.array([2, 4]), jnp.array([0.3, 0.6]))
    s = d.enumerate_support()
    assert s.shape == (5, 2)
    total = jax.jit(lambda d, s: jnp.exp(d.log_prob(s)).sum(0))(d, s)
    np.testing.assert_allclose(total, [1.0, 1.0], rtol=1e-5)
    assert not gd.poisson(1.0).has_finite_support and gd.poisson(1.0).enumerate_support() is None


def test_binomial_enumerate_support_needs_concrete_count():
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda n: gd.binomial(n, 0.5).enumerate_support())(3.0)


OUTSIDE = [
    (gd.bernoulli(0.3), 2),
    (gd.bernoulli(logits=0.3), -1),
    (gd.categorical(jnp.array([0.5, 0.5])), 2),
    (gd.poisson(2.0), -1),
    (gd.poisson(2.0), 1.5),
    (gd.geometric(0.5), -1),
    (gd.binomial(3, 0.5), 4),
    (gd.uniform(0.0, 1.0), 1.5),
    (gd.beta(2.0, 2.0), -0.1),
    (gd.gamma(2.0, 1.0), -1.0),
    (gd.exponential(1.0), -0.5),
    (gd.lognormal(0.0, 1.0), 0.0),
    (gd.half_normal(1.0), -0.5),
    (gd.dirichlet(jnp.ones(2)), jnp.array([0.7, 0.7])),
]


def test_log_prob_outside_support_is_neg_inf():
    lps = jax.jit(lambda pairs: [d.log_prob(x) for d, x in pairs])(OUTSIDE)
    bad = [(type(d).__name__, x, lp) for (d, x), lp in zip(OUTSIDE, lps, strict=True)
           if not jnp.isneginf(lp)]
    assert not bad, bad


# -- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist, batch, event",
    [
        (gd.normal(jnp.zeros(3), jnp.ones((2, 1))), (2, 3), ()),
        (gd.student_t(jnp.array([3.0, 5.0]), 0.0, 1.0), (2,), ()),
        (gd.bernoulli(jnp.full((2, 3), 0.5)), (2, 3), ()),
        (gd.categorical(jnp.ones((2, 4))), (2,), ()),
        (gd.binomial(jnp.array([3, 5]), 0.3), (2,), ()),
        (gd.mv_normal_diag(jnp.zeros((2, 3)), 1.0), (2,), (3,)),
        (gd.mv_normal(jnp.zeros((4, 1, 2)), jnp.eye(2) * jnp.ones((3, 1, 1))), (4, 3), (2,)),
        (gd.dirichlet(jnp.ones((2, 3))), (2,), (3,)),
    ],
    ids=["normal", "student_t", "bernoulli", "categorical", "binomial", "mvn_diag", "mvn",
         "dirichlet"],
)
def test_sample_shape_is_shape_plus_batch_plus_event(dist, batch, event):
    # Shapes are static, so tracing (eval_shape) checks them without compiling samplers.
    assert dist.batch_shape == batch and dist.event_shape == event
    x = jax.eval_shape(lambda k: dist.sample(k, (5,)), jax.random.key(0))
    assert x.shape == (5,) + batch + event
    assert x.dtype == (jnp.int32 if dist.is_discrete else jnp.float32)
    assert jax.eval_shape(dist.log_prob, x).shape == (5,) + batch
    assert jax.eval_shape(lambda k: dist.sample(k, 2), jax.random.key(0)).shape == (2,) + batch + event
    dist.check_value(jnp.zeros(x.shape, x.dtype))


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ctor", [gd.bernoulli, gd.categorical])
def test_probs_xor_logits(ctor):
    with pytest.raises(ValueError, match="both"):
        ctor(jnp.array([0.5]), logits=jnp.array([0.0]))
    with pytest.raises(ValueError, match="neither"):
        ctor()


@pytest.mark.parametrize(
    "thunk, name",
    [
        (lambda: gd.normal(0.0, -1.0), "scale"),
        (lambda: gd.laplace(0.0, -2.0), "scale"),
        (lambda: gd.student_t(-1.0), "df"),
        (lambda: gd.gamma(1.0, -1.0), "rate"),
        (lambda: gd.mv_normal_diag(jnp.zeros(2), jnp.array([1.0, -1.0])), "scale_diag"),
        (lambda: gd.bernoulli(1.5), "probs"),
        (lambda: gd.binomial(2.5, 0.5), "total_count"),
        (lambda: gd.mv_normal(jnp.zeros(2), -jnp.eye(2)), "covariance"),
    ],
)
def test_bad_concrete_parameter_raises(thunk, name):
    with pytest.raises(ValueError, match=name):
        thunk()


def test_bad_parameter_under_jit_is_not_finite():
    lp = jax.jit(lambda s: gd.normal(0.0, s).log_prob(0.5))(-1.0)
    assert not jnp.isfinite(lp)


def test_discrete_check_value_rejects_floats():
    with pytest.raises(TypeError, match="integer"):
        gd.bernoulli(0.3).check_value(jnp.asarray(1.0))


def test_event_shape_mismatch_raises():
    d = gd.mv_normal_diag(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="event shape"):
        d.check_value(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="event shape"):
        d.log_prob(jnp.zeros((2, 1)))


def test_mv_normal_dimension_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        gd.mv_normal(jnp.zeros(3), jnp.eye(2))


def test_mv_normal_scale_tril_matches_covariance():
    L = np.linalg.cholesky(_COV)
    a = gd.mv_normal(jnp.zeros(3), jnp.asarray(_COV, jnp.float32))
    b = gd.mv_normal(jnp.zeros(3), scale_tril=jnp.asarray(L, jnp.float32))
    x = jnp.array([0.3, -0.2, 1.0])
    np.testing.assert_allclose(a.log_prob(x), b.log_prob(x), rtol=1e-5)
    np.testing.assert_allclose(b.covariance, _COV, rtol=1e-5)


# -- wrap -----------------------------------------------------------------------------------


def test_wrap_numpyro():
    nd = pytest.importorskip("numpyro.distributions")
    w = gd.wrap(nd.Normal(0.0, 1.0))
    x = jnp.array([-1.0, 0.3, 2.0])
    assert w.reparameterizable and not w.is_discrete and w.support == "real"

    # The wrapped object is a pytree: it passes through jit and grad.
    @jax.jit
    def run(w):
        g = jax.grad(lambda w: w.logpdf(1.0))(w)
        return w.log_prob(x), w.logpdf(x), w.sample(jax.random.key(0), (4, 2)), g

    lp, total, draws, g = run(w)
    np.testing.assert_allclose(lp, gd.normal(0.0, 1.0).log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(total, jnp.sum(lp), rtol=1e-6)
    assert draws.shape == (4, 2)
    np.testing.assert_allclose(g.obj.loc, 1.0, rtol=1e-6)
    mvn = gd.wrap(nd.MultivariateNormal(jnp.zeros(3), jnp.eye(3)))
    assert mvn.event_shape == (3,)
    assert jax.jit(lambda w: w.sample(jax.random.key(1), (5,)))(mvn).shape == (5, 3)
    p = gd.wrap(nd.Poisson(2.0))
    assert p.is_discrete and not p.reparameterizable
    # Support names follow NumPyro's constraints, so wrapped and native ones agree.
    assert p.support == gd.poisson(2.0).support == "integer_nonnegative"


def test_wrap_rejects_incomplete_objects():
    class OnlySample:
        def sample(self, key, shape):
            return jnp.zeros(shape)

    with pytest.raises(TypeError, match="log_prob"):
        gd.wrap(OnlySample())
    with pytest.raises(TypeError, match="sample.*log_prob"):
        gd.wrap(object())


def test_exports():
    for name in gd.__all__:
        assert hasattr(gd, name), name
    assert gd.flip is gd.bernoulli
