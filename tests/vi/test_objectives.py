"""Objectives against exact answers on a conjugate Gaussian model and the noisy cone.

Statistical rule used throughout: a Monte Carlo mean is compared with its exact value
within 4.5 standard errors (false-alarm rate about 7e-6 per comparison); fixed seeds.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from scipy import stats

import genvi as gv

SIGMA = 0.5
Y = np.array([0.9, 1.4, 0.3, 1.1, 0.8], dtype=np.float32)
N_OBS = len(Y)


@gv.gen
def obs(mu):
    return gv.normal(mu, SIGMA) @ "v"


@gv.gen
def model(mu0):
    mu = gv.normal(mu0, 1.0) @ "mu"
    gv.vmap(obs, in_axes=None, axis_size=N_OBS)(mu) @ "y"


@gv.gen
def guide(phi):
    gv.normal(phi["m"], jnp.exp(phi["ls"])) @ "mu"


DATA = gv.choice_map({("y", "v"): Y})
POST_PREC = 1.0 + N_OBS / SIGMA**2
POST_MEAN = float(Y.sum() / SIGMA**2 / POST_PREC)
POST_SD = float(1.0 / math.sqrt(POST_PREC))
LOG_EVIDENCE = float(
    stats.multivariate_normal(np.zeros(N_OBS), SIGMA**2 * np.eye(N_OBS) + np.ones((N_OBS, N_OBS))).logpdf(Y)
)
# A guide away from the posterior, so the bounds are strictly ordered.
PHI_OFF = {"m": jnp.float32(POST_MEAN + 0.3), "ls": jnp.float32(math.log(POST_SD * 1.5))}


def exact_elbo(m, s, mu0=0.0):
    lik = np.sum(-0.5 * np.log(2 * np.pi * SIGMA**2) - ((Y - m) ** 2 + s**2) / (2 * SIGMA**2))
    prior = -0.5 * np.log(2 * np.pi) - ((m - mu0) ** 2 + s**2) / 2
    entropy = 0.5 * np.log(2 * np.pi * np.e * s**2)
    return lik + prior + entropy


def mc(objective, phi, n, seed=0, mu0=0.0):
    """n independent (value, grad wrt phi) estimates, jit + vmap."""
    f = jax.jit(jax.vmap(
        lambda k: jax.value_and_grad(lambda p: objective(k, DATA, (mu0,), (p,)))(phi)))
    return f(jax.random.split(jax.random.key(seed), n))


def within(samples, exact, k=4.5, slack=0.0):
    samples = np.asarray(samples, dtype=np.float64)
    se = samples.std() / math.sqrt(len(samples))
    assert abs(samples.mean() - exact) <= k * se + slack, (samples.mean(), exact, se)


def test_elbo_mean_matches_closed_form():
    v, _ = mc(gv.vi.elbo(model, guide), PHI_OFF, 20000)
    within(v, exact_elbo(float(PHI_OFF["m"]), float(jnp.exp(PHI_OFF["ls"]))))


def test_analytic_kl_replaces_the_monte_carlo_term():
    v_mc, g_mc = mc(gv.vi.elbo(model, guide), PHI_OFF, 20000)
    v_an, g_an = mc(gv.vi.elbo(model, guide, analytic_kl=True), PHI_OFF, 20000)
    m, s = float(PHI_OFF["m"]), float(jnp.exp(PHI_OFF["ls"]))
    within(v_an, exact_elbo(m, s))
    # Same keys, so the same mu per row: the difference is -KL - (log p(mu) - log q(mu)).
    mus = jax.vmap(lambda k: guide.simulate(k, (PHI_OFF,)).choices["mu"])(
        jax.random.split(jax.random.key(0), 20000))
    kl = math.log(1.0 / s) + (s**2 + m**2) / 2 - 0.5
    diff = -kl - (stats.norm(0, 1).logpdf(mus) - stats.norm(m, s).logpdf(mus))
    assert np.allclose(np.asarray(v_an) - np.asarray(v_mc), diff, atol=2e-4)
    for leaf in ("m", "ls"):
        a, b = np.asarray(g_mc[leaf]), np.asarray(g_an[leaf])
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se


def test_analytic_kl_keeps_the_site_scale():
    """A beta-ELBO with analytic KL is E_q[log p(y|mu)] - beta KL(q||p), not - KL."""
    beta = 3.0
    m, s = float(PHI_OFF["m"]), float(jnp.exp(PHI_OFF["ls"]))
    kl = math.log(1.0 / s) + (s**2 + m**2) / 2 - 0.5
    exact = exact_elbo(m, s) - (beta - 1.0) * kl  # exact_elbo holds -1 * KL
    v_mc, g_mc = mc(gv.vi.elbo(model, guide, scales={"mu": beta}), PHI_OFF, 20000)
    v_an, g_an = mc(gv.vi.elbo(model, guide, scales={"mu": beta}, analytic_kl=True),
                    PHI_OFF, 20000)
    within(v_mc, exact)
    within(v_an, exact)
    for leaf in ("m", "ls"):
        a, b = np.asarray(g_mc[leaf]), np.asarray(g_an[leaf])
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se


def test_bounds_are_ordered_and_iwelbo50_near_evidence():
    n = 4000
    e, _ = mc(gv.vi.elbo(model, guide), PHI_OFF, n)
    i5, _ = mc(gv.vi.iwelbo(model, guide, 5), PHI_OFF, n, seed=1)
    i50, _ = mc(gv.vi.iwelbo(model, guide, 50), PHI_OFF, n, seed=2)
    means = [float(np.mean(x)) for x in (e, i5, i50)]
    ses = [float(np.std(x) / math.sqrt(n)) for x in (e, i5, i50)]
    assert means[0] + 4.5 * ses[0] < means[1] - 4.5 * ses[1]
    assert means[1] + 4.5 * ses[1] < means[2] - 4.5 * ses[2]
    assert means[2] <= LOG_EVIDENCE + 4.5 * ses[2]
    assert abs(means[2] - LOG_EVIDENCE) < 0.05


def test_renyi_alpha0_is_iwelbo():
    key = jax.random.key(3)
    a = gv.vi.renyi(model, guide, alpha=0.0, n=5)(key, DATA, (0.0,), (PHI_OFF,))
    b = gv.vi.iwelbo(model, guide, 5)(key, DATA, (0.0,), (PHI_OFF,))
    assert np.allclose(a, b, rtol=1e-5)


def _compare_grads(g1, g2, leaves=("m", "ls")):
    for leaf in leaves:
        a, b = np.asarray(g1[leaf], np.float64), np.asarray(g2[leaf], np.float64)
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se, (leaf, a.mean(), b.mean(), se)


def test_sticking_the_landing_unbiased_and_zero_variance_at_posterior():
    _, g = mc(gv.vi.elbo(model, guide), PHI_OFF, 20000)
    _, g_stl = mc(gv.vi.elbo(model, guide, stick_the_landing=True), PHI_OFF, 20000, seed=1)
    _compare_grads(g, g_stl)
    post = {"m": jnp.float32(POST_MEAN), "ls": jnp.float32(math.log(POST_SD))}
    _, g0 = mc(gv.vi.elbo(model, guide), post, 2000)
    _, g0_stl = mc(gv.vi.elbo(model, guide, stick_the_landing=True), post, 2000, seed=1)
    for leaf in ("m", "ls"):
        assert np.std(g0_stl[leaf]) < 0.05 * np.std(g0[leaf])


def test_dreg_unbiased_and_lower_variance():
    _, g = mc(gv.vi.iwelbo(model, guide, 5), PHI_OFF, 20000)
    _, g_d = mc(gv.vi.iwelbo(model, guide, 5, dreg=True), PHI_OFF, 20000, seed=1)
    _compare_grads(g, g_d)
    assert np.var(g_d["ls"]) < np.var(g["ls"])
    # The model's gradient (w.r.t. mu0) is unchanged in expectation.
    f = lambda obj, seed: jax.jit(jax.vmap(lambda k: jax.grad(
        lambda mu0: obj(k, DATA, (mu0,), (PHI_OFF,)))(0.0)))(jax.random.split(jax.random.key(seed), 20000))
    a = f(gv.vi.iwelbo(model, guide, 5), 4)
    b = f(gv.vi.iwelbo(model, guide, 5, dreg=True), 5)
    _compare_grads({"t": a}, {"t": b}, ("t",))


def test_q_wake_gradient_matches_kl_p_q_gradient():
    # -grad_phi KL(p||q) = E_p[grad_phi log q(z)], in closed form for Gaussian p and q.
    phi = {"m": jnp.float32(POST_MEAN + 0.1), "ls": jnp.float32(math.log(POST_SD * 1.2))}
    m, s = float(phi["m"]), float(jnp.exp(phi["ls"]))
    exact = {"m": (POST_MEAN - m) / s**2, "ls": -1.0 + (POST_SD**2 + (POST_MEAN - m) ** 2) / s**2}
    _, g = mc(gv.vi.q_wake(model, guide, 500), phi, 4000)
    for leaf in ("m", "ls"):
        # self-normalized weights carry an O(1/n) bias: allow 1% of the value besides 4.5 SE
        within(g[leaf], exact[leaf], slack=0.01 * abs(exact[leaf]))


def test_p_wake_gradient_is_fisher_identity():
    # grad_mu0 log p(y; mu0) = (posterior mean of mu - mu0) / 1 for the prior N(mu0, 1).
    f = jax.jit(jax.vmap(lambda k: jax.grad(
        lambda mu0: gv.vi.p_wake(model, guide, 500)(k, DATA, (mu0,), (PHI_OFF,)))(0.0)))
    g = f(jax.random.split(jax.random.key(0), 2000))
    within(g, POST_MEAN, slack=0.01 * POST_MEAN)
    _, gq = mc(gv.vi.p_wake(model, guide, 5), PHI_OFF, 10)
    assert np.all(np.asarray(gq["m"]) == 0.0)  # the guide receives no gradient


def test_user_written_tempered_elbo_needs_no_library_change():
    beta = 0.3

    @gv.expectation
    def tempered_elbo(key, data, model_args, guide_args):
        tr = guide.simulate(key, guide_args)
        mu = tr.choices["mu"]
        loglik = jnp.sum(jax.scipy.stats.norm.logpdf(data["y", "v"], mu, SIGMA))
        logp_total, _ = model.assess(tr.choices | data, model_args)
        log_prior = logp_total - loglik
        return loglik + beta * (log_prior - tr.score)

    lib = gv.vi.elbo(model, guide, scales={"mu": beta})
    key = jax.random.key(7)
    vu, gu = jax.value_and_grad(lambda p: tempered_elbo(key, DATA, (0.0,), (p,)))(PHI_OFF)
    vl, gl = jax.value_and_grad(lambda p: lib(key, DATA, (0.0,), (p,)))(PHI_OFF)
    assert np.allclose(vu, vl, rtol=1e-5)
    for leaf in ("m", "ls"):
        assert np.allclose(gu[leaf], gl[leaf], rtol=1e-4, atol=1e-5)


def test_scale_multiplies_site_log_density():
    @gv.gen
    def scaled(mu):
        gv.scale(gv.normal(mu, 1.0), 3.0) @ "a"
        gv.scale(gv.vmap(obs, in_axes=None, axis_size=N_OBS)(mu), 2.0) @ "y"

    lp, _ = scaled.assess(gv.choice_map({"a": 0.5}) | DATA, (0.2,))
    ref = 3.0 * stats.norm(0.2, 1.0).logpdf(0.5) + 2.0 * stats.norm(0.2, SIGMA).logpdf(Y).sum()
    assert np.allclose(lp, ref, rtol=1e-5)


# --- discrete guide: VIMCO against the exact gradient of the IWELBO -----------------------
@gv.gen
def coin_model():
    c = gv.bernoulli(0.4) @ "c"
    gv.normal(2.0 * c, 1.0) @ "x"


@gv.gen
def coin_guide(logit):
    gv.bernoulli(logits=logit) @ "c"


def test_vimco_unbiased_for_iwelbo_gradient():
    n, x = 3, 2.5
    data = gv.choice_map({"x": x})

    def exact_iwelbo(logit):
        q1 = jax.nn.sigmoid(logit)
        lw = jnp.stack([jnp.log(0.6) + jax.scipy.stats.norm.logpdf(x, 0.0, 1.0) - jnp.log(1 - q1),
                        jnp.log(0.4) + jax.scipy.stats.norm.logpdf(x, 2.0, 1.0) - jnp.log(q1)])
        total = 0.0
        for combo in np.ndindex(*(2,) * n):
            c = np.array(combo)
            prob = jnp.prod(jnp.where(c == 1, q1, 1 - q1))
            total = total + prob * (logsumexp(lw[c]) - math.log(n))
        return total

    logit = jnp.float32(-1.0)
    exact = float(jax.grad(exact_iwelbo)(logit))
    obj = gv.vi.vimco(coin_model, coin_guide, n)
    g = jax.jit(jax.vmap(lambda k: jax.grad(lambda lg: obj(k, data, (), (lg,)))(logit)))(
        jax.random.split(jax.random.key(0), 40000))
    within(g, exact)
    assert 4.5 * np.std(g) / math.sqrt(len(g)) < 0.05 * abs(exact)


# --- hierarchical families on the noisy cone -------------------------------------------
@gv.gen
def cone():
    x = gv.normal(0.0, 10.0) @ "x"
    y = gv.normal(0.0, 10.0) @ "y"
    rs = x**2 + y**2
    gv.normal(rs, 0.1 + rs / 100.0) @ "z"


@gv.gen
def ring(data, psi):
    u = gv.uniform(0.0, 1.0) @ "u"
    th = 2 * jnp.pi * u
    r = jnp.sqrt(data["z"])
    gv.normal(r * jnp.cos(th), jnp.exp(psi["s1"])) @ "x"
    gv.normal(r * jnp.sin(th), jnp.exp(psi["s2"])) @ "y"


CONE_DATA = gv.choice_map({"z": 5.0})
PSI = {"s1": jnp.float32(-3.0), "s2": jnp.float32(-3.0)}
XY = gv.select("x", "y")


def _cone_values(objective, keys):
    f = jax.jit(jax.vmap(lambda k: objective(k, CONE_DATA, (), (CONE_DATA, PSI))))
    return np.asarray(f(keys), np.float64)


def test_hvi_below_marginal_elbo_and_diwhvi_above_iwhvi():
    n = 8000
    keys = jax.random.split(jax.random.key(0), n)
    hvi = _cone_values(gv.vi.hvi(cone, ring, XY), keys)
    iwhvi = _cone_values(gv.vi.iwhvi(cone, ring, XY, m=5), keys)
    diwhvi = _cone_values(gv.vi.diwhvi(cone, ring, XY, n=5, m=5), keys[: n // 4])

    # The exact marginal ELBO term at the same (x, y) the marginal family drew for each key
    # (it simulates the family with the first half of a split key): log q(x, y) by a
    # 4000-point midpoint rule over u.
    u = (np.arange(4000) + 0.5) / 4000
    s = math.exp(-3.0)

    @jax.jit
    @jax.vmap
    def marginal_elbo_sample(k):
        tr = ring.simulate(jax.random.split(k)[0], (CONE_DATA, PSI))
        x, y = tr.choices["x"], tr.choices["y"]
        th = 2 * jnp.pi * u
        r = jnp.sqrt(5.0)
        lq = logsumexp(jax.scipy.stats.norm.logpdf(x, r * jnp.cos(th), s)
                       + jax.scipy.stats.norm.logpdf(y, r * jnp.sin(th), s)) - math.log(len(u))
        lp, _ = cone.assess(tr.choices.filter(XY) | CONE_DATA, ())
        return lp - lq

    exact = np.asarray(marginal_elbo_sample(keys), np.float64)
    se = lambda a: a.std() / math.sqrt(len(a))
    d_hvi, d_iw = hvi - exact, iwhvi - exact          # paired: same (x, y) per key
    assert d_hvi.mean() + 4.5 * se(d_hvi) < 0.0       # HVI < the marginal's ELBO
    assert d_iw.mean() <= 4.5 * se(d_iw)              # IWHVI <= the marginal's ELBO
    d = iwhvi - hvi
    assert d.mean() - 4.5 * se(d) > 0.0               # IWHVI improves on HVI
    assert iwhvi.mean() + 4.5 * se(iwhvi) < diwhvi.mean() - 4.5 * se(diwhvi)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_particle_count_validation(bad):
    with pytest.raises(ValueError, match="n must be an int"):
        gv.vi.iwelbo(model, guide, bad)


def test_fit_recovers_the_conjugate_posterior():
    import optax

    objective = gv.vi.elbo(model, guide)
    phi0 = {"m": jnp.float32(0.0), "ls": jnp.float32(0.0)}
    phi, history = gv.fit(
        lambda k, p: objective(k, DATA, (0.0,), (p,)), phi0, optax.adam(optax.cosine_decay_schedule(5e-2, 2000)),
        steps=2000, key=jax.random.key(0), num_samples=32, progress=False,
    )
    m, sd = float(phi["m"]), float(jnp.exp(phi["ls"]))
    assert abs(m - POST_MEAN) <= 0.02 * abs(POST_MEAN), (m, POST_MEAN)
    assert abs(sd - POST_SD) <= 0.08 * POST_SD, (sd, POST_SD)
    assert np.mean(history["objective"][-100:]) > np.mean(history["objective"][:100])
