"""Programmable variational families: marginals by auxiliary inference, normalized models.

`marginal(family, selection, sir(m))` is a generative function over the selected addresses
of `family`; its density is estimated by importance sampling over the other (auxiliary)
choices, as in "Recursive Monte Carlo and variational inference with auxiliary variables"
(Lew, Cusumano-Towner, Mansinghka, UAI 2022): simulating draws the whole family and
returns the selected choices with an estimate whose reciprocal is unbiased for 1/q(x).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi import _effects
from genvi.core import ChoiceMap, GenerativeFunction, Selection, Trace


class SIR:
    """Sampling importance resampling with m particles and an optional proposal.

    The proposal is a generative function called with args `(selected_choices, *family_args)`
    that proposes the auxiliary choices; by default the family itself is run forwards with
    the selected choices constrained (its own conditional distribution of the rest).
    """

    def __init__(self, m: int = 1, proposal: GenerativeFunction | None = None):
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"sir: m must be an int >= 1, got {m!r}")
        self.m, self.proposal = m, proposal


def sir(m: int = 1, proposal: GenerativeFunction | None = None) -> SIR:
    """`m`-particle importance sampling over auxiliary choices (see `marginal`)."""
    return SIR(m, proposal)


def _projection(family, choices, args, selection: Selection):
    """Sum of the log densities of the selected sites of `family` at `choices`."""
    with _effects.scales(lambda a: 1.0 if selection.contains(a) else 0.0):
        lp, _ = family.assess(choices, args)
    return lp


class Marginal(GenerativeFunction):
    """The marginal of `family` over `selection`, with an estimated density."""

    def __init__(self, family: GenerativeFunction, selection: Selection, algorithm: SIR):
        if not isinstance(family, GenerativeFunction):
            raise TypeError("marginal: `family` must be a generative function (@gv.gen)")
        if not isinstance(selection, Selection):
            raise TypeError("marginal: `selection` must be gv.select(...)")
        self.family, self.selection, self.algorithm = family, selection, algorithm
        self.name = f"marginal({family.name})"

    def _aux_weight(self, key, x: ChoiceMap, args):
        """log q(x, u) - log r(u | x) for u ~ r(. | x)."""
        prop = self.algorithm.proposal
        if prop is None:
            _, w = self.family.generate(key, x, args)
            return w
        tr_u = prop.simulate(key, (x, *args))
        lp, _ = self.family.assess(x | tr_u.choices, args)
        return lp - tr_u.score

    def _weight_of(self, full: ChoiceMap, x: ChoiceMap, args):
        """The same weight for the auxiliary choices actually drawn with x."""
        prop = self.algorithm.proposal
        if prop is None:
            return _projection(self.family, full, args, self.selection)
        u = full.filter(~self.selection)
        lp, _ = self.family.assess(full, args)
        lr, _ = prop.assess(u, (x, *args))
        return lp - lr

    def simulate(self, key, args: tuple) -> Trace:
        """Draw the whole family; return the selected choices and log q-hat(x)."""
        k1, k2 = jax.random.split(key)
        tr = self.family.simulate(k1, args)
        x = tr.choices.filter(self.selection)
        lw = [jnp.reshape(self._weight_of(tr.choices, x, args), (1,))]
        m = self.algorithm.m
        if m > 1:
            keys = jax.random.split(k2, m - 1)
            lw.append(jax.vmap(lambda k: self._aux_weight(k, x, args))(keys))
        log_q = logsumexp(jnp.concatenate(lw)) - math.log(m)
        return Trace(x, log_q, tr.retval, args)

    def estimate_logpdf(self, key, choices: ChoiceMap, args: tuple):
        """An unbiased estimate of q(x) (on the log scale) with all m auxiliaries proposed."""
        keys = jax.random.split(key, self.algorithm.m)
        lw = jax.vmap(lambda k: self._aux_weight(k, choices, args))(keys)
        return logsumexp(lw) - math.log(self.algorithm.m)

    def assess(self, choices, args):
        raise TypeError(
            f"{self.name} has no exact density, so `assess` is undefined. Fix: use "
            "`marginal.estimate_logpdf(key, choices, args)` for an unbiased density estimate."
        )

    def generate(self, key, constraints, args):
        k1, k2 = jax.random.split(key)
        x = constraints.filter(self.selection)
        lq = self.estimate_logpdf(k1, x, args) if not x.is_empty() else 0.0
        if x.is_empty():
            tr = self.simulate(k2, args)
            return tr, jnp.zeros(())
        return Trace(x, lq, None, args), lq


def marginal(family: GenerativeFunction, selection: Selection, algorithm: SIR | None = None):
    """A family over the `selection` of `family`, auxiliary choices marginalized by
    `algorithm` (default `sir(1)`). In `elbo` this gives HVI (m = 1) and IWHVI (m > 1);
    in `iwelbo(n)` it gives DIWHVI.

    Example:
        >>> q = gv.vi.marginal(guide, gv.select("x", "y"), gv.vi.sir(5))
        >>> objective = gv.vi.elbo(model, q)
    """
    return Marginal(family, selection, algorithm or SIR(1))


class Normalized(GenerativeFunction):
    """The posterior of `model` given data, approximated by SIR with a proposal.

    Args of simulate: `(data, model_args, proposal_args)`. The trace holds the latent
    choices of one particle resampled by its importance weight; its score is
    log p(x, z) - log Z-hat.
    """

    def __init__(self, model: GenerativeFunction, algorithm: SIR):
        self.model, self.algorithm = model, algorithm
        self.name = f"normalize({model.name})"

    def simulate(self, key, args):
        data, model_args, proposal_args = args
        k1, k2 = jax.random.split(key)
        keys = jax.random.split(k1, self.algorithm.m)
        prop = self.algorithm.proposal

        def particle(k):
            if prop is None:
                tr, w = self.model.generate(k, data, model_args)
                return tr.choices.filter(~_selection_of(data)), w, tr.score
            tr = prop.simulate(k, proposal_args)
            lp, _ = self.model.assess(tr.choices | data, model_args)
            return tr.choices, lp - tr.score, lp

        ch, lw, lp = jax.vmap(particle)(keys)
        lw, lp = jax.lax.stop_gradient(lw), jax.lax.stop_gradient(lp)
        j = jax.random.categorical(k2, lw)
        z = jax.tree.map(lambda v: jax.lax.stop_gradient(v[j]), ch)
        log_z = logsumexp(lw) - math.log(self.algorithm.m)
        return Trace(z, lp[j] - log_z, None, args)

    def assess(self, choices, args):
        raise TypeError(f"{self.name} has no exact density; use it to draw posterior samples.")

    def generate(self, key, constraints, args):
        raise TypeError(f"{self.name} cannot be constrained; use it to draw posterior samples.")


def _selection_of(cm: ChoiceMap) -> Selection:
    return Selection(cm.addresses())


def normalize(model: GenerativeFunction, algorithm: SIR | None = None) -> Normalized:
    """The posterior of `model` approximated by `algorithm` (SIR with its proposal)."""
    return Normalized(model, algorithm or SIR(10))


def hvi(model, family, selection, **kw):
    """Hierarchical VI: `elbo(model, marginal(family, selection, sir(1)))`."""
    from genvi.vi.objectives import elbo

    return elbo(model, marginal(family, selection, sir(1)), **kw)


def iwhvi(model, family, selection, m: int = 5, **kw):
    """Importance-weighted HVI: `elbo(model, marginal(family, selection, sir(m)))`."""
    from genvi.vi.objectives import elbo

    return elbo(model, marginal(family, selection, sir(m)), **kw)


def diwhvi(model, family, selection, n: int = 5, m: int = 5, **kw):
    """Doubly importance-weighted HVI: `iwelbo(model, marginal(family, selection, sir(m)), n)`."""
    from genvi.vi.objectives import iwelbo

    return iwelbo(model, marginal(family, selection, sir(m)), n, **kw)
