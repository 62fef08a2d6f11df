"""Forward-mode helpers that treat `None` as a symbolic zero tangent."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def zeros_tangent(x):
    """A materialized zero tangent for a float value, None for anything else."""
    return jnp.zeros_like(x) if is_float(x) else None


def jvp_flat(fn, primals: list, tangents: list):
    """jvp of `fn(*primals)` w.r.t. the inputs whose tangent is not None.

    Returns (outputs, output tangents) with outputs as `fn` returns them; the tangents are
    a matching pytree whose non-float leaves are None, or None if no input has a tangent.
    """
    idx = [i for i, t in enumerate(tangents) if t is not None]
    if not idx:
        return fn(*primals), None

    def restricted(*xs):
        full = list(primals)
        for i, x in zip(idx, xs, strict=True):
            full[i] = x
        return fn(*full)

    ps = [primals[i] for i in idx]
    ts = []
    for i in idx:
        t, dt = tangents[i], jnp.result_type(primals[i])
        ts.append(t if getattr(t, "dtype", None) == dt else jnp.asarray(t, dtype=dt))
    out, out_dot = jax.jvp(restricted, ps, ts)
    out_dot = jax.tree.map(
        lambda o, t: t if is_float(o) else None, out, out_dot,
    )
    return out, out_dot


def jvp_tree(fn, tree, tree_dot):
    """jvp of `fn(tree)` where `tree_dot` mirrors `tree` with None for zero leaves."""
    leaves, treedef = jax.tree.flatten(tree)
    if tree_dot is None:
        t_leaves = [None] * len(leaves)
    else:
        t_leaves = treedef.flatten_up_to(tree_dot)
    out, out_dot = jvp_flat(lambda *ls: fn(jax.tree.unflatten(treedef, ls)), leaves, t_leaves)
    return out, out_dot
