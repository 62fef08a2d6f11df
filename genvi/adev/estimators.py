"""Gradient estimators: what a sample site contributes to the derivative of an expectation.

Each estimator is a tiny object with one job. Continuation-free estimators (`reparam`,
`reinforce`, `baseline`) implement `local(key, dist, dist_dot)` returning the sample, its
tangent and a score term; they work anywhere, including inside `cond`, `scan` and `vmap`.
Estimators that look at the rest of the program (`enum`, `mvd`) implement
`cps(key, dist, dist_dot, kpure, kdual)` in the continuation-passing style of ADEV (Lew et
al., POPL 2023): `kdual(x, x_dot) -> (r, r_dot)` runs the rest of the program on dual
numbers, `kpure(x) -> r` runs it on primal values only; `pure(key, dist, kpure)` is the
same site when no derivative is asked for, and must give the primal value `cps` gives (so
calling a program and `jax.value_and_grad` of it agree). Batching over `vmap` lanes is done
once, in the interpreter.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from genvi.adev._jvp import jvp_tree


class Estimator(eqx.Module):
    """Base class of gradient estimators."""

    needs_continuation: ClassVar[bool] = False
    name: ClassVar[str] = "estimator"

    def check(self, dist, addr) -> None:
        """Trace-time check that this estimator applies to `dist`."""

    def local(self, key, dist, dist_dot):
        """(x, x_dot, score_dot, baseline_dot) for a continuation-free estimator."""
        raise NotImplementedError

    def cps(self, key, dist, dist_dot, kpure, kdual):
        raise NotImplementedError

    def pure(self, key, dist, kpure):
        """The primal value of `cps` (no tangents): by default, the rest of the program at
        one sample drawn with `key`."""
        return kpure(dist.sample(key))

    def __repr__(self):
        return f"gv.adev.{self.name}"


def _site(addr) -> str:
    return repr(addr[0] if len(addr) == 1 else addr) if addr else "(unaddressed)"


class Reparam(Estimator):
    """Pathwise (reparameterization) gradient: differentiate the sampler itself.

    Applies to continuous distributions sampled by a differentiable transform of
    parameter-free noise (normal, uniform, laplace, ...) and, through implicit
    reparameterization (Figurnov et al., 2018), to gamma, beta and dirichlet.
    """

    name: ClassVar[str] = "reparam"

    def check(self, dist, addr):
        if not dist.reparameterizable:
            raise ValueError(
                f"gv.adev.reparam was requested at {_site(addr)}, but "
                f"{type(dist).__name__} is not reparameterizable"
                f"{' (it is discrete)' if dist.is_discrete else ''}.\nFix: use "
                "gv.adev.reinforce, gv.adev.baseline(gv.adev.reinforce, b), gv.adev.enum "
                "(finite support) or gv.adev.mvd."
            )

    def local(self, key, dist, dist_dot):
        x, x_dot = jvp_tree(lambda d: d.sample(key), dist, dist_dot)
        return x, x_dot, None, None


class Reinforce(Estimator):
    """Score-function (REINFORCE) gradient: r_dot + r * d/dθ log p(x; θ) at a sampled x.

    Unbiased when the support does not depend on θ; it is biased for parameters that move
    the support, such as the bounds of a uniform (use reparam there).
    """

    name: ClassVar[str] = "reinforce"

    def local(self, key, dist, dist_dot):
        x = jax.lax.stop_gradient(dist.sample(key))
        _, s_dot = jvp_tree(lambda d: d.logpdf(x), dist, dist_dot)
        return x, None, s_dot, None


class Baseline(Estimator):
    """REINFORCE with a control variate b: r_dot + (r - b) * d/dθ log p(x; θ).

    Unbiased for any b that does not depend on x (a constant, a value computed earlier in
    the program, or a learned parameter). b receives no gradient from this estimator;
    learn it with a separate loss such as (b - r)^2.
    """

    base: Any
    b: Any
    name: ClassVar[str] = "baseline"

    def __check_init__(self):
        if not isinstance(self.base, Reinforce):
            raise TypeError(
                f"gv.adev.baseline wraps gv.adev.reinforce, got {self.base!r}. Other "
                "estimators do not use a score term, so a baseline would change nothing."
            )

    def local(self, key, dist, dist_dot):
        x, _, s_dot, _ = self.base.local(key, dist, dist_dot)
        if s_dot is None:
            return x, None, None, None
        return x, None, s_dot, jax.lax.stop_gradient(self.b) * s_dot


def _enumerable(dist, addr, who):
    vals = dist.enumerate_support() if dist.has_finite_support else None
    if vals is None:
        raise ValueError(
            f"gv.adev.{who} at {_site(addr)}: {type(dist).__name__} has no finite support "
            "to enumerate.\nFix: use gv.adev.mvd or gv.adev.reinforce."
        )
    return vals


def _scalar_site(dist, addr, who):
    if tuple(dist.batch_shape) != ():
        raise ValueError(
            f"gv.adev.{who} at {_site(addr)} needs a scalar site, but {type(dist).__name__} "
            f"has batch shape {tuple(dist.batch_shape)}.\nFix: make each element its own "
            "lane with gv.vmap (or jax.vmap); lanes are handled one at a time."
        )


class Enum(Estimator):
    """Exact enumeration of a finite support: sum_v p(v) r(v) and its exact derivative."""

    needs_continuation: ClassVar[bool] = True
    name: ClassVar[str] = "enum"

    def check(self, dist, addr):
        _enumerable(dist, addr, "enum")
        _scalar_site(dist, addr, "enum")

    def cps(self, key, dist, dist_dot, kpure, kdual):
        vals = dist.enumerate_support()
        p, p_dot = jvp_tree(lambda d: jnp.exp(jax.vmap(d.log_prob)(vals)), dist, dist_dot)
        r, r_dot = jax.vmap(lambda v: kdual(v, None))(vals)
        out = jnp.sum(p * r)
        out_dot = jnp.sum(p * r_dot)
        if p_dot is not None:
            out_dot = out_dot + jnp.sum(p_dot * r)
        return out, out_dot

    def pure(self, key, dist, kpure):
        vals = dist.enumerate_support()
        p = jnp.exp(jax.vmap(dist.log_prob)(vals))
        return jnp.sum(p * jax.vmap(kpure)(vals))


def _leaf_tangent(dist_dot, name):
    return None if dist_dot is None else getattr(dist_dot, name, None)


class MVD(Estimator):
    """Measure-valued derivative: d/dθ E_p[f] = c_θ (E_{p+}[f] - E_{p-}[f]).

    Decompositions (Mohamed et al., JMLR 2020): normal (loc: ±Rayleigh; scale: double-sided
    Maxwell vs. normal), bernoulli and categorical (point masses), poisson (1 + x vs. x),
    geometric (geometric vs. 1 + negative binomial(2, p)).
    """

    needs_continuation: ClassVar[bool] = True
    name: ClassVar[str] = "mvd"
    supported: ClassVar[tuple] = ("Normal", "Bernoulli", "Categorical", "Poisson", "Geometric")

    def check(self, dist, addr):
        if type(dist).__name__ not in self.supported:
            raise ValueError(
                f"gv.adev.mvd at {_site(addr)}: no measure-valued decomposition for "
                f"{type(dist).__name__}; supported: {', '.join(self.supported)}.\nFix: use "
                "gv.adev.reparam or gv.adev.reinforce."
            )
        _scalar_site(dist, addr, "mvd")

    def cps(self, key, dist, dist_dot, kpure, kdual):
        # x is drawn with `key` itself, as `pure` draws it, so the primal value is the same
        # whether or not the program is differentiated.
        x = jax.lax.stop_gradient(dist.sample(key))
        r, r_dot = kdual(x, None)
        coef, pts = self._terms(dist, dist_dot, jax.random.fold_in(key, 1), x)
        if not coef:
            return r, r_dot
        vals = jax.vmap(kpure)(jnp.stack(pts))
        pairs = vals.reshape(len(coef), 2)
        t = sum(c * (pairs[i, 0] - pairs[i, 1]) for i, c in enumerate(coef))
        return r, (r_dot + t) if r_dot is not None else t

    def _terms(self, dist, dist_dot, key, x):
        """Lists of coefficients (tangent * c) and points [x+_1, x-_1, x+_2, ...]."""
        kind = type(dist).__name__
        coef, pts = [], []
        if kind == "Normal":
            k1, k2, k3 = jax.random.split(key, 3)
            loc, scale = dist.loc, dist.scale
            loc_dot, scale_dot = _leaf_tangent(dist_dot, "loc"), _leaf_tangent(dist_dot, "scale")
            if loc_dot is not None:
                rayleigh = jnp.sqrt(2.0 * jax.random.exponential(k1, jnp.shape(loc)))
                coef.append(loc_dot / (scale * math.sqrt(2 * math.pi)))
                pts += [loc + scale * rayleigh, loc - scale * rayleigh]
            if scale_dot is not None:
                g = jax.random.normal(k2, (3,) + jnp.shape(loc))
                sign = jnp.where(jax.random.bernoulli(k3), 1.0, -1.0)
                maxwell = sign * jnp.sqrt(jnp.sum(g**2, axis=0))
                coef.append(scale_dot / scale)
                pts += [loc + scale * maxwell, loc + scale * g[0]]
        elif kind == "Bernoulli":
            _, p_dot = jvp_tree(lambda d: d.probs, dist, dist_dot)
            if p_dot is not None:
                coef.append(p_dot)
                pts += [jnp.ones_like(x), jnp.zeros_like(x)]
        elif kind == "Categorical":
            _, p_dot = jvp_tree(lambda d: d.probs, dist, dist_dot)
            if p_dot is not None:
                # sum_k p_dot_k f(k); the p_dot_k sum to zero, so pair each k with x.
                for k in range(p_dot.shape[-1]):
                    coef.append(p_dot[k])
                    pts += [jnp.asarray(k, x.dtype), x]
        elif kind == "Poisson":
            _, rate_dot = jvp_tree(lambda d: d.rate, dist, dist_dot)
            if rate_dot is not None:
                coef.append(rate_dot)
                pts += [x + 1, x]
        elif kind == "Geometric":
            p, p_dot = jvp_tree(lambda d: d.probs, dist, dist_dot)
            if p_dot is not None:
                g1, g2 = dist.sample(key, (2,))
                coef.append(p_dot / p)
                pts += [x, 1 + g1 + g2]
        return coef, pts


reparam = Reparam()
reinforce = Reinforce()
enum = Enum()
mvd = MVD()


def baseline(est: Estimator, b) -> Baseline:
    """REINFORCE with control variate `b`: `gv.adev.baseline(gv.adev.reinforce, b)`."""
    return Baseline(est, b)


def default_for(dist) -> Estimator:
    """REPARAM where the distribution allows it, REINFORCE otherwise."""
    return reparam if dist.reparameterizable else reinforce
