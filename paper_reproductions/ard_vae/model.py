"""ARD-VAE (Saha, Joshi, Whitaker, 2025) as genvi programs, with its baselines.

The generative program (`ard_vae`): per latent axis j a precision alpha_j ~ Gamma(a0, b0),
per image z ~ N(0, diag(1 / alpha)), x ~ N(dec(z), SIGMA_X) per pixel. SIGMA_X^2 = 1/2 makes
-log p(x | z) the sum-of-squares loss of the official code, and the code's `kld_scalar` is a
per-site scale on "z" (`gv.vi.elbo(..., scales={"z": kld_scalar})`).

The hyper-posterior q(alpha_j) = Gamma(a, b_j) is not trained by gradients: it is set in
closed form from a held-out, freshly drawn subset of encoded images once per epoch
(`gv.vi.gamma_precision_posterior`, run by `gv.vi.fit_conjugate`). Given it, the prior
over z used in the ELBO is either
  - `ard_vae_point`: N(0, b_j / a), the point estimate of the official code, or
  - `ard_vae_student`: alpha integrated out, z_j ~ Student-t(2a, 0, sqrt(b_j / a))
    (`gv.vi.normal_gamma_marginal`); its KL term has no closed form and is Monte Carlo.
The plain VAE and the beta-VAE are `ard_vae_point` with the prior variance fixed at 1.
The guide is the amortized diagonal Gaussian `encoder`; networks are plain JAX MLPs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

import genvi as gv

SIGMA_X = math.sqrt(0.5)  # -log N(x; dec, 1/2) = sum (x - dec)^2 + const


# -- networks (identical for every method) ------------------------------------------------


def init_mlp(key, sizes):
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:],
                                strict=True), strict=True):
        w = jax.random.normal(k, (n_in, n_out)) * math.sqrt(2.0 / n_in)
        params.append({"w": w, "b": jnp.zeros(n_out)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.elu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def init_autoencoder(key, dx, dz, hidden):
    ke, kd = jax.random.split(key)
    enc = init_mlp(ke, (dx, *hidden, 2 * dz))
    enc[-1]["w"] = enc[-1]["w"] * 0.1  # start near the prior: small means, unit scales
    return {"enc": enc, "dec": init_mlp(kd, (dz, *hidden[::-1], dx))}


def encode(enc, x):
    """Mean and standard deviation of q(z | x)."""
    h = mlp(enc, x)
    mu, pre = jnp.split(h, 2, axis=-1)
    return mu, jax.nn.softplus(pre + 0.5413) + 1e-4  # softplus(0.5413) = 1


def decode(dec, z):
    """Mean image in [0, 1]."""
    return jax.nn.sigmoid(mlp(dec, z))


# -- generative programs ------------------------------------------------------------------


@gv.gen
def ard_vae(dec, n, a0, b0, dz):
    """The full hierarchical model for n images: alpha ~ Gamma(a0, b0)^dz (a0, b0 > 0)."""
    alpha = gv.gamma(jnp.full(dz, a0), jnp.full(dz, b0)) @ "alpha"
    z = gv.mv_normal_diag(jnp.zeros((n, dz)), jnp.broadcast_to(alpha ** -0.5, (n, dz))) @ "z"
    gv.normal(decode(dec, z), SIGMA_X) @ "x"


@gv.gen
def ard_vae_point(dec, n, prior_var):
    """alpha at its point estimate: z ~ N(0, diag(prior_var)), prior_var = b / a."""
    dz = prior_var.shape[-1]
    z = gv.mv_normal_diag(jnp.zeros((n, dz)), jnp.broadcast_to(jnp.sqrt(prior_var), (n, dz))) @ "z"
    gv.normal(decode(dec, z), SIGMA_X) @ "x"


@gv.gen
def ard_vae_student(dec, n, a, b):
    """alpha ~ Gamma(a, b) integrated out: z_j ~ Student-t(2a, 0, sqrt(b_j / a))."""
    marginal = gv.vi.normal_gamma_marginal(jnp.broadcast_to(a, (n, b.shape[-1])),
                                           jnp.broadcast_to(b, (n, b.shape[-1])))
    z = marginal @ "z"
    gv.normal(decode(dec, z), SIGMA_X) @ "x"


@gv.gen
def encoder(enc, x):
    """The amortized guide q(z | x) = N(mu(x), diag s(x)^2) for a batch of images."""
    mu, sd = encode(enc, x)
    gv.mv_normal_diag(mu, sd) @ "z"


def elbo_objective(kind: str, kld_scalar: float):
    """The per-image scaled ELBO for one network: `f(key, params, prior_state, x_batch)`.

    kind: "point" (ARD, code-faithful; also the VAE/beta-VAE with prior_var = 1) or
    "student" (ARD with the Student-t marginal prior). kld_scalar multiplies the z terms.
    """
    if kind == "point":
        objective = gv.vi.elbo(ard_vae_point, encoder, scales={"z": kld_scalar},
                               analytic_kl=True)

        def model_args(p, st, n):
            return (p["dec"], n, st["b"] / st["a"])
    elif kind == "student":
        objective = gv.vi.elbo(ard_vae_student, encoder, scales={"z": kld_scalar})

        def model_args(p, st, n):
            return (p["dec"], n, st["a"], st["b"])
    else:
        raise ValueError(kind)

    def f(key, p, st, x):
        n = x.shape[0]
        return objective(key, gv.choice_map({"x": x}), model_args(p, st, n), (p["enc"], x)) / n

    return f


def ae_objective(key, p, st, x):
    """The deterministic autoencoder baseline: minus the per-image sum of squares."""
    mu, _ = encode(p["enc"], x)
    return -jnp.sum((x - decode(p["dec"], mu)) ** 2) / x.shape[0]


def ard_update(x_train, m, a0=0.0, b0=0.0):
    """The closed-form hyper-update (per network): encode a fresh random subset of m
    training images, draw z ~ q(z | x), and set q(alpha) = Gamma(a0 + m/2, b0 + sum z^2/2)."""

    def update(key, p, st):
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.choice(k_idx, x_train.shape[0], (m,), replace=False)
        mu, sd = encode(p["enc"], x_train[idx])
        z = mu + sd * jax.random.normal(k_z, mu.shape)
        a, b = gv.vi.gamma_precision_posterior(z, a0, b0)
        return {"a": a.astype(st["a"].dtype), "b": b.astype(st["b"].dtype)}

    return update
