"""Exact checks behind the posterior-collapse reproduction (paper_reproductions/posterior_collapse).

1. The closed-form global optima of `theory.py` (Theorems 2, 3, 5 of Dang et al., ICLR 2024)
   equal a direct deterministic minimization of the exact expected loss, independently of
   genvi.
2. genvi's Monte Carlo beta-ELBO gradient (and the analytic-KL one) of the linear CVAE and of
   the two-level MHVAE is unbiased for the gradient of the exact expected objective
   (-1/2 x `*_expected_loss`, written in closed form from the data's second moments):
   the mean of many estimates is within 4.5 standard errors of it, elementwise.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import genvi as gv
from paper_reproductions.posterior_collapse import model as M
from paper_reproductions.posterior_collapse import theory as T
from paper_reproductions.posterior_collapse import train as TR


def _minimize(loss, shapes, seeds=3):
    """Best of a few L-BFGS runs of `loss(params_dict)` from random starts, in float64 (a
    collapsed direction is quartic-flat, so float32 leaves visible residuals there)."""
    with jax.enable_x64(True):
        return _minimize64(loss, shapes, seeds)


def _minimize64(loss, shapes, seeds):
    sizes = [int(np.prod(s)) for s in shapes.values()]

    def unpack(v):
        out, i = {}, 0
        for (k, s), n in zip(shapes.items(), sizes, strict=True):
            out[k] = v[i:i + n].reshape(s)
            i += n
        return out

    vg = jax.jit(jax.value_and_grad(lambda v: loss(unpack(v))))
    best = None
    for seed in range(seeds):
        v0 = np.random.default_rng(seed).standard_normal(sum(sizes)) * 0.3
        r = so.minimize(lambda v: tuple(np.asarray(a, np.float64) for a in vg(jnp.asarray(v))),
                        v0, jac=True, method="L-BFGS-B",
                        options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-14})
        if best is None or r.fun < best.fun:
            best = r
    return {k: np.asarray(v, np.float64) for k, v in unpack(jnp.asarray(best.x)).items()}


def _sv(a):
    return np.linalg.svd(a, compute_uv=False)


@pytest.mark.parametrize("beta,eta_dec", [(0.5, 1.0), (1.0, 0.7)])
def test_cvae_optimum_matches_direct_minimization(beta, eta_dec):
    rng = np.random.default_rng(0)
    dx, dy, dz, n = 3, 4, 4, 4000
    X = rng.standard_normal((n, dx))
    Y = X @ rng.standard_normal((dx, dy)) * 0.4 + rng.standard_normal((n, dy)) * np.array(
        [1.6, 1.1, 0.8, 0.4])
    Sxx, Syy, Sxy = X.T @ X / n, Y.T @ Y / n, X.T @ Y / n
    theta = T.cvae_theta(X, Y)
    opt = T.cvae_optimum(theta, beta, 1.0, eta_dec, dz)
    shapes = {"W1": (dz, dx), "W2": (dz, dy), "U1": (dy, dz), "U2": (dy, dx), "log_sigma": (dz,)}
    p = _minimize(lambda q: T.cvae_expected_loss(q, Sxx, Syy, Sxy, beta, 1.0, eta_dec, xp=jnp),
                  shapes)
    lam = _sv(p["U1"])
    np.testing.assert_allclose(lam, opt["lambda"], atol=1e-3 * opt["lambda"].max())


@pytest.mark.parametrize("learnable", [True, False])
@pytest.mark.parametrize("beta1,beta2,eta_dec", [(1.0, 0.5, 1.0), (0.5, 1.0, 0.5), (2.0, 1.0, 1.0)])
def test_mhvae_optimum_matches_direct_minimization(learnable, beta1, beta2, eta_dec):
    theta = np.array([2.0, 1.5, 1.0, 0.7, 0.4])
    d0 = d1 = d2 = 5
    sigma1, sigma2 = 0.5, 0.5
    Sxx = np.diag(theta**2)
    shapes = {"W1": (d1, d0), "U1": (d0, d1), "W2": (d2, d1), "U2": (d1, d2)}
    if learnable:
        shapes["log_sigma2"] = (d2,)
        opt = T.mhvae_learnable(theta, sigma1, 1.0, eta_dec, beta1, beta2, d1)
    else:
        opt = T.mhvae_fixed(theta, sigma1, sigma2, 1.0, eta_dec, beta1, beta2, d1)
    p = _minimize(lambda q: T.mhvae_expected_loss(q, Sxx, sigma1, 1.0, eta_dec, beta1, beta2,
                                                  None if learnable else sigma2, xp=jnp),
                  shapes)
    lam = _sv(p["W1"] @ np.sqrt(Sxx))
    omega = _sv(p["U2"])
    scale = max(opt["lambda"].max(), opt["omega"].max(), 1.0)
    np.testing.assert_allclose(lam, opt["lambda"], atol=1e-3 * scale)
    np.testing.assert_allclose(omega, opt["omega"], atol=5e-3 * scale)


def _unbiased(estimates, exact):
    """Every element of the estimates' mean within 4.5 standard errors of `exact`."""
    for k in exact:
        g = np.asarray(estimates[k], np.float64)
        mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
        bad = np.abs(mean - exact[k]) > 4.5 * se + 1e-4 * (1 + np.abs(exact[k]))
        assert not bad.any(), (k, mean[bad], np.asarray(exact[k])[bad], se[bad])


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_cvae_elbo_gradient_is_unbiased_for_the_exact_objective(analytic_kl):
    rng = np.random.default_rng(1)
    dx, dy, dz, n = 3, 4, 3, 40
    X = jnp.asarray(rng.standard_normal((n, dx)), jnp.float32)
    Y = jnp.asarray(X @ rng.standard_normal((dx, dy)) + rng.standard_normal((n, dy)), jnp.float32)
    beta, eta_enc, eta_dec = 0.7, 1.0, 0.8
    p = M.cvae_init(jax.random.key(3), dx, dy, dz, scale=0.5)
    p["log_sigma"] = jnp.array([-0.3, 0.1, 0.2])
    f = TR.cvae_member_objective(analytic_kl)
    hyper = (jnp.float32(beta), jnp.float32(eta_enc), jnp.float32(eta_dec))
    grads = jax.jit(jax.vmap(jax.grad(lambda k, q: f(k, q, hyper, X, Y), argnums=1),
                             in_axes=(0, None)))(jax.random.split(jax.random.key(0), 4000), p)
    Sxx, Syy, Sxy = (jnp.asarray(a.T @ b / n) for a, b in ((X, X), (Y, Y), (X, Y)))
    exact = jax.grad(lambda q: -0.5 * T.cvae_expected_loss(q, Sxx, Syy, Sxy, beta, eta_enc,
                                                          eta_dec, xp=jnp))(p)
    _unbiased(grads, {k: np.asarray(v, np.float64) for k, v in exact.items()})


def test_mhvae_elbo_gradient_is_unbiased_for_the_exact_objective():
    rng = np.random.default_rng(2)
    d0, d1, d2, n = 4, 3, 3, 40
    X = jnp.asarray(rng.standard_normal((n, d0)) * np.array([1.5, 1.0, 0.7, 0.3]), jnp.float32)
    beta1, beta2, eta_enc, eta_dec, sigma1 = 0.8, 1.3, 1.0, 0.9, 0.5
    p = M.mhvae_init(jax.random.key(4), d0, d1, d2, learnable_sigma2=True, scale=0.5)
    p["log_sigma2"] = jnp.array([-0.2, 0.0, 0.3])
    f = TR.mhvae_member_objective(False)
    hyper = tuple(jnp.float32(v) for v in (beta1, beta2, eta_enc, eta_dec, sigma1, 1.0))
    grads = jax.jit(jax.vmap(jax.grad(lambda k, q: f(k, q, hyper, X), argnums=1),
                             in_axes=(0, None)))(jax.random.split(jax.random.key(0), 4000), p)
    Sxx = jnp.asarray(X.T @ X / n)
    exact = jax.grad(lambda q: -0.5 * T.mhvae_expected_loss(q, Sxx, sigma1, eta_enc, eta_dec,
                                                           beta1, beta2, None, xp=jnp))(p)
    _unbiased(grads, {k: np.asarray(v, np.float64) for k, v in exact.items()})


def test_genvi_elbo_value_matches_the_exact_objective_up_to_its_constant():
    """The estimate's mean differs from -1/2 x the expected loss by the constant the loss
    drops: log-normalizers that depend on no parameter (checked at two parameter points)."""
    rng = np.random.default_rng(5)
    dx, dy, dz, n = 2, 3, 2, 30
    X = jnp.asarray(rng.standard_normal((n, dx)), jnp.float32)
    Y = jnp.asarray(rng.standard_normal((n, dy)), jnp.float32)
    hyper = (jnp.float32(1.0), jnp.float32(1.0), jnp.float32(0.8))
    f = jax.jit(jax.vmap(lambda k, q: TR.cvae_member_objective(True)(k, q, hyper, X, Y),
                         in_axes=(0, None)))
    Sxx, Syy, Sxy = (jnp.asarray(a.T @ b / n) for a, b in ((X, X), (Y, Y), (X, Y)))
    gaps = []
    for s in (0, 1):
        p = M.cvae_init(jax.random.key(10 + s), dx, dy, dz, scale=0.6)
        v = np.asarray(f(jax.random.split(jax.random.key(s), 20000), p), np.float64)
        exact = -0.5 * float(T.cvae_expected_loss(p, Sxx, Syy, Sxy, 1.0, 1.0, 0.8, xp=jnp))
        gaps.append((v.mean() - exact, v.std() / math.sqrt(len(v))))
    (g0, s0), (g1, s1) = gaps
    assert abs(g0 - g1) <= 4.5 * math.hypot(s0, s1) + 1e-3


def test_gv_elbo_scales_are_the_betas():
    """The reproduction's beta-ELBO is gv.vi.elbo with `scales` on the latent sites: with
    beta = 0 the KL term vanishes, so the value no longer depends on the prior scale."""
    x, y = jnp.ones(2), jnp.ones(3)
    p = M.cvae_init(jax.random.key(0), 2, 3, 2)
    obj = gv.vi.elbo(M.cvae_model, M.cvae_guide, scales={"z": 0.0})
    key = jax.random.key(1)
    a = obj(key, gv.choice_map({"y": y}), (x, p, 1.0, 1.0), (x, y, p))
    b = obj(key, gv.choice_map({"y": y}), (x, p, 3.0, 1.0), (x, y, p))
    assert float(a) == pytest.approx(float(b), abs=1e-5)
