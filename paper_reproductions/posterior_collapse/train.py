"""Training many settings at once: one compiled `gv.fit` per model family.

A sweep's settings ("members") are stacked along a leading axis of the parameters and the
hyperparameters; the objective is the sum over members of each member's mean per-example
genvi ELBO, vmapped. Members share no parameter and Adam is elementwise, so this is exactly
independent training of every member, compiled once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import genvi as gv
from paper_reproductions.posterior_collapse import model as M


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _per_example_mean(key, n, one):
    keys = jax.random.split(key, n)
    return jnp.mean(jax.vmap(one)(keys, jnp.arange(n)))


def cvae_member_objective(analytic_kl: bool, relu: bool = False):
    """f(key, p, hyper, x, y) -> mean over the batch of the genvi beta-ELBO of one member.
    hyper = (beta, eta_enc, eta_dec); x, y: (B, d)."""
    model = M.relu_cvae_model if relu else M.cvae_model
    guide = M.relu_cvae_guide if relu else M.cvae_guide

    def f(key, p, hyper, x, y):
        beta, eta_enc, eta_dec = hyper
        obj = gv.vi.elbo(model, guide, scales={"z": beta}, analytic_kl=analytic_kl)

        def one(k, i):
            return obj(k, gv.choice_map({"y": y[i]}), (x[i], p, eta_enc, eta_dec),
                       (x[i], y[i], p))

        return _per_example_mean(key, x.shape[0], one)

    return f


def mhvae_member_objective(analytic_kl: bool, relu: bool = False):
    """f(key, p, hyper, x) -> mean over the batch of the genvi (beta1, beta2)-ELBO of one
    member. hyper = (beta1, beta2, eta_enc, eta_dec, sigma1, sigma2); x: (B, d0)."""
    model = M.relu_mhvae_model if relu else M.mhvae_model
    guide = M.relu_mhvae_guide if relu else M.mhvae_guide

    def f(key, p, hyper, x):
        beta1, beta2, eta_enc, eta_dec, sigma1, sigma2 = hyper
        obj = gv.vi.elbo(model, guide, scales={"z1": beta1, "z2": beta2},
                         analytic_kl=analytic_kl)
        gargs = (lambda xi: (xi, p, sigma2)) if relu else (lambda xi: (xi, p, sigma1, sigma2))

        def one(k, i):
            return obj(k, gv.choice_map({"x": x[i]}), (p, eta_enc, eta_dec), gargs(x[i]))

        return _per_example_mean(key, x.shape[0], one)

    return f


def train(member_objective, params, hypers, data, *, steps, lr, key, batch_size=None,
          shared_data=True, final_lr_fraction=0.01):
    """Maximize the sum over members of `member_objective` with Adam and a cosine decay of
    the learning rate to `final_lr_fraction * lr`.

    Args:
        member_objective: f(key, p, hyper, *arrays) for one member.
        params: stacked parameters (leading axis: members).
        hypers: tuple of arrays of shape (members,).
        data: tuple of arrays, examples along axis 0; with `shared_data=False` each has a
            members axis second: (N, members, d).
    Returns:
        (trained params, history of the objective).
    """
    n_mem = jax.tree.leaves(params)[0].shape[0]
    data_axis = None if shared_data else 1

    def objective(k, p, batch):
        keys = jax.random.split(k, n_mem)
        in_axes = (0, 0, 0) + (data_axis,) * len(batch)
        vals = jax.vmap(member_objective, in_axes=in_axes)(keys, p, hypers, *batch)
        return jnp.sum(vals)

    sched = optax.cosine_decay_schedule(lr, steps, alpha=final_lr_fraction)
    p, hist = gv.fit(objective, params, optax.adam(sched), steps=steps, key=key,
                     data=tuple(data), batch_size=batch_size,
                     chunk_size=max(1, steps // 4), progress=False)
    return p, hist
