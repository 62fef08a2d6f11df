"""Closed-form (conjugate) updates of part of the state, mixed with stochastic gradients.

Many models have a block of variables whose optimal variational factor, given the rest, is
known in closed form (a conjugate exponential-family update, as in coordinate-ascent VI),
while the rest (network weights, amortized guides) is trained by stochastic gradients.
`fit_conjugate` alternates the two inside one compiled `gv.fit` run: every `every` gradient
steps, the user's `update(key, params, state)` replaces `state`; in between, `params` take
ordinary optimizer steps on an objective that reads `state` as a constant.

The mixing is done by an optax transformation wrapped around the user's optimizer, so it
keeps everything `fit` offers (compiled chunks, callbacks, minibatches, checkpoints and
exact resume, the non-finite stop): the optimizer's moments carry over across updates, the
update count lives in the optimizer state, and the update's key is `fold_in(key, count)`.

Two conjugate building blocks are included: the Gamma posterior of the precision of
zero-mean (or known-mean) normals (`gamma_precision_posterior`, the ARD / Normal-Gamma
update) and the Student-t marginal of such a normal under a Gamma precision
(`normal_gamma_marginal`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from genvi.distributions import student_t
from genvi.vi.fit import fit

__all__ = ["fit_conjugate", "gamma_precision_posterior", "normal_gamma_marginal"]

sg = jax.lax.stop_gradient


# -- conjugate building blocks ------------------------------------------------------------


def gamma_precision_posterior(z, a0=0.0, b0=0.0, *, loc=0.0, axis=0):
    """The Gamma posterior of a precision from normal draws: the Normal-Gamma update.

    Model: `alpha ~ Gamma(a0, b0)` (shape, rate), `z_m | alpha ~ N(loc, 1 / alpha)` i.i.d.
    along `axis`. The posterior is `Gamma(a0 + M / 2, b0 + sum_m (z_m - loc)^2 / 2)`, with M
    the size of `axis`; every other axis of `z` is a separate precision (one per latent
    axis in an ARD prior). `a0 = b0 = 0` is the non-informative (improper) prior.

    If `z` are draws from a variational posterior q(z) rather than observations, this is a
    one-sample Monte Carlo estimate of the coordinate-ascent (CAVI) update
    `b = b0 + E_q[sum (z - loc)^2] / 2`; pass the expectation instead for the exact CAVI
    step: `b0 + sum(E_q[(z - loc)^2]) / 2` is `gamma_precision_posterior` applied to
    `sqrt(E_q[(z - loc)^2])`.

    Returns:
        `(a, b)`: concentration and rate arrays with `axis` removed (a is broadcast to b's
        shape). The posterior mean of the precision is `a / b`, of the variance
        `1 / alpha` is `b / (a - 1)` (for a > 1); `b / a` is the point estimate of the
        variance used by ARD-VAE.

    Example:
        >>> z = jnp.array([[1.0, 0.1], [-1.0, -0.1]])
        >>> a, b = gamma_precision_posterior(z)     # a = [1, 1], b = [1, 0.01]
    """
    z = jnp.asarray(z)
    m = z.shape[axis]
    b = b0 + 0.5 * jnp.sum((z - loc) ** 2, axis=axis)
    a = jnp.broadcast_to(jnp.asarray(a0 + 0.5 * m, dtype=b.dtype), b.shape)
    return a, b


def normal_gamma_marginal(a, b, loc=0.0):
    """The marginal of `z ~ N(loc, 1 / alpha)` with `alpha ~ Gamma(a, b)` integrated out:
    a Student-t with `2a` degrees of freedom, location `loc` and scale `sqrt(b / a)`.

    Used as a prior over z once the precision's (posterior) Gamma is known, e.g. the
    Student-t variant of ARD-VAE: `normal_gamma_marginal(a, b) @ "z"`.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    return student_t(2.0 * a, loc, jnp.sqrt(b / a))


# -- alternating closed-form updates with gradient steps -----------------------------------


class ConjugateState(NamedTuple):
    inner: Any        # the wrapped optimizer's state (over params only)
    count: jax.Array  # gradient steps taken so far (int32)


def _with_closed_form(optimizer, update, every, key, static):
    """An optax transformation over `{"params", "state"}`: `optimizer` on params; every
    `every` steps, `state <- update(key_k, params_after_step, state)` (as an additive update,
    so it is exact to floating-point rounding)."""

    def init(p_dyn):
        return ConjugateState(optimizer.init(p_dyn["params"]), jnp.zeros((), jnp.int32))

    def update_fn(grads, opt_state, p_dyn=None):
        if p_dyn is None:
            raise ValueError("fit_conjugate's optimizer needs the params (fit passes them).")
        u_params, inner = optimizer.update(grads["params"], opt_state.inner, p_dyn["params"])
        count = opt_state.count + 1
        stepped = optax.apply_updates(p_dyn["params"], u_params)
        full = eqx.combine({"params": stepped, "state": p_dyn["state"]}, static)
        old_state = full["state"]
        do = (count % every) == 0
        k = jax.random.fold_in(key, count // every)
        new_state = jax.lax.cond(
            do,
            lambda: jax.tree.map(
                lambda n, o: jnp.asarray(n, jnp.result_type(o)),
                update(k, full["params"], old_state), old_state,
            ),
            lambda: old_state,
        )
        new_dyn = eqx.filter(new_state, eqx.is_inexact_array)
        u_state = jax.tree.map(lambda n, o: n - o, new_dyn, p_dyn["state"])
        return {"params": u_params, "state": u_state}, ConjugateState(inner, count)

    return optax.GradientTransformation(init, update_fn)


def fit_conjugate(
    objective: Callable[..., Any],
    params: Any,
    state: Any,
    optimizer: optax.GradientTransformation,
    update: Callable[[jax.Array, Any, Any], Any],
    *,
    every: int,
    steps: int,
    key: jax.Array,
    update_first: bool = False,
    **fit_kwargs,
) -> tuple[Any, Any, dict]:
    """`gv.fit` on `params`, alternated with a closed-form update of `state`.

    Gradient steps maximize `objective(key, params, state)` (or
    `objective(key, params, state, batch)` with `data=`) over `params`, with `state` held
    constant (its gradient is stopped). After every `every` steps,
    `state = update(update_key, params, state)`: a pure JAX function returning a pytree of
    the same structure, shapes and dtypes, e.g. a conjugate coordinate-ascent step computed
    from the current params (a Gamma posterior from encoded data, say). It runs compiled,
    inside `fit`'s scan; the optimizer's own state (moments) is not reset by it.

    Args:
        objective: the function to maximize, as for `gv.fit`, with `state` as its third
            argument.
        params: the pytree trained by `optimizer` (float array leaves are trained).
        state: the pytree set by `update`; its leaves must be float arrays.
        optimizer: an optax optimizer for `params` (it never sees `state`).
        update: `update(key, params, state) -> state`, a closed-form update.
        every: gradient steps between updates (e.g. the steps of one epoch).
        steps, key: as for `gv.fit`.
        update_first: also apply `update` once before the first gradient step.
        **fit_kwargs: passed to `gv.fit` (`num_samples`, `data`, `batch_size`,
            `chunk_size`, `callback`, `checkpoint_dir`, `progress`, ...). A callback
            receives `{"params": ..., "state": ...}` as its params.

    Returns:
        `(params, state, history)`, `history` as returned by `gv.fit`.

    Example (x_i ~ N(mu, 1/tau), flat prior on mu, tau ~ Gamma(1, 1): q(mu) = N(m, v) by
    gradients, q(tau) = Gamma(a, b) by its exact coordinate-ascent step every 10 steps):
        >>> x = jnp.array([1.3, 2.9, 0.4, 2.2, 1.7])
        >>> def objective(key, q, st):      # the ELBO's q(mu) terms, given q(tau)
        ...     v = jnp.exp(2 * q["log_sd"])
        ...     return -0.5 * st["a"] / st["b"] * jnp.sum((x - q["m"]) ** 2 + v) + q["log_sd"]
        >>> def update(key, q, st):         # E_q[(x - mu)^2] = (x - m)^2 + v
        ...     e_sq = (x - q["m"]) ** 2 + jnp.exp(2 * q["log_sd"])
        ...     a, b = gamma_precision_posterior(jnp.sqrt(e_sq), 1.0, 1.0)
        ...     return {"a": a, "b": b}
        >>> q, st, history = fit_conjugate(
        ...     objective, {"m": 0.0, "log_sd": 0.0}, {"a": 1.0, "b": 1.0}, optax.adam(0.05),
        ...     update, every=10, steps=1000, key=jax.random.key(0), progress=False)
        >>> bool(abs(q["m"] - x.mean()) < 1e-3)
        True
    """
    if not callable(update):
        raise TypeError(
            f"fit_conjugate: `update` must be a function update(key, params, state) -> state, "
            f"got {type(update).__name__}."
        )
    if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
        raise ValueError(f"fit_conjugate: `every` must be a positive int, got {every!r}.")
    state = jax.tree.map(jnp.asarray, state)
    bad = [jax.tree_util.keystr(p) or "<root>"
           for p, x in jax.tree_util.tree_flatten_with_path(state)[0]
           if not jnp.issubdtype(x.dtype, jnp.inexact)]
    if bad:
        raise TypeError(
            "fit_conjugate: every leaf of `state` must be a float array (the closed-form "
            f"update writes them), but {', '.join(bad)} is not. Fix: convert with "
            "jnp.asarray(..., jnp.float32), or hold integer settings in a closure."
        )
    k_fit, k_upd, k_first = jax.random.split(key, 3)
    if update_first:
        new = update(k_first, params, state)
        state = jax.tree.map(lambda n, o: jnp.asarray(n, o.dtype), new, state)

    packed = {"params": params, "state": state}
    _, static = eqx.partition(packed, eqx.is_inexact_array)
    wrapped = _with_closed_form(optimizer, update, every, k_upd, static)

    if fit_kwargs.get("data") is None:
        def packed_objective(k, p):
            return objective(k, p["params"], sg(p["state"]))
    else:
        def packed_objective(k, p, batch):
            return objective(k, p["params"], sg(p["state"]), batch)

    cb = fit_kwargs.pop("callback", None)
    out, history = fit(packed_objective, packed, wrapped, steps=steps, key=k_fit,
                       callback=cb, **fit_kwargs)
    return out["params"], out["state"], history
