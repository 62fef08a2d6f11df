"""The handler stack that gives `dist @ "addr"` its meaning.

This module sits below every layer: distributions use it to route `@`, the modeling
language installs handlers on it, and ADEV installs a *sampler* that decides how a
distribution is sampled while an expectation program is being staged. Handler state is
local to one interpretation (a `with` block), never global across traces.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

_handlers: contextvars.ContextVar[tuple] = contextvars.ContextVar("genvi_handlers", default=())
_sampler: contextvars.ContextVar[Any] = contextvars.ContextVar("genvi_sampler", default=None)
_prefix: contextvars.ContextVar[tuple] = contextvars.ContextVar("genvi_prefix", default=())


@contextlib.contextmanager
def handler(h):
    token = _handlers.set(_handlers.get() + (h,))
    try:
        yield h
    finally:
        _handlers.reset(token)


@contextlib.contextmanager
def without_handlers():
    """Run code (e.g. a sub-generative function) with a fresh, empty stack."""
    token = _handlers.set(())
    try:
        yield
    finally:
        _handlers.reset(token)


def current_handler():
    hs = _handlers.get()
    return hs[-1] if hs else None


@contextlib.contextmanager
def address_prefix(addr: tuple):
    token = _prefix.set(_prefix.get() + tuple(addr))
    try:
        yield
    finally:
        _prefix.reset(token)


def full_address(addr: tuple) -> tuple:
    return _prefix.get() + tuple(addr)


@contextlib.contextmanager
def sampler(fn):
    """Install `fn(dist, key, full_addr) -> value` as the way sites are sampled."""
    token = _sampler.set(fn)
    try:
        yield
    finally:
        _sampler.reset(token)


def sample(dist, key, addr: tuple = ()):
    """Sample `dist` with the installed sampler (plain `dist.sample(key)` by default)."""
    fn = _sampler.get()
    if fn is None:
        return dist.sample(key)
    return fn(dist, key, full_address(addr))


def visit(addr, obj):
    """Entry point of `obj @ addr` for distributions and generative-function calls."""
    h = current_handler()
    if h is None:
        kind = type(obj).__name__
        raise RuntimeError(
            f"`{kind}(...) @ {addr!r}` was used outside a generative function. Addressed "
            "choices only have a meaning while a `@gv.gen` function runs under `simulate`, "
            "`assess` or `generate`.\nFix: put this line inside a function decorated with "
            "`@gv.gen`, or draw an unaddressed value with `dist.sample(key)`."
        )
    return h.visit(addr, obj)


# Per-site scaling of log-density terms and site records ---------------------------------
_scale_fn: contextvars.ContextVar[Any] = contextvars.ContextVar("genvi_scale", default=None)
_recorder: contextvars.ContextVar[Any] = contextvars.ContextVar("genvi_recorder", default=None)


@contextlib.contextmanager
def scales(fn):
    """Install `fn(full_addr) -> factor or None`; log densities of sites are multiplied by it.

    Nested installs compose by multiplication.
    """
    outer = _scale_fn.get()
    if outer is not None:
        inner = fn

        def fn(addr):
            a, b = outer(addr), inner(addr)
            if a is None:
                return b
            return a if b is None else a * b

    token = _scale_fn.set(fn)
    try:
        yield
    finally:
        _scale_fn.reset(token)


def scaled(logp, addr: tuple):
    """`logp` times the installed scale for the site at `addr` (full address)."""
    fn = _scale_fn.get()
    if fn is None:
        return logp
    f = fn(full_address(addr))
    return logp if f is None else logp * f


@contextlib.contextmanager
def recording(records: list | None):
    """Collect `(full_addr, dist, value, logp)` of sites visited at this JAX trace level."""
    token = _recorder.set(records)
    try:
        yield records
    finally:
        _recorder.reset(token)


def record(addr: tuple, dist, value, logp) -> None:
    rec = _recorder.get()
    if rec is not None:
        rec.append((full_address(addr), dist, value, logp))
