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
import numpy as np

import genvi as gv

SIGMA_X = math.sqrt(0.5)  # -log N(x; dec, 1/2) = sum (x - dec)^2 + const


# -- networks (identical for every method) ------------------------------------------------


def init_mlp(rng, sizes):
    """He-normal weights drawn with numpy (`rng` a numpy Generator): no JAX compile at init."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)
        params.append({"w": jnp.asarray(w, jnp.float32), "b": jnp.zeros(n_out, jnp.float32)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.elu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def init_autoencoder(seed, dx, dz, hidden):
    """Encoder dx -> hidden -> (mu, pre-scale) and decoder dz -> hidden reversed -> dx."""
    rng = np.random.default_rng(seed)
    enc = init_mlp(rng, (dx, *hidden, 2 * dz))
    enc[-1]["w"] = enc[-1]["w"] * 0.1  # start near the prior: small means, unit scales
    return {"enc": enc, "dec": init_mlp(rng, (dz, *hidden[::-1], dx))}


def encode(enc, x):
    """Mean and standard deviation of q(z | x)."""
    h = mlp(enc, x)
    mu, pre = jnp.split(h, 2, axis=-1)
    return mu, jax.nn.softplus(pre + 0.5413) + 1e-4  # softplus(0.5413) = 1


def decode(dec, z):
    """Mean image in [0, 1]."""
    return jax.nn.sigmoid(mlp(dec, z))


def pad_network(net, dz, dz_max):
    """Embed a dz-latent network in a dz_max-latent one (zero weights on the extra axes).

    With the extra axes masked (`mask`, below) the padded network computes exactly the
    dz-network's function and its extra weights get zero gradients, so networks of every
    latent size can be stacked and trained in one compiled program."""
    extra = dz_max - dz
    enc, dec = [dict(layer) for layer in net["enc"]], [dict(layer) for layer in net["dec"]]
    w, b = enc[-1]["w"], enc[-1]["b"]
    zw, zb = jnp.zeros((w.shape[0], extra)), jnp.zeros(extra)
    enc[-1] = {"w": jnp.concatenate([w[:, :dz], zw, w[:, dz:], zw], 1),
               "b": jnp.concatenate([b[:dz], zb, b[dz:], zb])}
    dec[0] = {"w": jnp.concatenate([dec[0]["w"], jnp.zeros((extra, dec[0]["w"].shape[1]))], 0),
              "b": dec[0]["b"]}
    return {"enc": enc, "dec": dec}


def slice_network(net, dz):
    """The dz-latent network inside a padded one (inverse of `pad_network`)."""
    enc, dec = [dict(layer) for layer in net["enc"]], [dict(layer) for layer in net["dec"]]
    w, b = enc[-1]["w"], enc[-1]["b"]
    half = w.shape[1] // 2
    enc[-1] = {"w": jnp.concatenate([w[:, :dz], w[:, half:half + dz]], 1),
               "b": jnp.concatenate([b[:dz], b[half:half + dz]])}
    dec[0] = {"w": dec[0]["w"][:dz], "b": dec[0]["b"]}
    return {"enc": enc, "dec": dec}


# -- generative programs ------------------------------------------------------------------
#
# `mask` (1 on the axes a network has, 0 on padding) defaults to all ones; on a padded axis
# the decoder ignores z and the guide equals `fill_sd`-Normal, so nothing is learned there.


@gv.gen
def ard_vae(dec, n, a0, b0, dz):
    """The full hierarchical model for n images: alpha ~ Gamma(a0, b0)^dz (a0, b0 > 0)."""
    alpha = gv.gamma(jnp.full(dz, a0), jnp.full(dz, b0)) @ "alpha"
    z = gv.mv_normal_diag(jnp.zeros((n, dz)), jnp.broadcast_to(alpha ** -0.5, (n, dz))) @ "z"
    gv.normal(decode(dec, z), SIGMA_X) @ "x"


@gv.gen
def ard_vae_point(dec, n, prior_var, mask=1.0):
    """alpha at its point estimate: z ~ N(0, diag(prior_var)), prior_var = b / a."""
    dz = prior_var.shape[-1]
    z = gv.mv_normal_diag(jnp.zeros((n, dz)), jnp.broadcast_to(jnp.sqrt(prior_var), (n, dz))) @ "z"
    gv.normal(decode(dec, z * mask), SIGMA_X) @ "x"


@gv.gen
def ard_vae_student(dec, n, a, b, mask=1.0):
    """alpha ~ Gamma(a, b) integrated out: z_j ~ Student-t(2a, 0, sqrt(b_j / a))."""
    shape = (n, b.shape[-1])
    z = gv.vi.normal_gamma_marginal(jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)) @ "z"
    gv.normal(decode(dec, z * mask), SIGMA_X) @ "x"


@gv.gen
def encoder(enc, x, mask=1.0, fill_sd=1.0):
    """The amortized guide q(z | x) = N(mu(x), diag s(x)^2) for a batch of images."""
    mu, sd = encode(enc, x)
    gv.mv_normal_diag(mu * mask, jnp.where(mask > 0, sd, fill_sd)) @ "z"


def elbo_objective(kind: str):
    """The per-image scaled ELBO of one network,
    `f(key, params, prior_state, kld_scalar, mask, x_batch)`.

    kind: "point" (ARD as the official code; the VAE and beta-VAE are this with the prior
    variance held at 1) or "student" (ARD with the Student-t marginal prior, whose KL term
    is Monte Carlo). `kld_scalar` scales the z terms (`scales={"z": kld_scalar}`).
    """
    if kind not in ("point", "student"):
        raise ValueError(f"kind must be 'point' or 'student', got {kind!r}")

    def f(key, p, st, kld_scalar, mask, x):
        n = x.shape[0]
        var = st["b"] / st["a"]
        guide_args = (p["enc"], x, mask, jnp.sqrt(var))
        data = gv.choice_map({"x": x})
        if kind == "point":
            objective = gv.vi.elbo(ard_vae_point, encoder, scales={"z": kld_scalar},
                                   analytic_kl=True)
            return objective(key, data, (p["dec"], n, var, mask), guide_args) / n
        objective = gv.vi.elbo(ard_vae_student, encoder, scales={"z": kld_scalar})
        return objective(key, data, (p["dec"], n, st["a"], st["b"], mask), guide_args) / n

    return f


def ae_objective(key, p, mask, x):
    """The deterministic autoencoder baseline: minus the per-image sum of squares."""
    mu, _ = encode(p["enc"], x)
    return -jnp.sum((x - decode(p["dec"], mu * mask)) ** 2) / x.shape[0]


def ard_update(x_train, m, a0=0.0, b0=0.0):
    """The closed-form hyper-update of one network: encode a fresh random subset of m
    training images, draw z ~ q(z | x), and set q(alpha) = Gamma(a0 + m/2, b0 + sum z^2/2).
    Returns `update(key, params, state, mask)`; padded axes keep their old values."""

    def update(key, p, st, mask=1.0):
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.choice(k_idx, x_train.shape[0], (m,), replace=False)
        mu, sd = encode(p["enc"], x_train[idx])
        z = mu + sd * jax.random.normal(k_z, mu.shape)
        a, b = gv.vi.gamma_precision_posterior(z, a0, b0)
        keep = jnp.broadcast_to(mask, b.shape) > 0
        return {"a": jnp.where(keep, a, st["a"]), "b": jnp.where(keep, b, st["b"])}

    return update
