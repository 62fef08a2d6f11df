"""Variational objectives, each a short expectation program (all are maximized).

Every objective is built from a model and a guide (generative functions) and returns an
`Expectation` called as `objective(key, data, model_args, guide_args)`, where `data` is a
choice map of the model's observed addresses.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi import _effects
from genvi.adev import expectation
from genvi.vi.kl import kl_divergence

sg = jax.lax.stop_gradient


def _scale_fn(scales: Mapping | None):
    if not scales:
        return None
    table = {(k if isinstance(k, tuple) else (k,)): v for k, v in scales.items()}

    def fn(addr):
        for a, f in table.items():
            if addr[: len(a)] == a:
                return f
        return None

    return fn


def _scaled(scales):
    fn = _scale_fn(scales)
    return _effects.scales(fn) if fn is not None else contextlib.nullcontext()


def _log_weight(key, model, guide, data, model_args, guide_args):
    """log p(x, z) - log q(z) for one z ~ q (the guide's score may be an estimate)."""
    tr = guide.simulate(key, guide_args)
    logp, _ = model.assess(tr.choices | data, model_args)
    return logp - tr.score


def _log_weights(key, n, model, guide, data, model_args, guide_args):
    keys = jax.random.split(key, n)
    return jax.vmap(lambda k: _log_weight(k, model, guide, data, model_args, guide_args))(keys)


def _analytic_kl_correction(q_sites, p_sites):
    """sum over latent sites with a closed form of  -s KL(q||p) - s (log p(z) - log q(z)).

    `s` is the objective's `scales=` factor at the site (1 without one). The correction has
    expectation zero under q for any `s`; where the site's log densities carry exactly the
    factor `s` (the usual case, `scales={"z": beta}`), it replaces the site's Monte Carlo
    term `s (log p(z) - log q(z))` by `-s KL(q||p)`. A further factor from `gv.scale` inside
    the model or guide is left to its (unbiased) Monte Carlo term.
    """
    p_by_addr = {a: (d, z) for a, d, z, _ in p_sites}
    scale_of = _effects._scale_fn.get()
    total = 0.0
    for a, qd, z, _ in q_sites:
        if a not in p_by_addr:
            continue
        pd, zp = p_by_addr[a]
        kl = kl_divergence(qd, pd)
        if kl is not None:
            s = None if scale_of is None else scale_of(a)
            s = 1.0 if s is None else s
            total = total - s * (kl + pd.logpdf(zp) - qd.logpdf(z))
    return total


def elbo(model, guide, *, estimators=None, scales=None, analytic_kl=False,
         stick_the_landing=False):
    """The evidence lower bound E_q[log p(x, z) - log q(z)] (maximized).

    Args:
        model: the generative function of the latents and the observed addresses.
        guide: a generative function proposing the model's latent addresses.
        estimators: per-address estimator overrides, e.g. `{"z": gv.adev.reinforce}`.
        scales: per-address factors on log-density terms of model and guide, e.g.
            `{"z": beta}` for a beta-ELBO (KL weight) or `{"obs": N / B}` for minibatches.
        analytic_kl: replace log p(z) - log q(z) by -KL(q||p) in closed form at sites where
            both distributions have one (normal, diagonal normal).
        stick_the_landing: evaluate log q with stopped guide parameters, dropping the score
            term whose expectation is zero (Roeder, Wu, Duvenaud, 2017).

    Example:
        >>> objective = gv.vi.elbo(model, guide)
        >>> value = objective(key, data, (), (data, phi))
    """

    @expectation(estimators=estimators)
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            records_q, records_p = [], []
            with _effects.recording(records_q if analytic_kl else None):
                tr = guide.simulate(key, guide_args)
            logq = tr.score
            if stick_the_landing:
                logq, _ = guide.assess(tr.choices, sg(guide_args))
            with _effects.recording(records_p if analytic_kl else None):
                logp, _ = model.assess(tr.choices | data, model_args)
            out = logp - logq
            if analytic_kl:
                out = out + _analytic_kl_correction(records_q, records_p)
            return out

    objective.__name__ = "elbo"
    return objective


def iwelbo(model, guide, n: int = 5, *, estimators=None, scales=None, dreg=False):
    """The importance-weighted bound log (1/n) sum_k p(x, z_k)/q(z_k) (Burda et al., 2016).

    With `dreg=True` the guide's gradient is the doubly reparameterized estimator (Tucker
    et al., 2019): sum_k w~_k^2 d/dphi log w_k with q's parameters stopped in its density;
    the model's gradient is unchanged. Requires a reparameterizable guide.
    """
    _check_n(n, "iwelbo")

    @expectation(estimators=estimators)
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            if not dreg:
                lw = _log_weights(key, n, model, guide, data, model_args, guide_args)
                return logsumexp(lw) - math.log(n)
            keys = jax.random.split(key, n)

            def one(k):
                tr = guide.simulate(k, guide_args)
                logq, _ = guide.assess(tr.choices, sg(guide_args))
                logp, _ = model.assess(tr.choices | data, model_args)
                logp_model_only, _ = model.assess(sg(tr.choices) | data, model_args)
                return logp - logq, logp_model_only

            lw, lp_theta = jax.vmap(one)(keys)
            value = logsumexp(sg(lw)) - math.log(n)
            wt = jax.nn.softmax(sg(lw))
            surrogate = jnp.sum(wt**2 * lw) + jnp.sum((wt - wt**2) * lp_theta)
            return value + surrogate - sg(surrogate)

    objective.__name__ = "iwelbo"
    return objective


def renyi(model, guide, alpha: float = 0.0, n: int = 5, *, estimators=None, scales=None):
    """The variational Rényi bound (1/(1-alpha)) log (1/n) sum_k w_k^(1-alpha)
    (Li & Turner, 2016). alpha = 0 is the IWELBO; alpha -> 1 the ELBO."""
    _check_n(n, "renyi")
    if alpha == 1.0:
        raise ValueError("renyi: alpha = 1 is the ELBO; use gv.vi.elbo(model, guide).")

    @expectation(estimators=estimators)
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            lw = _log_weights(key, n, model, guide, data, model_args, guide_args)
            return (logsumexp((1.0 - alpha) * lw) - math.log(n)) / (1.0 - alpha)

    objective.__name__ = "renyi"
    return objective


def _particles(key, n, model, guide, data, model_args, guide_args, diff_q, diff_p):
    """n guide samples drawn with stopped guide parameters (no ADEV terms), with log q and
    log p differentiable only where asked."""
    keys = jax.random.split(key, n)

    def one(k):
        tr = guide.simulate(k, sg(guide_args))
        ch = sg(tr.choices)
        logq, _ = guide.assess(ch, guide_args if diff_q else sg(guide_args))
        logp, _ = model.assess(ch | data, model_args if diff_p else sg(model_args))
        return logq, logp

    return jax.vmap(one)(keys)


def vimco(model, guide, n: int = 5, *, scales=None):
    """IWELBO with the VIMCO gradient for discrete guides (Mnih & Rezende, 2016):
    REINFORCE on each particle with the leave-one-out baseline
    L_-k = log((sum_{j!=k} w_j + exp(mean_{j!=k} log w_j)) / n)."""
    _check_n(n, "vimco", minimum=2)

    @expectation
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            logq, logp = _particles(key, n, model, guide, data, model_args, guide_args, True, True)
            lw = logp - logq
            value = logsumexp(lw) - math.log(n)
            slw = sg(lw)
            others_mean = (jnp.sum(slw) - slw) / (n - 1)
            loo = jnp.where(jnp.eye(n, dtype=bool), others_mean[None, :], slw[:, None])
            l_minus = logsumexp(loo, axis=0) - math.log(n)
            surrogate = jnp.sum(sg(value - l_minus) * logq)
            return value + surrogate - sg(surrogate)

    objective.__name__ = "vimco"
    return objective


def q_wake(model, guide, n: int = 5, *, scales=None):
    """Reweighted wake-sleep, wake phase for the guide (Bornschein & Bengio, 2015):
    sum_k w~_k log q(z_k) with self-normalized weights, whose gradient estimates
    -grad KL(p(z|x) || q(z)). Only the guide's parameters receive a gradient."""
    _check_n(n, "q_wake")

    @expectation
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            logq, logp = _particles(key, n, model, guide, data, model_args, guide_args, True, False)
            wt = jax.nn.softmax(sg(logp - logq))
            return jnp.sum(wt * logq)

    objective.__name__ = "q_wake"
    return objective


def p_wake(model, guide, n: int = 5, *, scales=None):
    """Reweighted wake-sleep, wake phase for the model: the IWELBO value with gradient
    sum_k w~_k grad log p(x, z_k) for the model's parameters only."""
    _check_n(n, "p_wake")

    @expectation
    def objective(key, data, model_args, guide_args):
        with _scaled(scales):
            logq, logp = _particles(key, n, model, guide, data, model_args, guide_args, False, True)
            return logsumexp(logp - logq) - math.log(n)

    objective.__name__ = "p_wake"
    return objective


def _check_n(n, who, minimum=1):
    if not isinstance(n, int) or n < minimum:
        raise ValueError(f"{who}: n must be an int >= {minimum} (number of particles), got {n!r}")
