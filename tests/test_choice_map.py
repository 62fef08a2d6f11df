"""Choice maps and selections: construction, hierarchical indexing, merge, filter (with
complements), immutability, pytree behaviour under jax transformations, error messages,
and hypothesis properties over random nested maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

import genvi as gv

FEW = settings(max_examples=25, deadline=None)


def flat(cm: gv.ChoiceMap) -> dict:
    """{address tuple: float value} of every leaf."""
    return {a: float(np.asarray(cm[a])) for a in cm.addresses()}


def make() -> gv.ChoiceMap:
    return gv.choice_map({"x": 1.0, "sub": {"y": 2.0, "z": 3.0}, "d": {"e": {"f": 4.0}}})


ALL = [("d", "e", "f"), ("sub", "y"), ("sub", "z"), ("x",)]

# --------------------------------------------------------------------------------------
# Construction and access


def test_nested_dict_and_tuple_keys_build_the_same_map():
    nested = make()
    tupled = gv.choice_map({"x": 1.0, ("sub", "y"): 2.0, ("sub", "z"): 3.0,
                            ("d", "e", "f"): 4.0})
    mixed = gv.choice_map({("sub", "y"): 2.0, "sub": {"z": 3.0}, "x": 1.0,
                           "d": {("e", "f"): 4.0}})
    for cm in (nested, tupled, mixed):
        assert cm.addresses() == ALL
        assert flat(cm) == flat(nested)


def test_indexing_forms():
    cm = make()
    assert float(cm["sub", "y"]) == 2.0
    assert float(cm[("sub", "y")]) == 2.0
    assert float(cm["sub"]["y"]) == 2.0
    assert float(cm["d", "e", "f"]) == 4.0
    assert isinstance(cm["sub"], gv.ChoiceMap) and isinstance(cm["d", "e"], gv.ChoiceMap)
    assert isinstance(cm["x"], jax.Array)  # choice_map converts values with jnp.asarray
    assert cm["x"].dtype == jnp.float32
    assert gv.choice_map({"k": 1})["k"].dtype == jnp.int32


def test_missing_address_keyerror_names_it():
    cm = make()
    with pytest.raises(KeyError, match=r"\('sub', 'q'\)") as e:
        cm["sub", "q"]
    assert "'x'" in str(e.value) and "('sub', 'y')" in str(e.value)
    with pytest.raises(KeyError, match="'nope'"):
        cm["nope"]
    with pytest.raises(KeyError, match=r"\('x', 'deeper'\)"):
        cm["x", "deeper"]  # through a leaf


def test_get_contains_has_value_submap():
    cm = make()
    assert cm.get("nope") is None and cm.get(("sub", "q"), 7) == 7
    assert ("sub", "y") in cm and "sub" in cm and ("sub", "q") not in cm
    assert "x" in cm and ("x", "y") not in cm
    assert cm.has_value("x") and cm.has_value(("sub", "y"))
    assert not cm.has_value("sub") and not cm.has_value("nope")
    assert cm.submap("sub").addresses() == [("y",), ("z",)]
    assert cm.submap("nope").is_empty()
    with pytest.raises(ValueError, match="holds a value"):
        cm.submap("x")


def test_size_iteration_and_dict_round_trip():
    cm = make()
    assert len(cm) == 3 and sorted(cm) == ["d", "sub", "x"] and sorted(cm.keys()) == sorted(cm)
    assert not cm.is_empty() and gv.choice_map({}).is_empty() and gv.ChoiceMap().is_empty()
    assert gv.choice_map({}).format_addresses() == "(none)"
    again = gv.choice_map(cm.to_dict())
    assert flat(again) == flat(cm)
    assert set(dict(cm.items())) == {"x", "sub", "d"}


def test_repr_shows_structure_dtype_and_shape():
    r = repr(gv.choice_map({"v": jnp.zeros((2, 3)), "sub": {"k": 1}}))
    assert "'v': float32[2, 3]" in r and "'sub': ChoiceMap({'k': int32[]})" in r


def test_construction_errors():
    with pytest.raises(ValueError, match="'b'"):
        gv.choice_map({("a", "b"): 1.0, "a": {"b": 2.0}})
    with pytest.raises(ValueError, match="given twice"):
        gv.choice_map({"a": 1.0, ("a", "b"): 2.0})
    with pytest.raises(ValueError, match="empty address"):
        gv.choice_map({(): 1.0})
    with pytest.raises(TypeError, match="addresses are strings"):
        gv.choice_map({3: 1.0})


# --------------------------------------------------------------------------------------
# set / merge (immutable)


def test_set_is_a_copy():
    cm = make()
    new = cm.set(("sub", "y"), 9.0).set(("n", "m"), 5.0).set("x", 0.0)
    assert flat(cm) == {("d", "e", "f"): 4.0, ("sub", "y"): 2.0, ("sub", "z"): 3.0, ("x",): 1.0}
    assert flat(new) == {("d", "e", "f"): 4.0, ("n", "m"): 5.0, ("sub", "y"): 9.0,
                         ("sub", "z"): 3.0, ("x",): 0.0}


def test_merge_disjoint_and_nested():
    a = gv.choice_map({"x": 1.0, "sub": {"y": 2.0}})
    b = gv.choice_map({"w": 5.0, "sub": {"z": 3.0}})
    m = a | b
    assert flat(m) == {("sub", "y"): 2.0, ("sub", "z"): 3.0, ("w",): 5.0, ("x",): 1.0}
    assert a.addresses() == [("sub", "y"), ("x",)]  # operands unchanged
    assert flat(a | {"q": 4.0}) == {("q",): 4.0, ("sub", "y"): 2.0, ("x",): 1.0}
    assert flat(a | gv.choice_map({})) == flat(a) == flat(gv.choice_map({}) | a)


def test_merge_overlap_errors():
    with pytest.raises(ValueError, match="'x' is in both"):
        gv.choice_map({"x": 1.0}) | gv.choice_map({"x": 2.0})
    with pytest.raises(ValueError, match="'y' is in both"):
        gv.choice_map({"sub": {"y": 1.0}}) | gv.choice_map({("sub", "y"): 2.0})
    with pytest.raises(ValueError, match="'sub' is in both"):  # a value vs a sub-map
        gv.choice_map({"sub": 1.0}) | gv.choice_map({("sub", "y"): 2.0})


def test_merge_after_filter_replaces_a_value():
    cm = make()
    new = cm.filter(~gv.select(("sub", "y"))) | gv.choice_map({("sub", "y"): -1.0})
    assert flat(new) == {**flat(cm), ("sub", "y"): -1.0}


# --------------------------------------------------------------------------------------
# Selections and filter


@pytest.mark.parametrize("sel,expected", [
    (gv.select("x"), [("x",)]),
    (gv.select("sub"), [("sub", "y"), ("sub", "z")]),
    (gv.select(("sub", "y")), [("sub", "y")]),
    (gv.select(("d", "e")), [("d", "e", "f")]),
    (gv.select("x", ("sub", "z")), [("sub", "z"), ("x",)]),
    (gv.select("nope", ("sub", "q")), []),
    (gv.select(), []),
    (~gv.select(), ALL),
    (~gv.select("x"), [("d", "e", "f"), ("sub", "y"), ("sub", "z")]),
    (~gv.select("sub"), [("d", "e", "f"), ("x",)]),
    # complements of nested addresses (the whole "sub" map used to be kept)
    (~gv.select(("sub", "y")), [("d", "e", "f"), ("sub", "z"), ("x",)]),
    (~gv.select(("d", "e", "f")), [("sub", "y"), ("sub", "z"), ("x",)]),
    (~gv.select(("d", "e"), "x"), [("sub", "y"), ("sub", "z")]),
    (~~gv.select(("sub", "y")), [("sub", "y")]),
], ids=repr)
def test_filter(sel, expected):
    cm = make()
    out = cm.filter(sel)
    assert out.addresses() == expected
    for a in expected:
        assert float(out[a]) == float(cm[a])
        assert a in sel
    for a in set(ALL) - set(expected):
        assert a not in sel


def test_selection_contains_is_by_prefix():
    s = gv.select("a", ("b", "c"))
    assert ("a",) in s and ("a", "z") in s and "a" in s
    assert ("b", "c") in s and ("b", "c", "d") in s
    assert ("b",) not in s and ("b", "d") not in s and "q" not in s
    c = ~s
    assert ("b",) in c and ("b", "d") in c and ("a", "z") not in c and ("b", "c", "d") not in c
    assert repr(s) == "select('a', ('b', 'c'))" and repr(c).startswith("~select(")


# --------------------------------------------------------------------------------------
# Pytree behaviour


def test_pytree_structure_is_independent_of_insertion_order():
    a = gv.choice_map({"x": 1.0, "sub": {"y": 2.0, "z": 3.0}})
    b = gv.choice_map({"sub": {"z": 30.0, "y": 20.0}, "x": 10.0})
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert [float(v) for v in jax.tree.leaves(b)] == [20.0, 30.0, 10.0]  # sorted addresses
    doubled = jax.tree.map(lambda v: 2 * v, a)
    assert isinstance(doubled, gv.ChoiceMap)
    assert flat(doubled) == {("sub", "y"): 4.0, ("sub", "z"): 6.0, ("x",): 2.0}
    merged = a.set("w", 0.0) | gv.choice_map({"v": 1.0})
    assert jax.tree.structure(merged) == jax.tree.structure(
        gv.choice_map({"v": 1.0, "w": 0.0, "x": 1.0, "sub": {"y": 2.0, "z": 3.0}}))


def test_choice_map_through_jit_vmap_grad_and_cond():
    cm = make()
    out = jax.jit(lambda c: jax.tree.map(lambda v: v + 1, c))(cm)
    assert isinstance(out, gv.ChoiceMap) and flat(out) == {a: v + 1 for a, v in flat(cm).items()}
    stacked = gv.choice_map({"x": jnp.arange(4.0), "sub": {"y": jnp.ones((4, 2))}})
    sums = jax.vmap(lambda c: c["x"] + jnp.sum(c["sub", "y"]))(stacked)
    np.testing.assert_array_equal(sums, np.arange(4.0) + 2)
    g = jax.grad(lambda c: c["x"] ** 2 + 3 * c["sub", "y"])(gv.choice_map(
        {"x": 2.0, "sub": {"y": 1.0}}))
    assert isinstance(g, gv.ChoiceMap) and flat(g) == {("sub", "y"): 3.0, ("x",): 4.0}
    picked = jax.lax.cond(True, lambda: cm, lambda: jax.tree.map(jnp.zeros_like, cm))
    assert flat(picked) == flat(cm)


# --------------------------------------------------------------------------------------
# Properties over random nested maps

NAMES = hst.sampled_from(["a", "b", "c", "x"])
VALUES = hst.floats(-100, 100, allow_nan=False, width=32)
trees = hst.recursive(
    hst.dictionaries(NAMES, VALUES, min_size=1, max_size=3),
    lambda inner: hst.dictionaries(NAMES, hst.one_of(VALUES, inner), min_size=1, max_size=3),
    max_leaves=10,
)


def paths(d: dict, prefix=()) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(paths(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


@FEW
@given(tree=trees)
def test_random_map_addresses_values_and_round_trips(tree):
    cm = gv.choice_map(tree)
    expected = paths(tree)
    assert cm.addresses() == sorted(expected)
    assert flat(cm) == expected
    assert flat(gv.choice_map(expected)) == expected  # from tuple keys
    leaves, treedef = jax.tree.flatten(cm)
    assert len(leaves) == len(expected)
    assert flat(jax.tree.unflatten(treedef, leaves)) == expected
    assert flat(gv.choice_map(cm.to_dict())) == expected


@FEW
@given(tree=trees, data=hst.data())
def test_random_filter_partitions_the_map(tree, data):
    cm = gv.choice_map(tree)
    addrs = cm.addresses()
    # select some full addresses and some prefixes of them
    picked = data.draw(hst.lists(hst.sampled_from(addrs), max_size=3), label="picked")
    cuts = data.draw(hst.lists(hst.integers(1, 3), min_size=len(picked),
                               max_size=len(picked)), label="cuts")
    sel = gv.select(*[a[: min(c, len(a))] for a, c in zip(picked, cuts, strict=True)])
    inside, outside = cm.filter(sel), cm.filter(~sel)
    assert inside.addresses() == [a for a in addrs if a in sel]
    assert outside.addresses() == [a for a in addrs if a not in sel]
    assert flat(inside | outside) == flat(cm)  # disjoint, so the merge cannot fail
