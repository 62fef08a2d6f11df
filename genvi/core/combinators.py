"""Combinators: generative functions built from generative functions.

`vmap` (an IID plate), `scan` (a state-space or recurrent model), `cond`/`switch`
(stochastic branching). Addresses of the inner function are vectorized along the new axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi import _effects
from genvi.core.choice_map import ChoiceMap, _fmt
from genvi.core.gen_fn import GenerativeFunction, Trace, _check_args, _coerce_cm


def _unrecorded(method):
    """Site records hold values of the current JAX trace level; inside a combinator's
    `vmap`/`scan`/`switch` they would leak tracers, so recording is off there."""

    def wrapper(self, *a):
        with _effects.recording(None):
            return method(self, *a)

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


def _axis_size(args, in_axes, axis_size, who):
    sizes = set()
    for a, ax in zip(args, in_axes, strict=True):
        if ax is None:
            continue
        for leaf in jax.tree.leaves(a):
            sizes.add(jnp.shape(leaf)[ax])
    if axis_size is not None:
        if sizes and sizes != {axis_size}:
            raise ValueError(f"{who}: axis_size={axis_size} but mapped arguments have sizes {sizes}")
        return axis_size
    if len(sizes) != 1:
        raise ValueError(
            f"{who}: cannot tell the number of iterations (mapped argument sizes: "
            f"{sizes or 'none mapped'}). Fix: pass `axis_size=n` or map an argument."
        )
    return sizes.pop()


def _check_leading(cm: ChoiceMap, n: int, who: str):
    for a in cm.addresses():
        shape = jnp.shape(cm[a])
        if not shape or shape[0] != n:
            raise ValueError(
                f"{who}: the value at {_fmt(a)} has shape {shape}, but it is vectorized over "
                f"{n} iterations, so its leading axis must have size {n}."
            )


class Vmap(GenerativeFunction):
    """IID plate: `gv.vmap(gf, in_axes=0, axis_size=None)`."""

    def __init__(self, gen_fn, in_axes=0, axis_size=None):
        if not isinstance(gen_fn, GenerativeFunction):
            raise TypeError("gv.vmap maps a generative function (decorate it with @gv.gen)")
        self.gen_fn, self.in_axes, self.axis_size = gen_fn, in_axes, axis_size
        self.name = f"vmap({gen_fn.name})"

    def _axes(self, args):
        ax = self.in_axes
        if not isinstance(ax, (tuple, list)):
            ax = (ax,) * len(args)
        if len(ax) != len(args):
            raise ValueError(f"{self.name}: in_axes {self.in_axes} does not match {len(args)} arguments")
        return tuple(ax)

    @_unrecorded
    def simulate(self, key, args):
        args = _check_args(args, self.name)
        ax = self._axes(args)
        n = _axis_size(args, ax, self.axis_size, self.name)
        keys = jax.random.split(key, n)
        tr = jax.vmap(lambda k, a: self.gen_fn.simulate(k, a), in_axes=(0, ax))(keys, args)
        return Trace(tr.choices, jnp.sum(tr.score), tr.retval, args)

    @_unrecorded
    def assess(self, choices, args):
        args = _check_args(args, self.name)
        choices = _coerce_cm(choices)
        ax = self._axes(args)
        n = _axis_size(args, ax, self.axis_size, self.name)
        _check_leading(choices, n, self.name)
        logp, ret = jax.vmap(lambda c, a: self.gen_fn.assess(c, a), in_axes=(0, ax))(choices, args)
        return jnp.sum(logp), ret

    @_unrecorded
    def generate(self, key, constraints, args):
        args = _check_args(args, self.name)
        constraints = _coerce_cm(constraints)
        ax = self._axes(args)
        n = _axis_size(args, ax, self.axis_size, self.name)
        _check_leading(constraints, n, self.name)
        keys = jax.random.split(key, n)
        tr, w = jax.vmap(lambda k, c, a: self.gen_fn.generate(k, c, a), in_axes=(0, 0, ax))(
            keys, constraints, args
        )
        return Trace(tr.choices, jnp.sum(tr.score), tr.retval, args), jnp.sum(w)


class Scan(GenerativeFunction):
    """`gv.scan(gf, length=None)` with `gf(carry, x) -> (carry, y)`; args `(init, xs)`."""

    def __init__(self, gen_fn, length=None):
        if not isinstance(gen_fn, GenerativeFunction):
            raise TypeError("gv.scan scans a generative function (decorate it with @gv.gen)")
        self.gen_fn, self.length = gen_fn, length
        self.name = f"scan({gen_fn.name})"

    def _n(self, xs):
        leaves = jax.tree.leaves(xs)
        if leaves:
            return jnp.shape(leaves[0])[0]
        if self.length is None:
            raise ValueError(f"{self.name}: no xs to scan over. Fix: pass `length=n`.")
        return self.length

    def _split_args(self, args):
        args = _check_args(args, self.name)
        if len(args) != 2:
            raise TypeError(f"{self.name}: args are `(init_carry, xs)`, got {len(args)} items")
        return args

    def _unpack(self, ret):
        if not (isinstance(ret, tuple) and len(ret) == 2):
            raise TypeError(
                f"{self.name}: the scanned function must return `(carry, y)` like the body of "
                f"jax.lax.scan, got {type(ret).__name__}."
            )
        return ret

    @_unrecorded
    def simulate(self, key, args):
        init, xs = self._split_args(args)
        n = self._n(xs)
        keys = jax.random.split(key, n)

        def body(carry, kx):
            k, x = kx
            tr = self.gen_fn.simulate(k, (carry, x))
            c, y = self._unpack(tr.retval)
            return c, (tr.choices, tr.score, y)

        c, (ch, sc, ys) = jax.lax.scan(body, init, (keys, xs), length=n)
        return Trace(ch, jnp.sum(sc), (c, ys), args)

    @_unrecorded
    def assess(self, choices, args):
        init, xs = self._split_args(args)
        choices = _coerce_cm(choices)
        n = self._n(xs)
        _check_leading(choices, n, self.name)

        def body(carry, cx):
            cm, x = cx
            lp, ret = self.gen_fn.assess(cm, (carry, x))
            c, y = self._unpack(ret)
            return c, (lp, y)

        c, (lp, ys) = jax.lax.scan(body, init, (choices, xs), length=n)
        return jnp.sum(lp), (c, ys)

    @_unrecorded
    def generate(self, key, constraints, args):
        init, xs = self._split_args(args)
        constraints = _coerce_cm(constraints)
        n = self._n(xs)
        _check_leading(constraints, n, self.name)
        keys = jax.random.split(key, n)

        def body(carry, kcx):
            k, cm, x = kcx
            tr, w = self.gen_fn.generate(k, cm, (carry, x))
            c, y = self._unpack(tr.retval)
            return c, (tr.choices, tr.score, w, y)

        c, (ch, sc, w, ys) = jax.lax.scan(body, init, (keys, constraints, xs), length=n)
        return Trace(ch, jnp.sum(sc), (c, ys), args), jnp.sum(w)


class Switch(GenerativeFunction):
    """Stochastic branching: run branch `index` (a traced integer is fine).

    The trace's choices hold the union of the branches' addresses; those of branches that
    did not run hold zeros.
    """

    def __init__(self, index, *gen_fns):
        if not gen_fns or not all(isinstance(g, GenerativeFunction) for g in gen_fns):
            raise TypeError("gv.switch/gv.cond branches must be generative functions (@gv.gen)")
        self.index = index
        self.gen_fns = gen_fns
        self.name = f"switch({', '.join(g.name for g in gen_fns)})"

    def _union(self, args):
        shapes = [g.choice_shapes(args) for g in self.gen_fns]
        union: dict[tuple, jax.ShapeDtypeStruct] = {}
        owner: dict[tuple, int] = {}
        for i, s in enumerate(shapes):
            for a in s.addresses():
                leaf = s[a]
                if a in union and (union[a].shape, union[a].dtype) != (leaf.shape, leaf.dtype):
                    raise ValueError(
                        f"{self.name}: address {_fmt(a)} has shape/dtype {leaf.shape}/{leaf.dtype}"
                        f" in branch {i} but {union[a].shape}/{union[a].dtype} in branch "
                        f"{owner[a]}. Shared addresses must agree; rename one of them."
                    )
                union.setdefault(a, leaf)
                owner.setdefault(a, i)
        return shapes, union

    def _fill(self, union, cm: ChoiceMap) -> ChoiceMap:
        out = ChoiceMap()
        for a, s in union.items():
            v = cm[a] if cm.has_value(a) else jnp.zeros(s.shape, s.dtype)
            out = out.set(a, v)
        return out

    def _idx(self):
        idx = jnp.asarray(self.index)
        return jnp.clip(idx.astype(jnp.int32), 0, len(self.gen_fns) - 1)

    @_unrecorded
    def simulate(self, key, args):
        args = _check_args(args, self.name)
        _, union = self._union(args)

        def branch(g):
            def run(k, a):
                tr = g.simulate(k, a)
                return self._fill(union, tr.choices), tr.score, tr.retval
            return run

        ch, sc, ret = jax.lax.switch(self._idx(), [branch(g) for g in self.gen_fns], key, args)
        return Trace(ch, sc, ret, args)

    def _restrict(self, shapes, cm: ChoiceMap, i) -> tuple[ChoiceMap, bool]:
        out, complete = ChoiceMap(), True
        for a in shapes[i].addresses():
            if cm.has_value(a):
                out = out.set(a, cm[a])
            else:
                complete = False
        return out, complete

    @_unrecorded
    def assess(self, choices, args):
        args = _check_args(args, self.name)
        choices = _coerce_cm(choices)
        shapes, union = self._union(args)
        extra = [a for a in choices.addresses() if a not in union]
        if extra:
            raise ValueError(f"assess of {self.name}: addresses {extra} are in no branch")

        def branch(i):
            sub, complete = self._restrict(shapes, choices, i)

            def run(c, a):
                if not complete:
                    # This branch's choices are missing; it is an error only if it runs.
                    filled = self._fill({k: shapes[i][k] for k in shapes[i].addresses()}, sub)
                    lp, ret = self.gen_fns[i].assess(filled, a)
                    return jnp.full_like(lp, jnp.nan), ret
                return self.gen_fns[i].assess(sub, a)
            return run

        lp, ret = jax.lax.switch(
            self._idx(), [branch(i) for i in range(len(self.gen_fns))], choices, args
        )
        return lp, ret

    @_unrecorded
    def generate(self, key, constraints, args):
        args = _check_args(args, self.name)
        constraints = _coerce_cm(constraints)
        shapes, union = self._union(args)
        extra = [a for a in constraints.addresses() if a not in union]
        if extra:
            raise ValueError(
                f"generate of {self.name}: constraint address "
                f"{', '.join(_fmt(a) for a in extra)} is in no branch. Branch addresses: "
                f"{', '.join(_fmt(a) for a in union)}."
            )

        def branch(i):
            sub, _ = self._restrict(shapes, constraints, i)

            def run(k, a):
                tr, w = self.gen_fns[i].generate(k, sub, a)
                return self._fill(union, tr.choices), tr.score, tr.retval, w
            return run

        ch, sc, ret, w = jax.lax.switch(
            self._idx(), [branch(i) for i in range(len(self.gen_fns))], key, args
        )
        return Trace(ch, sc, ret, args), w


def vmap(gen_fn, in_axes=0, axis_size=None) -> Vmap:
    """An IID plate over `gen_fn`: addresses gain a leading axis of size n.

    Example:
        >>> pts = gv.vmap(point, in_axes=None, axis_size=5)(mu) @ "pts"
    """
    return Vmap(gen_fn, in_axes, axis_size)


def scan(gen_fn, length=None) -> Scan:
    """Iterate `gen_fn(carry, x) -> (carry, y)` as `jax.lax.scan`; args are `(init, xs)`."""
    return Scan(gen_fn, length)


def switch(index, *gen_fns) -> Switch:
    """Run branch `index` of `gen_fns` (branches may have different addresses)."""
    return Switch(index, *gen_fns)


def cond(pred, gen_fn_true, gen_fn_false) -> Switch:
    """Run `gen_fn_true` if `pred` else `gen_fn_false` (like `jax.lax.cond`)."""
    return Switch(jnp.asarray(pred).astype(jnp.int32) == 0, gen_fn_true, gen_fn_false)
