"""Exact pieces of the ARD-VAE reproduction: the conjugate hyper-update of its program, the
padded-network trick used to train every latent size in one program, and the metrics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import genvi as gv
from paper_reproductions.ard_vae import model as M
from paper_reproductions.ard_vae import run as R


def test_ard_update_is_the_conditional_of_the_hierarchical_program():
    # For the program alpha ~ Gamma(a0, b0), z ~ N(0, 1/alpha), x ~ N(dec(z), .), the
    # update's Gamma(a, b) is p(alpha | z, x) exactly: log p(alpha, z, x) - log Gamma(alpha;
    # a, b) is the same for every alpha.
    dz, n, a0, b0 = 3, 5, 1.5, 0.5
    net = M.init_autoencoder(0, 16, dz, (8,))
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(n, 16)), jnp.float32)
    upd = M.ard_update(x, n, a0, b0)
    st0 = {"a": jnp.ones(dz), "b": jnp.ones(dz)}
    st = jax.jit(upd)(jax.random.key(3), net, st0)
    # the z the update drew, recomputed: same key, and all n rows selected (a permutation)
    k_idx, k_z = jax.random.split(jax.random.key(3))
    idx = jax.random.choice(k_idx, n, (n,), replace=False)
    mu, sd = jax.jit(M.encode)(net["enc"], x[idx])
    z = mu + sd * jax.random.normal(k_z, mu.shape)
    np.testing.assert_allclose(st["a"], a0 + n / 2)
    np.testing.assert_allclose(st["b"], b0 + 0.5 * np.sum(np.asarray(z) ** 2, 0), rtol=1e-5)

    @jax.jit
    def diff(alpha):
        lp, _ = M.ard_vae.assess(gv.choice_map({"alpha": alpha, "z": z, "x": x[idx]}),
                                 (net["dec"], n, a0, b0, dz))
        return lp - jnp.sum(gv.gamma(st["a"], st["b"]).log_prob(alpha))

    alphas = jnp.array([[0.3, 1.0, 2.0], [1.0, 4.0, 0.5], [7.0, 0.2, 1.1]])
    diffs = [float(diff(a)) for a in alphas]
    np.testing.assert_allclose(diffs, diffs[0], rtol=1e-5)


def test_student_prior_is_the_point_prior_in_the_limit_and_a_t_otherwise():
    z = jnp.array([[0.3, -1.2], [2.0, 0.1]])
    b = jnp.array([0.8, 2.5])
    dec = M.init_autoencoder(0, 4, 2, (4,))["dec"]
    x = jnp.full((2, 4), 0.5)

    def z_logp(program, args):
        with_x, _ = jax.jit(lambda: program.assess(gv.choice_map({"z": z, "x": x}), args))()
        return float(with_x)

    lp_point = z_logp(M.ard_vae_point, (dec, 2, b))
    lp_x = lp_point - stats.norm(0, np.sqrt(np.asarray(b))).logpdf(np.asarray(z)).sum()
    for a in (2.0, 200.0):  # q(alpha) = Gamma(a, a b): prior variance point estimate b
        lp_t = z_logp(M.ard_vae_student, (dec, 2, jnp.float32(a), b * a))
        exact = stats.t(2 * a, 0, np.sqrt(np.asarray(b))).logpdf(np.asarray(z)).sum()
        np.testing.assert_allclose(lp_t - lp_x, exact, rtol=1e-4)
    # with many encoded samples (a = m/2 = 1000) the t is close to the point-estimate normal
    lp_t = z_logp(M.ard_vae_student, (dec, 2, jnp.float32(1000.0), b * 1000.0))
    assert abs(lp_t - lp_point) < 0.02


def test_padded_network_is_the_small_network_with_zero_gradient_on_padding():
    dz, dz_max, dx = 3, 8, 12
    small = M.init_autoencoder(5, dx, dz, (16, 16))
    big = M.pad_network(small, dz, dz_max)
    mask = (jnp.arange(dz_max) < dz).astype(jnp.float32)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(7, dx)), jnp.float32)
    enc, dec = jax.jit(M.encode), jax.jit(M.decode)
    mu_s, sd_s = enc(small["enc"], x)
    mu_b, sd_b = enc(big["enc"], x)
    np.testing.assert_allclose(mu_b[:, :dz], mu_s, atol=1e-6)
    np.testing.assert_allclose(sd_b[:, :dz], sd_s, atol=1e-6)
    z = jnp.concatenate([mu_s, jnp.ones((7, dz_max - dz))], 1)
    np.testing.assert_allclose(dec(big["dec"], z * mask), dec(small["dec"], mu_s),
                               atol=1e-6)
    back = M.slice_network(big, dz)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(small), strict=True):
        np.testing.assert_array_equal(a, b)
    st = {"a": jnp.full(dz_max, 10.0), "b": jnp.full(dz_max, 7.0)}
    for kind in ("point", "student"):
        f = M.elbo_objective(kind)
        g = jax.jit(jax.grad(lambda p: f(jax.random.key(1), p, st, 0.1, mask, x)))(big)
        assert float(jnp.max(jnp.abs(g["dec"][0]["w"][dz:]))) == 0.0
        w = g["enc"][-1]["w"]
        assert float(jnp.max(jnp.abs(w[:, dz:dz_max]))) == 0.0
        assert float(jnp.max(jnp.abs(w[:, dz_max + dz:]))) == 0.0
        assert float(jnp.max(jnp.abs(w[:, :dz]))) > 0.0


def test_relevance_rule_and_frechet_distance():
    score = np.array([0.001, 5.0, 0.004, 3.0, 1.995])  # total 10: top three reach 99.5%
    np.testing.assert_array_equal(R.relevant_axes(score, 0.99), [1, 3, 4])
    np.testing.assert_array_equal(R.relevant_axes(score, 0.5), [1])
    rng = np.random.default_rng(0)
    f1 = rng.standard_normal((500, 3)) @ np.array([[1.0, 0.2, 0], [0, 1.0, 0.3], [0, 0, 0.5]])
    m = np.array([0.5, -1.0, 2.0])
    f2 = 2 * f1 + m
    # f2's statistics are exactly (2 mu1 + m, 4 S): FD = |mu1 + m|^2 + tr(S)
    exact = np.sum((f1.mean(0) + m) ** 2) + np.trace(np.cov(f1, rowvar=False))
    assert math.isclose(R.frechet(f1, f2), exact, rel_tol=1e-6)
    assert abs(R.frechet(f1, f1)) < 1e-6


def test_blob_factors_and_digits():
    x, f = R.make_blobs(50, 0)
    assert x.shape == (50, 256) and f.shape == (50, 4)
    img = x.reshape(50, 16, 16)
    peak = np.array([np.unravel_index(np.argmax(i), (16, 16)) for i in img])
    np.testing.assert_array_less(np.abs(peak[:, 1] - f[:, 0]), 0.51)   # column = x
    np.testing.assert_array_less(np.abs(peak[:, 0] - f[:, 1]), 0.51)   # row = y
    np.testing.assert_array_less(img.max((1, 2)), f[:, 3] + 1e-6)      # peak <= intensity
    tr, te = R.load_digit_images(297)
    assert tr.shape == (1500, 64) and te.shape == (297, 64) and tr.max() <= 1.0
