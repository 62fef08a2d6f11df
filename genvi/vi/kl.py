"""Closed-form KL divergences between guide and prior distributions at the same site."""

from __future__ import annotations

import jax.numpy as jnp

from genvi.distributions import MvNormalDiag, Normal


def _kl_normal(q_loc, q_scale, p_loc, p_scale):
    return (jnp.log(p_scale / q_scale)
            + (q_scale**2 + (q_loc - p_loc) ** 2) / (2 * p_scale**2) - 0.5)


def kl_divergence(q, p):
    """KL(q || p) summed over all dimensions, or None when no closed form is known."""
    if isinstance(q, Normal) and isinstance(p, Normal):
        return jnp.sum(_kl_normal(q.loc, q.scale, p.loc, p.scale))
    if isinstance(q, (Normal, MvNormalDiag)) and isinstance(p, (Normal, MvNormalDiag)):
        qs = q.scale_diag if isinstance(q, MvNormalDiag) else q.scale
        ps = p.scale_diag if isinstance(p, MvNormalDiag) else p.scale
        return jnp.sum(_kl_normal(q.loc, qs, p.loc, ps))
    return None
