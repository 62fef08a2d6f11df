"""The models of Dang et al. (ICLR 2024) as genvi generative programs, with their guides.

Per example (the objectives are vmapped over a data set in `run.py`):

- Linear CVAE (Theorem 2): guide q(z | x, y) = N(W1 x + W2 y, diag(sigma^2)) with a learnable,
  input-independent sigma; model p(z) = N(0, eta_enc^2 I), p(y | z, x) = N(U1 z + U2 x,
  eta_dec^2 I). beta weights the site "z" (`scales={"z": beta}`).
- Two-level Markov linear HVAE (Theorems 3 and 5): guide q(z1 | x) = N(W1 x, sigma1^2 I)
  (fixed), q(z2 | z1) = N(W2 z1, Sigma2) with Sigma2 diagonal learnable (`log_sigma2` in the
  parameters) or fixed sigma2^2 I (no `log_sigma2`: the variance is a constant argument, so
  it is frozen by construction); model p(z2) = N(0, eta_enc^2 I), p(z1 | z2) = N(U2 z2,
  eta_dec^2 I), p(x | z1) = N(U1 z1, eta_dec^2 I). beta1 and beta2 weight "z1" and "z2".
- ReLU versions of both: one-hidden-layer MLPs in place of the linear maps, with an
  amortized (input-dependent) encoder standard deviation, as in the official nonlinear code.

Parameters are dicts of arrays; hyperparameters (eta_enc, eta_dec, sigma1, sigma2) are
arguments, so that a whole sweep can be vmapped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import genvi as gv


# --- linear CVAE -------------------------------------------------------------------
@gv.gen
def cvae_model(x, p, eta_enc, eta_dec):
    d_z = p["U1"].shape[1]
    z = gv.mv_normal_diag(jnp.zeros(d_z), eta_enc * jnp.ones(d_z)) @ "z"
    mean = p["U1"] @ z + p["U2"] @ x
    gv.mv_normal_diag(mean, eta_dec * jnp.ones_like(mean)) @ "y"


@gv.gen
def cvae_guide(x, y, p):
    gv.mv_normal_diag(p["W1"] @ x + p["W2"] @ y, jnp.exp(p["log_sigma"])) @ "z"


def cvae_init(key, d_x, d_y, d_z, scale=0.1):
    k = jax.random.split(key, 4)
    return {
        "W1": scale * jax.random.normal(k[0], (d_z, d_x)),
        "W2": scale * jax.random.normal(k[1], (d_z, d_y)),
        "U1": scale * jax.random.normal(k[2], (d_y, d_z)),
        "U2": scale * jax.random.normal(k[3], (d_y, d_x)),
        "log_sigma": jnp.zeros(d_z),
    }


# --- linear two-level Markov HVAE ---------------------------------------------------------
@gv.gen
def mhvae_model(p, eta_enc, eta_dec):
    d1, d2 = p["U2"].shape
    z2 = gv.mv_normal_diag(jnp.zeros(d2), eta_enc * jnp.ones(d2)) @ "z2"
    z1 = gv.mv_normal_diag(p["U2"] @ z2, eta_dec * jnp.ones(d1)) @ "z1"
    mean = p["U1"] @ z1
    gv.mv_normal_diag(mean, eta_dec * jnp.ones_like(mean)) @ "x"


@gv.gen
def mhvae_guide(x, p, sigma1, sigma2):
    """`sigma2` is used only when `p` has no "log_sigma2" (fixed Sigma2 = sigma2^2 I)."""
    d1, d2 = p["W1"].shape[0], p["W2"].shape[0]
    z1 = gv.mv_normal_diag(p["W1"] @ x, sigma1 * jnp.ones(d1)) @ "z1"
    s2 = jnp.exp(p["log_sigma2"]) if "log_sigma2" in p else sigma2 * jnp.ones(d2)
    gv.mv_normal_diag(p["W2"] @ z1, s2) @ "z2"


def mhvae_init(key, d0, d1, d2, learnable_sigma2: bool, scale=0.1):
    k = jax.random.split(key, 4)
    p = {
        "W1": scale * jax.random.normal(k[0], (d1, d0)),
        "U1": scale * jax.random.normal(k[1], (d0, d1)),
        "W2": scale * jax.random.normal(k[2], (d2, d1)),
        "U2": scale * jax.random.normal(k[3], (d1, d2)),
    }
    if learnable_sigma2:
        p["log_sigma2"] = jnp.zeros(d2)
    return p


# --- ReLU versions ---------------------------------------------------------------------
def _dense(key, d_in, d_out):
    return {"w": jax.random.normal(key, (d_out, d_in)) * jnp.sqrt(1.0 / d_in),
            "b": jnp.zeros(d_out)}


def _apply(layer, h):
    return layer["w"] @ h + layer["b"]


def _mlp(layers, h):
    return _apply(layers[1], jax.nn.relu(_apply(layers[0], h)))


@gv.gen
def relu_cvae_model(x, p, eta_enc, eta_dec):
    d_z = p["dec_z"][0]["w"].shape[1]
    z = gv.mv_normal_diag(jnp.zeros(d_z), eta_enc * jnp.ones(d_z)) @ "z"
    mean = _mlp(p["dec_z"], z) + _mlp(p["dec_x"], x)
    gv.mv_normal_diag(mean, eta_dec * jnp.ones_like(mean)) @ "y"


def relu_cvae_encode(x, y, p):
    """(mean, std) of q(z | x, y): separate MLPs of x and of y, summed (official layout)."""
    hx = jax.nn.relu(_apply(p["enc_x"], x))
    hy = jax.nn.relu(_apply(p["enc_y"], y))
    mu = _apply(p["mu_x"], hx) + _apply(p["mu_y"], hy)
    log_sd = _apply(p["sd_x"], hx) + _apply(p["sd_y"], hy)
    return mu, jnp.exp(log_sd)


@gv.gen
def relu_cvae_guide(x, y, p):
    mu, sd = relu_cvae_encode(x, y, p)
    gv.mv_normal_diag(mu, sd) @ "z"


def relu_cvae_init(key, d_x, d_y, d_z, d_h):
    k = jax.random.split(key, 10)
    return {
        "enc_x": _dense(k[0], d_x, d_h), "enc_y": _dense(k[1], d_y, d_h),
        "mu_x": _dense(k[2], d_h, d_z), "mu_y": _dense(k[3], d_h, d_z),
        "sd_x": jax.tree.map(lambda a: 0.0 * a, _dense(k[4], d_h, d_z)),
        "sd_y": jax.tree.map(lambda a: 0.0 * a, _dense(k[5], d_h, d_z)),
        "dec_z": [_dense(k[6], d_z, d_h), _dense(k[7], d_h, d_y)],
        "dec_x": [_dense(k[8], d_x, d_h), _dense(k[9], d_h, d_y)],
    }


@gv.gen
def relu_mhvae_model(p, eta_enc, eta_dec):
    d2 = p["dec_2"][0]["w"].shape[1]
    d1 = p["dec_2"][1]["w"].shape[0]
    z2 = gv.mv_normal_diag(jnp.zeros(d2), eta_enc * jnp.ones(d2)) @ "z2"
    z1 = gv.mv_normal_diag(_mlp(p["dec_2"], z2), eta_dec * jnp.ones(d1)) @ "z1"
    mean = _mlp(p["dec_1"], z1)
    gv.mv_normal_diag(mean, eta_dec * jnp.ones_like(mean)) @ "x"


def relu_mhvae_encode(x, p):
    h = jax.nn.relu(_apply(p["enc_1"], x))
    return _apply(p["mu_1"], h), jnp.exp(_apply(p["sd_1"], h))


def relu_mhvae_encode2(z1, p, sigma2):
    h = jax.nn.relu(_apply(p["enc_2"], z1))
    mu = _apply(p["mu_2"], h)
    sd = jnp.exp(_apply(p["sd_2"], h)) if "sd_2" in p else sigma2 * jnp.ones_like(mu)
    return mu, sd


@gv.gen
def relu_mhvae_guide(x, p, sigma2):
    """q(z1 | x) amortized; q(z2 | z1) with a learnable (amortized) std when `p` has "sd_2",
    else the fixed std `sigma2`."""
    mu1, sd1 = relu_mhvae_encode(x, p)
    z1 = gv.mv_normal_diag(mu1, sd1) @ "z1"
    mu2, sd2 = relu_mhvae_encode2(z1, p, sigma2)
    gv.mv_normal_diag(mu2, sd2) @ "z2"


def relu_mhvae_init(key, d0, d1, d2, d_h, learnable_sigma2: bool):
    k = jax.random.split(key, 10)
    zero = lambda layer: jax.tree.map(lambda a: 0.0 * a, layer)
    p = {
        "enc_1": _dense(k[0], d0, d_h), "mu_1": _dense(k[1], d_h, d1),
        "sd_1": zero(_dense(k[2], d_h, d1)),
        "enc_2": _dense(k[3], d1, d_h), "mu_2": _dense(k[4], d_h, d2),
        "dec_2": [_dense(k[6], d2, d_h), _dense(k[7], d_h, d1)],
        "dec_1": [_dense(k[8], d1, d_h), _dense(k[9], d_h, d0)],
    }
    if learnable_sigma2:
        p["sd_2"] = zero(_dense(k[5], d_h, d2))
    return p
