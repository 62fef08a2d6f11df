"""The ADEV interpreter: continuation-passing, forward-mode evaluation of a staged program.

A value in the environment is a pair (primal, tangent) where tangent None is a symbolic
zero. Deterministic equations are pushed through `jax.jvp`; a `sample` equation hands its
distribution (primal and tangent) to the site's estimator. Continuation-free estimators
return a local contribution (a tangent for the sample and a score term, summed into an
accumulator); `enum` and `mvd` receive the rest of the program as two continuations, pure
and dual. The accumulator (S = sum of score tangents, B = sum of baseline * score
tangent, C = added costs) is closed at the end of the program:
    result = r + C,   tangent = r_dot + C_dot + (r + C) * S - B,
which is the REINFORCE rule applied at every score site (Lew et al., POPL 2023).
"""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
from jax._src import core as jcore

from genvi.adev._jvp import jvp_flat, zeros_tangent
from genvi.adev._primitive import add_cost_p, batched, sample_p, site_of
from genvi.adev.estimators import _site

_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint")
_DETERMINISTIC = ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")
_EFFECTS = (sample_p, add_cost_p)
# Keyed by the jaxpr object itself (weakly): an id() key can be reused by a new jaxpr once
# the old one is garbage collected, which returned a stale answer.
_effect_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for j in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(j, jcore.ClosedJaxpr):
                yield j.jaxpr
            elif isinstance(j, jcore.Jaxpr):
                yield j


def has_effects(jaxpr) -> bool:
    """Does `jaxpr` (or a sub-jaxpr, custom-derivative calls excluded) sample or add cost?"""
    key = jaxpr
    if key not in _effect_cache:
        found = False
        for eqn in jaxpr.eqns:
            if eqn.primitive in _EFFECTS:
                found = True
            elif eqn.primitive.name not in _DETERMINISTIC:
                found = any(has_effects(j) for j in _sub_jaxprs(eqn))
            if found:
                break
        _effect_cache[key] = found
    return _effect_cache[key]


# accumulators: (S, B, C, C_dot), each a scalar or None ----------------------------------
ZERO = (None, None, None, None)


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def acc_add(x, y):
    return tuple(_add(a, b) for a, b in zip(x, y, strict=True))


def acc_full(acc, dual):
    z = jnp.zeros((), jnp.result_type(float))
    full = tuple(z if a is None else jnp.asarray(a, z.dtype) for a in acc)
    return full if dual else (None, None, full[2], None)


def finalize(r, r_dot, acc, dual):
    s, b, c, c_dot = acc
    if c is not None:
        r = r + c
        r_dot = _add(r_dot, c_dot)
    if not dual:
        return r, None
    if s is not None:
        r_dot = _add(r_dot, r * s)
    if b is not None:
        r_dot = _add(r_dot, -b)
    if r_dot is None:
        r_dot = jnp.zeros_like(r)
    return r, r_dot


class _Interp:
    """One interpretation: `dual` says whether tangents are propagated; `construct` names
    the enclosing `cond`/`scan` where continuations are not available (None at top)."""

    def __init__(self, dual: bool, construct: str | None = None):
        self.dual, self.construct = dual, construct

    def with_construct(self, construct):
        return _Interp(self.dual, construct)

    # ---------------------------------------------------------------------------------
    # A continuation is `k(interp, env, acc)`: the same rest of the program can be run by
    # the dual interpreter or, for the pure continuation of `enum`/`mvd`, the primal one.
    def run(self, eqns, i, env, acc, k):
        # `env` is owned by this call and updated in place (copying it per equation made
        # staging quadratic); every entry point passes a fresh dict, and a continuation
        # copies it before running the rest of the program.
        read = lambda v: (v.val, None) if isinstance(v, jcore.Literal) else env[v]
        while i < len(eqns):
            eqn = eqns[i]
            prim = eqn.primitive
            ins = [read(v) for v in eqn.invars]
            rest = lambda it, e, a, i=i: it.run(eqns, i + 1, e, a, k)
            if prim is sample_p:
                site = self._sample(eqn, ins, env, acc, rest)
                if site[0] == "done":
                    return site[1]
                _, (x, x_dot), dacc = site
                env[eqn.outvars[0]] = (x, x_dot)
                acc = acc_add(acc, dacc)
            elif prim is add_cost_p:
                c, c_dot = ins[0]
                acc = acc_add(acc, (None, None, c, c_dot if self.dual else None))
                env[eqn.outvars[0]] = (jnp.zeros((), jnp.result_type(float)), None)
            elif prim.name in _DETERMINISTIC or not any(has_effects(j) for j in _sub_jaxprs(eqn)):
                env.update(self._deterministic(eqn, ins))
            elif prim.name in _CALLS:
                return self._inline(eqn, ins, env, acc, rest)
            elif prim.name == "cond":
                outs, dacc = self._cond(eqn, ins)
                env.update(zip(eqn.outvars, outs, strict=True))
                acc = acc_add(acc, dacc)
            elif prim.name == "scan":
                outs, dacc = self._scan(eqn, ins)
                env.update(zip(eqn.outvars, outs, strict=True))
                acc = acc_add(acc, dacc)
            else:
                found = [s for j in _sub_jaxprs(eqn) for s in _sites_in(j)]
                sites = ", ".join(dict.fromkeys(found))
                raise NotImplementedError(
                    f"random choices inside `{prim.name}` are not supported in expectation "
                    f"programs (sites {sites or '(none found)'} are sampled inside it). "
                    "Sampling works at top level and inside jax.lax.cond/switch, "
                    "jax.lax.scan, jax.vmap and nested jit; a while_loop has no fixed "
                    "number of sites: use jax.lax.scan with a fixed length (or jax.lax.cond "
                    "inside it to skip finished iterations)."
                )
            i += 1
        return k(self, env, acc)

    # ---------------------------------------------------------------------------------
    def _deterministic(self, eqn, ins):
        prim = eqn.primitive
        params = prim.get_bind_params(eqn.params)
        f = lambda *xs: prim.bind(*xs, **params)
        primals = [p for p, _ in ins]
        if self.dual:
            out, out_dot = jvp_flat(f, primals, [t for _, t in ins])
        else:
            out, out_dot = f(*primals), None
        if not prim.multiple_results:
            return {eqn.outvars[0]: (out, out_dot)}
        out_dot = [None] * len(out) if out_dot is None else out_dot
        return {v: (o, t) for v, o, t in zip(eqn.outvars, out, out_dot, strict=True)}

    def _inline(self, eqn, ins, env, acc, k_outer):
        closed = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
        if isinstance(closed, jcore.ClosedJaxpr):
            jaxpr, consts = closed.jaxpr, closed.consts
        else:
            jaxpr, consts = closed, ()
        sub_env = {v: (c, None) for v, c in zip(jaxpr.constvars, consts, strict=True)}
        sub_env.update(zip(jaxpr.invars, ins, strict=True))

        def k_sub(it, env2, acc2):
            outs = [_read(env2, v) for v in jaxpr.outvars]
            return k_outer(it, {**_strip(env, it), **dict(zip(eqn.outvars, outs, strict=True))}, acc2)

        return self.run(jaxpr.eqns, 0, sub_env, acc, k_sub)

    def _local_body(self, closed, construct):
        """A function (primals, tangents) -> (out primals, out tangents, acc) for a branch or
        loop body, interpreted without continuations; tangents are materialized."""
        interp = self.with_construct(construct)
        jaxpr, consts = closed.jaxpr, closed.consts

        def body(ps, ts):
            env = {v: (c, None) for v, c in zip(jaxpr.constvars, consts, strict=True)}
            env.update(zip(jaxpr.invars, zip(ps, ts, strict=True), strict=True))
            k = lambda it, env2, acc2: ([_read(env2, v) for v in jaxpr.outvars], acc2)
            outs, acc = interp.run(jaxpr.eqns, 0, env, ZERO, k)
            out_p = [p for p, _ in outs]
            out_t = [_mat(p, t) if self.dual else None for p, t in outs]
            return out_p, out_t, acc_full(acc, self.dual)

        return body

    def _materialize(self, ins):
        ps = [p for p, _ in ins]
        ts = [_mat(p, t) if self.dual else None for p, t in ins]
        return ps, ts

    def _cond(self, eqn, ins):
        index = ins[0][0]
        ps, ts = self._materialize(ins[1:])
        fns = [self._local_body(b, "jax.lax.cond/switch") for b in eqn.params["branches"]]
        out_p, out_t, acc = jax.lax.switch(index, fns, ps, ts)
        return list(zip(out_p, out_t, strict=True)), acc

    def _scan(self, eqn, ins):
        p = eqn.params
        nc, ncarry = p["num_consts"], p["num_carry"]
        ps, ts = self._materialize(ins)
        consts = (ps[:nc], ts[:nc])
        body_fn = self._local_body(p["jaxpr"], "jax.lax.scan")

        def body(carry, xs):
            cp, ct, acc = carry
            xp, xt = xs
            op, ot, dacc = body_fn(consts[0] + cp + xp, consts[1] + ct + xt)
            acc = tuple(None if a is None else a + d for a, d in zip(acc, dacc, strict=True))
            return (op[:ncarry], ot[:ncarry], acc), (op[ncarry:], ot[ncarry:])

        init = (ps[nc : nc + ncarry], ts[nc : nc + ncarry], acc_full(ZERO, self.dual))
        (cp, ct, acc), (yp, yt) = jax.lax.scan(
            body, init, (ps[nc + ncarry :], ts[nc + ncarry :]),
            length=p["length"], reverse=p["reverse"], unroll=p["unroll"],
        )
        return list(zip(cp + yp, ct + yt, strict=True)), acc

    # ---------------------------------------------------------------------------------
    def _sample(self, eqn, ins, env, acc, rest):
        params = eqn.params
        (key, _), *ops = ins
        _, dist, est = site_of(params, [key] + [p for p, _ in ops])
        nb = params["batch_ndims"]
        addr = params["addr"]
        if est.needs_continuation and self.construct is not None:
            # Raised with or without tangents, so that calling a program and differentiating
            # it never disagree about what the site means.
            raise ValueError(
                f"gv.adev.{est.name} at {_site(addr)} needs the rest of the program as a "
                f"continuation, which is not available inside {self.construct}.\nFix: use a "
                "continuation-free estimator there (gv.adev.reparam, gv.adev.reinforce, "
                "gv.adev.baseline(gv.adev.reinforce, b)), or move the site out of the "
                "construct (e.g. unroll a short scan with a Python loop)."
            )
        out = eqn.outvars[0]
        if not self.dual:
            if est.needs_continuation and nb == 0:
                kp = lambda x: rest(self, {**env, out: (x, None)}, acc)[0]
                return "done", (est.pure(key, dist, kp), None)
            return "local", (batched(lambda kk, d: d.sample(kk), nb)(key, dist), None), ZERO
        dist_dot = jax.tree.unflatten(params["dist_def"], [t for _, t in ops[: params["n_dist"]]])
        if not est.needs_continuation:
            x, x_dot, s, b = batched(est.local, nb)(key, dist, dist_dot)
            s = None if s is None else jnp.sum(s)
            b = None if b is None else jnp.sum(b)
            return "local", (x, x_dot), (s, b, None, None)
        pure = _Interp(False, None)
        penv = _strip(env, pure)
        pacc = (None, None, acc[2], None)

        def kdual(x, x_dot):
            return rest(self, {**env, out: (x, x_dot)}, acc)

        def kpure(x):
            return rest(pure, {**penv, out: (x, None)}, pacc)[0]

        if nb == 0:
            return "done", est.cps(key, dist, dist_dot, kpure, kdual)
        return "done", self._batched_cps(est, key, dist, dist_dot, nb, kpure, kdual)

    def _batched_cps(self, est, key, dist, dist_dot, nb, kpure, kdual):
        """Each vmap lane enumerated/differentiated on its own, other lanes held fixed:
        tangent = r_dot(x) + sum over lanes l of the lane-l estimate with kpure."""
        x = batched(lambda kk, d: d.sample(kk), nb)(key, dist)
        r, r_dot = kdual(x, None)
        lane_shape = x.shape[:nb]
        n = 1
        for s in lane_shape:
            n *= s
        flat = lambda t: None if t is None else t.reshape((n,) + t.shape[nb:])
        keys = jax.random.split(jax.random.fold_in(flat(key)[0], 1), n)
        dist_l = jax.tree.map(flat, dist)
        dist_dot_l = jax.tree.map(flat, dist_dot)
        x_flat = flat(x)

        def lane(j, k_j, d_j, dd_j):
            kp = lambda v: kpure(x_flat.at[j].set(v).reshape(x.shape))
            kd = lambda v, _: (kp(v), jnp.zeros((), jnp.result_type(float)))
            return est.cps(k_j, d_j, dd_j, kp, kd)[1]

        ts = jax.vmap(lane)(jnp.arange(n), keys, dist_l, dist_dot_l)
        return r, r_dot + jnp.sum(ts)


def _sites_in(jaxpr) -> list[str]:
    """The sites (sample equations) anywhere inside `jaxpr`, for error messages."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive is sample_p:
            found.append(_site(eqn.params["addr"]))
        else:
            for j in _sub_jaxprs(eqn):
                found += _sites_in(j)
    return found


def _read(env, v):
    return (v.val, None) if isinstance(v, jcore.Literal) else env[v]


def _mat(p, t):
    return t if t is not None else zeros_tangent(p)


def _strip(env, interp):
    """Drop tangents when the rest of the program is run by a primal interpreter."""
    if interp.dual:
        return env
    return {v: (p, None) for v, (p, _) in env.items()}


def run_expectation(closed, args, tangents=None):
    """Interpret a staged expectation program; returns (value, tangent or None)."""
    dual = tangents is not None
    jaxpr = closed.jaxpr
    env = {v: (c, None) for v, c in zip(jaxpr.constvars, closed.consts, strict=True)}
    ts = tangents if dual else [None] * len(args)
    env.update(zip(jaxpr.invars, zip(args, ts, strict=True), strict=True))

    def k_end(it, env2, acc):
        (r, r_dot), = [_read(env2, v) for v in jaxpr.outvars]
        return finalize(r, r_dot if it.dual else None, acc, it.dual)

    return _Interp(dual).run(jaxpr.eqns, 0, env, ZERO, k_end)
