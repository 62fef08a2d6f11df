"""Generative functions: the `@gen` language, traces, and the interface
`simulate` / `assess` / `generate` (the generative-function interface, GFI)."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from genvi import _effects
from genvi.core.choice_map import ChoiceMap, _fmt
from genvi.distributions._base import Distribution, Using, unwrap

_GENVI_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Trace(eqx.Module):
    """A record of one execution of a generative function.

    Attributes:
        choices: the `ChoiceMap` of every addressed random choice.
        score: log p(choices; args), the joint log density of all choices (not negated).
        retval: the function's return value.
        args: the argument tuple it ran with.
    """

    choices: ChoiceMap
    score: jax.Array
    retval: Any
    args: tuple


def _check_args(args, who: str) -> tuple:
    if not isinstance(args, tuple):
        raise TypeError(
            f"{who}: `args` must be a tuple of the function's arguments, got "
            f"{type(args).__name__}. Fix: pass `(x,)` for one argument or `()` for none."
        )
    return args


def _user_location() -> str:
    """file:line of the innermost frame outside genvi (the user's `@` site)."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_GENVI_DIR) and "contextlib" not in fn:
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


class GenerativeFunction:
    """Base class: anything with `simulate`, `assess` and `generate`.

    Calling a generative function with arguments gives a `GenCall` to address:
    `sub(x) @ "name"` inside another generative function.
    """

    name: str = "generative function"

    def simulate(self, key, args: tuple) -> Trace:
        raise NotImplementedError

    def assess(self, choices: ChoiceMap, args: tuple):
        raise NotImplementedError

    def generate(self, key, constraints: ChoiceMap, args: tuple):
        raise NotImplementedError

    def __call__(self, *args) -> GenCall:
        return GenCall(self, args)

    def choice_shapes(self, args: tuple) -> ChoiceMap:
        """The choice map structure (shapes and dtypes) this function produces for `args`."""
        return jax.eval_shape(lambda a: self.simulate(jax.random.key(0), a).choices, args)


class Scaled:
    """`gv.scale(obj, factor) @ "addr"`: the site's log density terms multiplied by factor."""

    def __init__(self, obj, factor):
        self.obj, self.factor = obj, factor

    def __matmul__(self, addr):
        return _effects.visit(addr, self)


def scale(obj, factor) -> Scaled:
    """Scale the log density of a site (or of every site of a generative-function call).

    Used for minibatching (factor N / B on a plate of B observations out of N) and for
    KL weights (a beta-ELBO scales the latent sites). The trace's score then holds the
    scaled log density.

    Example:
        >>> gv.scale(gv.vmap(likelihood)(x_batch), N / B) @ "obs"
    """
    if not isinstance(obj, (Distribution, Using, GenCall)):
        raise TypeError(
            f"gv.scale scales a distribution or a generative-function call, got "
            f"{type(obj).__name__}."
        )
    return Scaled(obj, factor)


class GenCall:
    """`gf(*args)`: a pending call, given an address with `@`."""

    def __init__(self, gen_fn: GenerativeFunction, args: tuple):
        self.gen_fn = gen_fn
        self.args = args

    def __matmul__(self, addr):
        return _effects.visit(addr, self)


# --------------------------------------------------------------------------------------
# Handlers: each interprets `obj @ addr` for one GFI method; state lives in one run only.


def _site_logp(addr, dist, x):
    lp = _effects.scaled(dist.logpdf(x), (addr,))
    _effects.record((addr,), dist, x, lp)
    return lp


class _Handler:
    def __init__(self, gf_name: str):
        self.gf_name = gf_name
        self.sites: dict[str, str] = {}
        self.choices: dict[str, Any] = {}
        self.score = jnp.zeros(())

    def visit(self, addr, obj):
        if not isinstance(addr, str):
            raise TypeError(
                f"addresses are strings, got {addr!r} ({type(addr).__name__}) in "
                f"`{self.gf_name}`. Fix: `dist @ \"name\"`; nest with a sub-generative function."
            )
        loc = _user_location()
        if addr in self.sites:
            raise ValueError(
                f"address {addr!r} is used twice in `{self.gf_name}`: first at "
                f"{self.sites[addr]}, again at {loc}. Each random choice needs its own "
                "address (in a Python loop, use e.g. f\"x{i}\", or gv.vmap / gv.scan)."
            )
        self.sites[addr] = loc
        if isinstance(obj, Scaled):
            full = _effects.full_address((addr,))
            f = obj.factor
            with _effects.scales(lambda a: f if a[: len(full)] == full else None):
                return self._visit_inner(addr, obj.obj)
        return self._visit_inner(addr, obj)

    def _visit_inner(self, addr, obj):
        if isinstance(obj, (Distribution, Using)):
            return self.visit_dist(addr, obj)
        if isinstance(obj, GenCall):
            with _effects.without_handlers(), _effects.address_prefix((addr,)):
                return self.visit_call(addr, obj.gen_fn, _check_args(obj.args, addr))
        raise TypeError(
            f"`{type(obj).__name__} @ {addr!r}` in `{self.gf_name}`: only distributions and "
            "calls of generative functions can be addressed. Fix: decorate the function "
            "with `@gv.gen` and call it, `sub(args) @ \"name\"`, or sample a distribution."
        )

    def unvisited(self, cm: ChoiceMap) -> list[tuple]:
        return [a for a in cm.addresses() if a[0] not in self.sites]


class _Simulate(_Handler):
    def __init__(self, gf_name, key):
        super().__init__(gf_name)
        self.key = key

    def _split(self):
        self.key, sub = jax.random.split(self.key)
        return sub

    def visit_dist(self, addr, d):
        dist, _ = unwrap(d)
        x = _effects.sample(d, self._split(), (addr,))
        self.score = self.score + _site_logp(addr, dist, x)
        self.choices[addr] = x
        return x

    def visit_call(self, addr, gf, args):
        tr = gf.simulate(self._split(), args)
        self.score = self.score + tr.score
        self.choices[addr] = tr.choices
        return tr.retval


class _Assess(_Handler):
    def __init__(self, gf_name, choices: ChoiceMap):
        super().__init__(gf_name)
        self.given = choices

    def visit_dist(self, addr, d):
        dist, _ = unwrap(d)
        if not self.given.has_value(addr):
            raise KeyError(
                f"assess of `{self.gf_name}`: no value for required address {addr!r}. "
                f"The choices given hold: {self.given.format_addresses()}. Fix: include "
                f"{addr!r} (assess needs every choice; use `generate` for partial data)."
            )
        x = self.given[addr]
        dist.check_value(x, addr)
        self.score = self.score + _site_logp(addr, dist, x)
        self.choices[addr] = x
        return x

    def visit_call(self, addr, gf, args):
        logp, ret = gf.assess(self.given.submap(addr), args)
        self.score = self.score + logp
        self.choices[addr] = self.given.submap(addr)
        return ret


class _Generate(_Simulate):
    def __init__(self, gf_name, key, constraints: ChoiceMap):
        super().__init__(gf_name, key)
        self.constraints = constraints
        self.weight = jnp.zeros(())

    def visit_dist(self, addr, d):
        if not self.constraints.has_value(addr):
            node = self.constraints.get(addr)
            if isinstance(node, ChoiceMap) and not node.is_empty():
                inner = ", ".join(
                    _fmt(_effects.full_address((addr,) + a)) for a in node.addresses()
                )
                raise ValueError(
                    f"generate of `{self.gf_name}`: constraint address {inner} is never "
                    f"visited: {_fmt(_effects.full_address((addr,)))} is a single random "
                    "choice, not a generative function with choices of its own. Fix: give "
                    "one value at that address."
                )
            return super().visit_dist(addr, d)
        dist, _ = unwrap(d)
        x = self.constraints[addr]
        dist.check_value(x, addr)
        lp = _site_logp(addr, dist, x)
        self.score = self.score + lp
        self.weight = self.weight + lp
        self.choices[addr] = x
        return x

    def visit_call(self, addr, gf, args):
        tr, w = gf.generate(self._split(), self.constraints.submap(addr), args)
        self.score = self.score + tr.score
        self.weight = self.weight + w
        self.choices[addr] = tr.choices
        return tr.retval


def _check_unvisited(h: _Handler, cm: ChoiceMap, what: str):
    extra = h.unvisited(cm)
    if extra:
        visited = ", ".join(repr(a) for a in h.sites) or "(none)"
        raise ValueError(
            f"{what} of `{h.gf_name}`: address "
            f"{', '.join(_fmt(_effects.full_address(a)) for a in extra)} is never "
            f"visited by the function, so it cannot be constrained. Its addresses are: "
            f"{visited}. Fix: check the spelling, or drop that entry."
        )


class StaticGenFn(GenerativeFunction):
    """A generative function written as Python code with `dist @ "addr"` sites."""

    def __init__(self, fn):
        self.fn = fn
        self.name = getattr(fn, "__name__", "generative function")
        functools.update_wrapper(self, fn)

    def _run(self, h: _Handler, args):
        with _effects.handler(h):
            try:
                ret = self.fn(*args)
            except TypeError as e:
                _reraise_bad_matmul(e, self.name)
                raise
        return ret

    def simulate(self, key, args: tuple) -> Trace:
        """Run forwards, sampling every choice. Returns a `Trace` (score = log p)."""
        args = _check_args(args, f"{self.name}.simulate")
        h = _Simulate(self.name, key)
        ret = self._run(h, args)
        return Trace(ChoiceMap(h.choices), h.score, ret, args)

    def assess(self, choices: ChoiceMap, args: tuple):
        """(log p(choices; args), retval) for a complete set of choices."""
        args = _check_args(args, f"{self.name}.assess")
        choices = _coerce_cm(choices)
        h = _Assess(self.name, choices)
        ret = self._run(h, args)
        _check_unvisited(h, choices, "assess")
        return h.score, ret

    def generate(self, key, constraints: ChoiceMap, args: tuple):
        """Importance sampling from the prior with `constraints` fixed.

        Returns `(trace, log_w)` where log_w = sum of the log densities of the constrained
        choices, i.e. log p(constraints | unconstrained choices).
        """
        args = _check_args(args, f"{self.name}.generate")
        constraints = _coerce_cm(constraints)
        h = _Generate(self.name, key, constraints)
        ret = self._run(h, args)
        _check_unvisited(h, constraints, "generate")
        return Trace(ChoiceMap(h.choices), h.score, ret, args), h.weight

    def __repr__(self):
        return f"<gv.gen {self.name}>"


def _reraise_bad_matmul(e: TypeError, gf_name: str):
    """`value @ "addr"` where `value` is neither a distribution nor a generative call.

    Python raises its own TypeError (`int`, arrays and `str` know nothing of `@` with a
    string); re-raise it with the site and the fix.
    """
    msg = str(e)
    if not (msg.startswith("unsupported operand type(s) for @:") and msg.endswith("'str'")):
        return
    tb, loc = e.__traceback__, "<unknown>"
    while tb is not None:
        fn = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not fn.startswith(_GENVI_DIR):
            loc = f"{fn}:{tb.tb_lineno}"
        tb = tb.tb_next
    raise TypeError(
        f"in `{gf_name}` at {loc}: {msg}. Only distributions and calls of generative "
        "functions can be addressed with `@ \"name\"`; the left side here is a plain value "
        "(e.g. the result of calling an undecorated Python function). Fix: decorate the "
        "called function with `@gv.gen` and address its call, `sub(args) @ \"name\"`."
    ) from e


def _coerce_cm(cm) -> ChoiceMap:
    if isinstance(cm, ChoiceMap):
        return cm
    if isinstance(cm, dict):
        from genvi.core.choice_map import choice_map

        return choice_map(cm)
    raise TypeError(f"expected a ChoiceMap (gv.choice_map({{...}})), got {type(cm).__name__}")


def gen(fn) -> StaticGenFn:
    """Make a generative function from Python code with addressed random choices.

    Example:
        >>> @gv.gen
        ... def model(mu):
        ...     x = gv.normal(mu, 1.0) @ "x"
        ...     return x
        >>> tr = model.simulate(jax.random.key(0), (0.0,))
    """
    if isinstance(fn, GenerativeFunction):
        return fn
    if not callable(fn):
        raise TypeError(f"@gv.gen decorates a function, got {type(fn).__name__}")
    return StaticGenFn(fn)
