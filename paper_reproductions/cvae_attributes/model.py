"""Sohn et al.'s conditional VAE (attributes x -> image y) as genvi programs, its baselines,
and its three objectives: the beta-weighted bound, the GSNN objective and the hybrid.

Networks are small MLPs held in a parameter dict `p`:
  p["prior"]  x -> mu_p, sigma_p            the conditional prior p(z | x)
  p["rec"]    (x, y) -> mu_q, sigma_q       the recognition guide q(z | x, y)
  p["dec"]    (x, z) -> image mean          the generation network p(y | x, z)
  p["raw_sigma"]                            per-pixel output noise, sigma = 0.01 + softplus
The image likelihood is a diagonal Gaussian with that learned per-pixel noise level.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import genvi as gv

SIGMA_MIN = 0.01  # floor of every Gaussian scale (pixel noise and latent scales)


# -- small MLPs ------------------------------------------------------------------------


def init_mlp(key, sizes):
    """[(W, b), ...] with He-normal weights and zero biases."""
    layers = []
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    for k, (m, n) in zip(jax.random.split(key, len(pairs)), pairs, strict=True):
        layers.append((jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), jnp.zeros(n)))
    return layers


def mlp(layers, h):
    for w, b in layers[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = layers[-1]
    return h @ w + b


def gaussian_head(layers, h):
    """(loc, scale) from an MLP whose last layer has 2 * d outputs."""
    out = mlp(layers, h)
    loc, raw = jnp.split(out, 2, axis=-1)
    return loc, SIGMA_MIN + jax.nn.softplus(raw)


def pixel_scale(p):
    return SIGMA_MIN + jax.nn.softplus(p["raw_sigma"])


def decode(p, x, z):
    """The mean image of p(y | x, z)."""
    return mlp(p["dec"], jnp.concatenate([x, z], -1))


def z_dim(p):
    return p["dec"][0][0].shape[0] - p["prior"][0][0].shape[0]


def init_cvae(key, n_attr, n_pix, z=8, hidden=128, prior_hidden=64):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "prior": init_mlp(k1, [n_attr, prior_hidden, 2 * z]),
        "rec": init_mlp(k2, [n_attr + n_pix, hidden, hidden, 2 * z]),
        "dec": init_mlp(k3, [n_attr + z, hidden, hidden, n_pix]),
        "raw_sigma": jnp.full((n_pix,), -1.0),
    }


def init_deterministic(key, n_attr, n_pix, hidden=128):
    """The attributes -> image regression network (no latent, no noise model)."""
    return {"net": init_mlp(key, [n_attr, hidden, hidden, n_pix])}


# -- generative programs ---------------------------------------------------------------


@gv.gen
def cvae(p, x):
    """Sohn's CVAE: z ~ p(z | x) (learned conditional prior), y ~ N(dec(x, z), sigma^2)."""
    loc, scale = gaussian_head(p["prior"], x)
    z = gv.mv_normal_diag(loc, scale) @ "z"
    gv.mv_normal_diag(decode(p, x, z), pixel_scale(p)) @ "y"


@gv.gen
def cvae_fixed_prior(p, x):
    """The baseline with a fixed prior z ~ N(0, I); the decoder still sees x."""
    d = z_dim(p)
    z = gv.mv_normal_diag(jnp.zeros(d), jnp.ones(d)) @ "z"
    gv.mv_normal_diag(decode(p, x, z), pixel_scale(p)) @ "y"


@gv.gen
def recognition(p, x, y):
    """The recognition guide q(z | x, y)."""
    loc, scale = gaussian_head(p["rec"], jnp.concatenate([x, y], -1))
    gv.mv_normal_diag(loc, scale) @ "z"


@gv.gen
def prior_proposal(p, x, y):
    """The conditional prior used as an importance proposal (for models without a guide)."""
    loc, scale = gaussian_head(p["prior"], x)
    gv.mv_normal_diag(loc, scale) @ "z"


@gv.gen
def fixed_prior_proposal(p, x, y):
    d = z_dim(p)
    gv.mv_normal_diag(jnp.zeros(d), jnp.ones(d)) @ "z"


@gv.gen
def deterministic(p, x, log_sigma):
    """The deterministic baseline as a likelihood: y ~ N(net(x), exp(log_sigma)^2), with the
    per-pixel noise level fitted to its training residuals after MSE training."""
    gv.mv_normal_diag(mlp(p["net"], x), jnp.exp(log_sigma)) @ "y"


# -- objectives (all maximized) -----------------------------------------------------------


def cvae_bound(model, guide, beta=1.0):
    """E_q[log p(y | x, z)] - beta KL(q(z | x, y) || p(z | x)): the beta-weighted bound, as
    the ELBO with the latent site's log densities scaled by beta (KL in closed form)."""
    return gv.vi.elbo(model, guide, scales={"z": beta}, analytic_kl=True)


def gsnn(model):
    """Sohn's GSNN objective E_{z ~ p(z | x)}[log p(y | x, z)]: the model run forwards with
    the image constrained; `generate`'s weight is log p(y | x, z) at the prior's z."""

    @gv.expectation
    def objective(key, data, model_args, guide_args=None):
        _, log_w = model.generate(key, data, model_args)
        return log_w

    objective.__name__ = "gsnn"
    return objective


def hybrid(model, guide, alpha=0.5, beta=1.0):
    """Sohn's hybrid: alpha * (CVAE bound) + (1 - alpha) * GSNN, one expectation program
    whose two terms are nested expectation programs with independent keys."""
    bound, g = cvae_bound(model, guide, beta), gsnn(model)

    @gv.expectation
    def objective(key, data, model_args, guide_args):
        k1, k2 = jax.random.split(key)
        return (alpha * bound(k1, data, model_args, guide_args)
                + (1.0 - alpha) * g(k2, data, model_args))

    objective.__name__ = "hybrid"
    return objective


def data_map(y):
    return gv.choice_map({"y": y})
