"""Tests for `genvi.vi.conjugate`: the Normal-Gamma building blocks against exact answers,
and `fit_conjugate`'s alternation of gradient steps with closed-form updates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

import genvi as gv
from genvi.vi.conjugate import fit_conjugate, gamma_precision_posterior, normal_gamma_marginal

KEY = jax.random.key(0)


# -- building blocks ------------------------------------------------------------------------


def test_gamma_precision_posterior_is_the_exact_posterior():
    # alpha ~ Gamma(a0, b0), z_m ~ N(loc, 1/alpha): normalize prior x likelihood on a grid
    # and compare with the closed form, for each of three independent precisions.
    z = np.array([[0.3, -2.0, 0.05], [1.1, 1.5, -0.02], [-0.4, 0.7, 0.01], [0.9, -1.2, 0.03]])
    a0, b0, loc = 2.0, 0.5, 0.1
    a, b = gamma_precision_posterior(jnp.asarray(z), a0, b0, loc=loc)
    assert a.shape == b.shape == (3,)
    np.testing.assert_allclose(a, a0 + 2.0)
    np.testing.assert_allclose(b, b0 + 0.5 * ((z - loc) ** 2).sum(0), rtol=1e-6)
    for j in range(3):
        grid = np.linspace(1e-4, 200.0, 400_001)
        logpost = stats.gamma(a0, scale=1 / b0).logpdf(grid) + stats.norm(
            loc, 1 / np.sqrt(grid[:, None])).logpdf(z[:, j]).sum(1)
        w = np.exp(logpost - logpost.max())
        w /= integrate.trapezoid(w, grid)
        mean = integrate.trapezoid(grid * w, grid)
        var = integrate.trapezoid((grid - mean) ** 2 * w, grid)
        np.testing.assert_allclose(mean, a[j] / b[j], rtol=1e-4)
        np.testing.assert_allclose(var, a[j] / b[j] ** 2, rtol=1e-3)


def test_gamma_precision_posterior_noninformative_and_axis():
    z = jnp.array([[1.0, 0.1], [-1.0, -0.1]])
    a, b = gamma_precision_posterior(z)
    np.testing.assert_allclose(a, [1.0, 1.0])
    np.testing.assert_allclose(b, [1.0, 0.01], rtol=1e-6)
    a1, b1 = gamma_precision_posterior(z.T, axis=1)
    np.testing.assert_allclose(b1, b, rtol=1e-6)


def test_normal_gamma_marginal_is_the_integral():
    a, b, loc = 3.0, 2.0, 0.5
    d = normal_gamma_marginal(a, b, loc)
    for x in (-3.0, 0.0, 0.5, 2.2):
        exact, _ = integrate.quad(
            lambda al: stats.norm(loc, 1 / math.sqrt(al)).pdf(x) * stats.gamma(a, scale=1 / b).pdf(al),
            0, np.inf)
        np.testing.assert_allclose(float(jnp.exp(d.logpdf(jnp.asarray(x)))), exact, rtol=1e-5)


def test_hierarchical_program_posterior_identity():
    # log p(alpha, z) - log Gamma(alpha; a, b) does not depend on alpha and equals log p(z)
    # (the Student-t marginal for one draw): the update is the exact conditional of the program.
    a0, b0 = 1.5, 0.7

    @gv.gen
    def prior(n):
        alpha = gv.gamma(a0, b0) @ "alpha"
        gv.normal(jnp.zeros(n), 1.0 / jnp.sqrt(alpha)) @ "z"

    z = jnp.array([0.4])
    a, b = gamma_precision_posterior(z, a0, b0)
    diffs = []
    for alpha in (0.2, 1.0, 3.0, 9.0):
        lp, _ = prior.assess(gv.choice_map({"alpha": alpha, "z": z}), (1,))
        diffs.append(float(lp - gv.gamma(a, b).logpdf(jnp.asarray(alpha))))
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-5)
    np.testing.assert_allclose(diffs[0], float(normal_gamma_marginal(a0, b0).logpdf(z)), atol=1e-5)


# -- fit_conjugate: mechanics ----------------------------------------------------------------


def quadratic(key, p, st):
    return -((p["a"] - st["target"]) ** 2)


def test_update_runs_every_k_steps_after_the_step():
    seen_before = []

    def update(key, p, st):
        return {"target": st["target"], "n": st["n"] + 1.0, "last_a": p["a"]}

    st0 = {"target": 3.0, "n": 0.0, "last_a": 0.0}
    p, st, hist = fit_conjugate(quadratic, {"a": 0.0}, st0, optax.sgd(0.1), update, every=10,
                                steps=53, key=KEY, chunk_size=7, progress=False)
    assert float(st["n"]) == 5.0                    # after steps 10, 20, 30, 40, 50
    assert hist["objective"].shape == (53,)
    # manual loop: a_{t+1} = a_t + 0.1 * 2 (3 - a_t); the update saw a after step 50
    a = 0.0
    for t in range(53):
        a = a + 0.2 * (3.0 - a)
        if t + 1 == 50:
            seen_before.append(a)
    np.testing.assert_allclose(float(st["last_a"]), seen_before[0], rtol=1e-6)
    np.testing.assert_allclose(float(p["a"]), a, rtol=1e-6)
    _, st1, _ = fit_conjugate(quadratic, {"a": 0.0}, st0, optax.sgd(0.1), update, every=10,
                              steps=53, key=KEY, update_first=True, progress=False)
    assert float(st1["n"]) == 6.0


def test_identity_update_is_plain_fit_and_state_gets_no_gradient():
    # The optimizer's moments carry over across updates: with an update that returns the
    # state unchanged, the run is exactly gv.fit on params alone; the state never moves
    # although the objective depends on it.
    p, st, h = fit_conjugate(quadratic, {"a": 0.0}, {"target": 3.0}, optax.adam(0.05),
                             lambda k, p, s: s, every=3, steps=200, key=KEY, progress=False)
    p_ref, h_ref = gv.fit(lambda k, p: quadratic(k, p, {"target": 3.0}), {"a": 0.0},
                          optax.adam(0.05), steps=200, key=KEY, progress=False)
    assert float(st["target"]) == 3.0
    np.testing.assert_allclose(float(p["a"]), float(p_ref["a"]), rtol=1e-6)
    np.testing.assert_allclose(h["objective"], h_ref["objective"], rtol=1e-5, atol=1e-6)


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    def objective(key, p, st):
        return -((p["a"] + 0.3 * jax.random.normal(key) - st["t"]) ** 2)

    def update(key, p, st):
        return {"t": 0.5 * st["t"] + 0.5 * p["a"] + 0.1 * jax.random.normal(key)}

    kw = dict(every=4, key=KEY, chunk_size=10, progress=False)
    st0 = {"t": 2.0}
    p_full, st_full, _ = fit_conjugate(objective, {"a": 0.0}, st0, optax.adam(0.05), update,
                                       steps=60, **kw)
    stop = lambda step, params, hist: step >= 30
    fit_conjugate(objective, {"a": 0.0}, st0, optax.adam(0.05), update, steps=60,
                  checkpoint_dir=str(tmp_path), callback=stop, **kw)
    p_res, st_res, h = fit_conjugate(objective, {"a": 0.0}, st0, optax.adam(0.05), update,
                                     steps=60, checkpoint_dir=str(tmp_path), **kw)
    assert h["objective"].shape == (60,)
    np.testing.assert_allclose(float(p_res["a"]), float(p_full["a"]), rtol=1e-6)
    np.testing.assert_allclose(float(st_res["t"]), float(st_full["t"]), rtol=1e-6)


def test_minibatches_reach_the_objective():
    data = {"x": jnp.arange(12.0)}

    def objective(key, p, st, batch):
        return -jnp.mean((p["a"] - batch["x"] - st["shift"]) ** 2)

    p, st, _ = fit_conjugate(objective, {"a": 0.0}, {"shift": 1.0}, optax.adam(0.1),
                             lambda k, p, s: s, every=3, steps=600, key=KEY, data=data,
                             batch_size=4, progress=False)
    assert abs(float(p["a"]) - 6.5) < 0.3


def test_bad_arguments():
    with pytest.raises(TypeError, match="float array"):
        fit_conjugate(quadratic, {"a": 0.0}, {"target": 3.0, "n": jnp.int32(0)},
                      optax.sgd(0.1), lambda k, p, s: s, every=2, steps=4, key=KEY)
    with pytest.raises(ValueError, match="every"):
        fit_conjugate(quadratic, {"a": 0.0}, {"target": 3.0}, optax.sgd(0.1),
                      lambda k, p, s: s, every=0, steps=4, key=KEY)
    with pytest.raises(TypeError, match="update"):
        fit_conjugate(quadratic, {"a": 0.0}, {"target": 3.0}, optax.sgd(0.1), None,
                      every=1, steps=4, key=KEY)


# -- fit_conjugate: an exact answer (Normal model, unknown mean and precision) --------------
#
# x_i ~ N(mu, 1/tau), mu ~ N(0, S0^2), tau ~ Gamma(A0, B0). Mean-field q(mu) = N(m, v) is
# trained by gradients, q(tau) = Gamma(a, b) is set in closed form every few steps. The
# joint optimum of the ELBO is the CAVI fixed point, computed below by iterating the two
# coordinate updates to convergence.

X = np.array([1.3, 2.9, 0.4, 2.2, 1.7, 3.1, 0.9, 2.4, 1.6, 2.0])
S0, A0, B0 = 3.0, 2.0, 1.0


def cavi_fixed_point():
    a, b = A0 + len(X) / 2, B0 + 1.0
    for _ in range(1000):
        e_tau = a / b
        v = 1.0 / (1.0 / S0**2 + len(X) * e_tau)
        m = v * e_tau * X.sum()
        b = B0 + 0.5 * (((X - m) ** 2).sum() + len(X) * v)
    return m, v, a, b


def conj_update(key, q, st):
    # E_q[(x - mu)^2] = (x - m)^2 + v, so the exact CAVI step is the Normal-Gamma update
    # applied to its square root.
    v = jnp.exp(2 * q["log_sd"])
    a, b = gamma_precision_posterior(jnp.sqrt((jnp.asarray(X) - q["m"]) ** 2 + v), A0, B0)
    return {"a": a, "b": b}


ST0 = {"a": jnp.float32(A0 + len(X) / 2), "b": jnp.float32(B0 + 1.0)}
Q0 = {"m": 0.0, "log_sd": 0.0}


def test_alternation_reaches_the_cavi_fixed_point_deterministic_objective():
    def objective(key, q, st):  # the ELBO's q(mu)-dependent part, in closed form
        v = jnp.exp(2 * q["log_sd"])
        e_tau = st["a"] / st["b"]
        return (-0.5 * e_tau * jnp.sum((jnp.asarray(X) - q["m"]) ** 2 + v)
                - (q["m"] ** 2 + v) / (2 * S0**2) + q["log_sd"])

    q, st, _ = fit_conjugate(objective, Q0, ST0, optax.adam(0.02), conj_update, every=5,
                             steps=3000, key=KEY, progress=False)
    m, v, a, b = cavi_fixed_point()
    np.testing.assert_allclose(float(q["m"]), m, rtol=1e-4)
    np.testing.assert_allclose(float(jnp.exp(2 * q["log_sd"])), v, rtol=1e-3)
    np.testing.assert_allclose(float(st["a"]), a, rtol=1e-6)
    np.testing.assert_allclose(float(st["b"]), b, rtol=1e-4)


def test_alternation_with_a_monte_carlo_genvi_elbo():
    @gv.gen
    def model(e_tau):
        mu = gv.normal(0.0, S0) @ "mu"
        gv.normal(jnp.full(len(X), mu), 1.0 / jnp.sqrt(e_tau)) @ "x"

    @gv.gen
    def guide(q):
        gv.normal(q["m"], jnp.exp(q["log_sd"])) @ "mu"

    elbo = gv.vi.elbo(model, guide, analytic_kl=True)
    data = gv.choice_map({"x": jnp.asarray(X)})

    def objective(key, q, st):
        # E_q(tau)[log N(x | mu, 1/tau)] = log N(x | mu, 1/E[tau]) + terms free of q(mu)
        return elbo(key, data, (st["a"] / st["b"],), (q,))

    sched = optax.exponential_decay(0.05, 3000, 0.01)
    q, st, _ = fit_conjugate(objective, Q0, ST0, optax.adam(sched), conj_update, every=5,
                             steps=3000, key=KEY, num_samples=32, progress=False)
    m, v, a, b = cavi_fixed_point()
    assert abs(float(q["m"]) - m) < 0.01
    np.testing.assert_allclose(float(jnp.exp(2 * q["log_sd"])), v, rtol=0.05)
    np.testing.assert_allclose(float(st["b"]), b, rtol=0.01)
