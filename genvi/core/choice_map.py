"""Choice maps (hierarchical address -> value pytrees) and selections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp


def _as_tuple(addr) -> tuple:
    if isinstance(addr, tuple):
        return addr
    return (addr,)


def _fmt(addr: tuple) -> str:
    return repr(addr[0]) if len(addr) == 1 else repr(addr)


@jax.tree_util.register_pytree_node_class
class ChoiceMap:
    """An immutable map from hierarchical addresses to values; a JAX pytree.

    Leaves are arrays (vectorized along leading axes under `gv.vmap` / `gv.scan`);
    inner nodes are `ChoiceMap`s. Index with `cm["a"]` or `cm["a", "b"]`.

    Example:
        >>> cm = gv.choice_map({"x": 1.0, "sub": {"y": 2.0}})
        >>> float(cm["sub", "y"])
        2.0
    """

    __slots__ = ("_d",)

    def __init__(self, mapping: Mapping[str, Any] | None = None):
        d = {}
        for k, v in (mapping or {}).items():
            if isinstance(k, tuple):
                if not k:
                    raise ValueError("empty address () in a choice map")
                if len(k) > 1:
                    v = {k[1:]: v}
                k = k[0]
            if not isinstance(k, str):
                raise TypeError(f"choice-map addresses are strings, got {k!r}")
            if isinstance(v, Mapping) and not isinstance(v, ChoiceMap):
                v = ChoiceMap(v)
            if k in d:
                if isinstance(d[k], ChoiceMap) and isinstance(v, ChoiceMap):
                    v = d[k] | v
                else:
                    raise ValueError(f"address {k!r} given twice in a choice map")
            d[k] = v
        object.__setattr__(self, "_d", d)

    # pytree ------------------------------------------------------------------------------
    def tree_flatten(self):
        keys = tuple(sorted(self._d))
        return tuple(self._d[k] for k in keys), keys

    @classmethod
    def tree_unflatten(cls, keys, children):
        cm = object.__new__(cls)
        object.__setattr__(cm, "_d", dict(zip(keys, children, strict=True)))
        return cm

    # access ------------------------------------------------------------------------------
    def _lookup(self, addr: tuple):
        node = self
        for i, a in enumerate(addr):
            if not isinstance(node, ChoiceMap) or a not in node._d:
                return None, addr[: i + 1]
            node = node._d[a]
        return node, addr

    def __getitem__(self, addr):
        addr = _as_tuple(addr)
        node, reached = self._lookup(addr)
        if node is None:
            raise KeyError(
                f"no choice at address {_fmt(addr)} (missing {_fmt(reached)}). "
                f"Addresses present: {self.format_addresses()}"
            )
        return node

    def get(self, addr, default=None):
        node, _ = self._lookup(_as_tuple(addr))
        return default if node is None else node

    def __contains__(self, addr) -> bool:
        return self._lookup(_as_tuple(addr))[0] is not None

    def has_value(self, addr) -> bool:
        node = self.get(addr)
        return node is not None and not isinstance(node, ChoiceMap)

    def submap(self, addr) -> ChoiceMap:
        """The choice map under `addr` (empty if absent). A value there is an error."""
        node = self.get(addr)
        if node is None:
            return ChoiceMap()
        if not isinstance(node, ChoiceMap):
            raise ValueError(
                f"address {_fmt(_as_tuple(addr))} holds a value, but a generative function "
                "called there expects a choice map of its own choices."
            )
        return node

    def keys(self):
        return self._d.keys()

    def items(self):
        return self._d.items()

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self):
        return iter(self._d)

    def is_empty(self) -> bool:
        return not self._d

    def addresses(self) -> list[tuple]:
        """Every leaf address, as tuples, in sorted order."""
        out = []
        for k in sorted(self._d):
            v = self._d[k]
            if isinstance(v, ChoiceMap):
                out.extend((k,) + a for a in v.addresses())
            else:
                out.append((k,))
        return out

    def format_addresses(self) -> str:
        addrs = self.addresses()
        return ", ".join(_fmt(a) for a in addrs) if addrs else "(none)"

    def to_dict(self) -> dict:
        return {k: (v.to_dict() if isinstance(v, ChoiceMap) else v) for k, v in self._d.items()}

    # algebra -----------------------------------------------------------------------------
    def __or__(self, other: ChoiceMap) -> ChoiceMap:
        """Merge two choice maps; an address present in both is an error."""
        if not isinstance(other, ChoiceMap):
            other = ChoiceMap(other)
        d = dict(self._d)
        for k, v in other._d.items():
            if k in d:
                if isinstance(d[k], ChoiceMap) and isinstance(v, ChoiceMap):
                    d[k] = d[k] | v
                    continue
                raise ValueError(
                    f"cannot merge choice maps: address {k!r} is in both. Use "
                    "`a.filter(~gv.select(...)) | b` to choose which one wins."
                )
            d[k] = v
        return ChoiceMap.tree_unflatten(tuple(d), tuple(d.values()))

    def set(self, addr, value) -> ChoiceMap:
        """A copy with `value` at `addr` (replacing what was there)."""
        addr = _as_tuple(addr)
        d = dict(self._d)
        if len(addr) == 1:
            d[addr[0]] = value
        else:
            d[addr[0]] = self.submap(addr[0]).set(addr[1:], value)
        return ChoiceMap.tree_unflatten(tuple(d), tuple(d.values()))

    def filter(self, selection: Selection) -> ChoiceMap:
        """The sub-map of the addresses in `selection`."""
        d = {}
        for k, v in self._d.items():
            if isinstance(v, ChoiceMap):
                # Recurse: under a complement, `contains((k,))` does not mean that every
                # address below k is selected (`~select(("a", "b"))` excludes ("a", "b")).
                inner = selection.inner(k)
                if inner is not None:
                    sub = v.filter(inner)
                    if not sub.is_empty():
                        d[k] = sub
            elif selection.contains((k,)):
                d[k] = v
        return ChoiceMap.tree_unflatten(tuple(d), tuple(d.values()))

    def __repr__(self) -> str:
        parts = []
        for k in sorted(self._d):
            v = self._d[k]
            if isinstance(v, ChoiceMap):
                parts.append(f"{k!r}: {v!r}")
            else:
                parts.append(f"{k!r}: {getattr(v, 'dtype', type(v).__name__)}{list(jnp.shape(v))}")
        return "ChoiceMap({" + ", ".join(parts) + "})"


def choice_map(mapping: Mapping | None = None) -> ChoiceMap:
    """Build a choice map from a (nested) dict; tuple keys are hierarchical addresses.

    Values are converted with `jnp.asarray`.

    Example:
        >>> data = gv.choice_map({"z": 5.0, ("sub", "y"): 1.0})
    """
    def conv(m):
        return {
            k: (conv(v) if isinstance(v, Mapping) and not isinstance(v, ChoiceMap)
                else v if isinstance(v, ChoiceMap) else jnp.asarray(v))
            for k, v in m.items()
        }
    return ChoiceMap(conv(mapping or {}))


class Selection:
    """A set of hierarchical addresses. Selecting `"a"` selects everything under `"a"`."""

    def __init__(self, addrs: Iterable[tuple] = (), complement: bool = False):
        self._addrs = frozenset(_as_tuple(a) for a in addrs)
        self._complement = complement

    def contains(self, addr) -> bool:
        addr = _as_tuple(addr)
        hit = any(addr[: len(a)] == a for a in self._addrs)
        return hit != self._complement

    def inner(self, head: str) -> Selection | None:
        """The selection below `head` (None if it selects nothing there)."""
        if any((head,)[: len(a)] == a for a in self._addrs):
            # `head` itself (or all addresses) is in the set: everything below it is
            # selected, or, for a complement, nothing is.
            return None if self._complement else Selection(complement=True)
        rest = [a[1:] for a in self._addrs if len(a) > 1 and a[0] == head]
        if self._complement:
            return Selection(rest, complement=True)
        return Selection(rest) if rest else None

    def __invert__(self) -> Selection:
        return Selection(self._addrs, not self._complement)

    def __contains__(self, addr) -> bool:
        return self.contains(addr)

    def __repr__(self) -> str:
        s = ", ".join(_fmt(a) for a in sorted(self._addrs))
        return f"{'~' if self._complement else ''}select({s})"


def select(*addrs) -> Selection:
    """Select addresses: `gv.select("x", "y")`, hierarchical as `gv.select(("sub", "y"))`."""
    return Selection(addrs)
