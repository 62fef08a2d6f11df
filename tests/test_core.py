"""The modeling language: `simulate` / `assess` / `generate` on random programs (hypothesis),
`generate` weights against hand-computed densities, hierarchical addresses, the combinators
(`vmap`, `scan`, `cond`, `switch` and their nestings), behaviour under `jax.jit` /
`jax.vmap` / `jax.grad`, and every error message of the core.

References are scipy.stats densities evaluated in float64 at the traced values; genvi runs
in float32, hence the tolerances.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import genvi as gv

THIS_FILE = os.path.basename(__file__)
KEY = jax.random.key(0)
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(actual, expected, rtol=1e-5, atol=1e-4):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def same(actual, expected):
    """Exact equality, comparing in `actual`'s dtype (float32 in genvi)."""
    actual = np.asarray(actual)
    np.testing.assert_array_equal(actual, np.asarray(expected, dtype=actual.dtype))


def norm_lp(x, loc, scale):
    return float(np.sum(st.norm.logpdf(np.asarray(x, np.float64), loc, scale)))


def lines_of(fn, needle: str) -> list[int]:
    """Line numbers in this file of `fn`'s source lines containing `needle`."""
    src, start = inspect.getsourcelines(fn)
    return [start + i for i, line in enumerate(src) if needle in line]


# ======================================================================================
# 1. Random programs: simulate / assess / generate agree with each other and with scipy.


@dataclass(frozen=True)
class Site:
    kind: str
    params: tuple  # float32 NumPy arrays
    coupling: float = 0.0  # normal / mv_normal_diag: loc += coupling * prev


@dataclass(frozen=True)
class Sub:
    spec: tuple  # of Site | Sub


def _floats(draw, n, lo, hi):
    xs = draw(hst.lists(hst.floats(lo, hi), min_size=max(n, 1), max_size=max(n, 1)))
    a = np.asarray(xs, dtype=np.float32)
    return a if n else a[0]


@hst.composite
def sites(draw):
    kind = draw(hst.sampled_from(
        ["normal", "bernoulli", "categorical", "mv_normal_diag", "gamma", "poisson"]
    ))
    # 0: a scalar site, else a vector of 3 values. Few distinct shapes on purpose: every
    # new shape recompiles the eager samplers (seconds each for gamma / poisson).
    n = draw(hst.sampled_from([0, 3]))
    c = draw(hst.floats(-1.0, 1.0, width=32))
    if kind == "normal":
        return Site(kind, (_floats(draw, n, -3, 3), _floats(draw, n, 0.2, 3)), c)
    if kind == "bernoulli":
        return Site(kind, (_floats(draw, n, 0.05, 0.95),))
    if kind == "categorical":
        return Site(kind, (_floats(draw, 3, 0.05, 1.0),))
    if kind == "mv_normal_diag":
        return Site(kind, (_floats(draw, 3, -3, 3), _floats(draw, 3, 0.2, 3)), c)
    if kind == "gamma":
        return Site(kind, (_floats(draw, 0, 0.5, 5), _floats(draw, 0, 0.5, 3)))
    return Site(kind, (_floats(draw, 0, 0.2, 5),))


specs = hst.recursive(
    hst.lists(sites(), min_size=1, max_size=4).map(tuple),
    lambda inner: hst.lists(
        hst.one_of(sites(), inner.map(Sub)), min_size=1, max_size=4
    ).map(tuple),
    max_leaves=8,
)


def _dist(site: Site, prev):
    p = site.params
    if site.kind == "normal":
        return gv.normal(p[0] + site.coupling * prev, p[1])
    if site.kind == "bernoulli":
        return gv.bernoulli(p[0])
    if site.kind == "categorical":
        return gv.categorical(p[0])
    if site.kind == "mv_normal_diag":
        return gv.mv_normal_diag(p[0] + site.coupling * prev, p[1])
    if site.kind == "gamma":
        return gv.gamma(p[0], p[1])
    return gv.poisson(p[0])


def build(spec) -> gv.GenerativeFunction:
    """A generative function with one site per `Site` ("s{i}") and a sub-generative
    function per `Sub` ("sub{i}"); data flows site to site through `prev`."""

    @gv.gen
    def program(prev):
        for i, item in enumerate(spec):
            if isinstance(item, Site):
                v = _dist(item, prev) @ f"s{i}"
                prev = 0.1 * jnp.sum(v)
            else:
                prev = build(item.spec)(prev) @ f"sub{i}"
        return prev

    return program


def _site_ref(site: Site, v, prev) -> float:
    p = [np.asarray(a, np.float64) for a in site.params]
    v = np.asarray(v)
    if site.kind in ("normal", "mv_normal_diag"):
        return norm_lp(v, p[0] + site.coupling * prev, p[1])
    if site.kind == "bernoulli":
        return float(np.sum(st.bernoulli.logpmf(v, p[0])))
    if site.kind == "categorical":
        return float(np.log(p[0] / p[0].sum())[v])
    if site.kind == "gamma":
        return float(np.sum(st.gamma.logpdf(v.astype(np.float64), a=p[0], scale=1 / p[1])))
    return float(np.sum(st.poisson.logpmf(v, p[0])))


def ref_logp(spec, choices, prev, only=None, prefix=()):
    """(sum of scipy log densities of the sites (those in `only` if given), retval)."""
    total = 0.0
    for i, item in enumerate(spec):
        if isinstance(item, Site):
            addr = prefix + (f"s{i}",)
            v = np.asarray(choices[addr])
            if only is None or addr in only:
                total += _site_ref(item, v, prev)
            prev = 0.1 * float(np.sum(v.astype(np.float64)))
        else:
            lp, prev = ref_logp(item.spec, choices, prev, only, prefix + (f"sub{i}",))
            total += lp
    return total, prev


def check_values(spec, choices, prefix=()):
    """Every site's value has the distribution's shape, dtype and support."""
    for i, item in enumerate(spec):
        if isinstance(item, Sub):
            check_values(item.spec, choices, prefix + (f"sub{i}",))
            continue
        v = np.asarray(choices[prefix + (f"s{i}",)])
        p0 = item.params[0]
        shape = {"categorical": (), "mv_normal_diag": p0.shape}.get(item.kind, np.shape(p0))
        assert v.shape == shape, (item, v.shape)
        discrete = item.kind in ("bernoulli", "categorical", "poisson")
        assert np.issubdtype(v.dtype, np.integer) == discrete, (item, v.dtype)
        assert np.all(np.isfinite(v))
        if item.kind == "bernoulli":
            assert set(np.unique(v)) <= {0, 1}
        elif item.kind == "categorical":
            assert 0 <= v < p0.shape[0]
        elif item.kind == "poisson":
            assert np.all(v >= 0)
        elif item.kind == "gamma":
            assert np.all(v > 0)


def all_addresses(spec, prefix=()):
    out = []
    for i, item in enumerate(spec):
        if isinstance(item, Site):
            out.append(prefix + (f"s{i}",))
        else:
            out.extend(all_addresses(item.spec, prefix + (f"sub{i}",)))
    return sorted(out)


@FEW
@given(spec=specs, prev=hst.floats(-2, 2, width=32), seed=hst.integers(0, 2**30))
def test_random_program_simulate_assess_scipy_agree(spec, prev, seed):
    gf = build(spec)
    tr = gf.simulate(jax.random.key(seed), (prev,))
    assert tr.choices.addresses() == all_addresses(spec)
    assert tr.args == (prev,)
    check_values(spec, tr.choices)
    ref, ref_ret = ref_logp(spec, tr.choices, float(prev))
    close(tr.score, ref, rtol=1e-4, atol=1e-3)
    close(tr.retval, ref_ret, rtol=1e-4, atol=1e-4)
    logp, ret = gf.assess(tr.choices, (prev,))
    close(logp, tr.score, rtol=1e-6, atol=1e-5)
    close(ret, tr.retval, rtol=1e-6, atol=1e-6)


@FEW
@given(spec=specs, prev=hst.floats(-2, 2, width=32), seed=hst.integers(0, 2**30),
       data=hst.data())
def test_random_program_generate_weight(spec, prev, seed, data):
    gf = build(spec)
    source = gf.simulate(jax.random.key(seed), (prev,)).choices
    addrs = source.addresses()
    chosen = data.draw(hst.lists(hst.sampled_from(addrs), unique=True), label="constrained")
    constraints = source.filter(gv.select(*chosen))
    assert constraints.addresses() == sorted(chosen)
    tr, w = gf.generate(jax.random.key(seed + 1), constraints, (prev,))
    assert tr.choices.addresses() == addrs
    for a in chosen:
        np.testing.assert_array_equal(tr.choices[a], source[a])
    check_values(spec, tr.choices)
    ref_w, _ = ref_logp(spec, tr.choices, float(prev), only=set(chosen))
    close(w, ref_w, rtol=1e-4, atol=1e-3)
    ref_score, _ = ref_logp(spec, tr.choices, float(prev))
    close(tr.score, ref_score, rtol=1e-4, atol=1e-3)
    close(gf.assess(tr.choices, (prev,))[0], tr.score, rtol=1e-6, atol=1e-5)
    if not chosen:
        assert float(w) == 0.0
    if len(chosen) == len(addrs):
        close(w, tr.score, rtol=1e-6, atol=1e-5)


# ======================================================================================
# 2. generate weights computed by hand.


@gv.gen
def chain(mu):
    x = gv.normal(mu, 2.0) @ "x"
    y = gv.normal(x, 0.5) @ "y"
    z = gv.normal(x + y, 1.0) @ "z"
    return z


VALUES = {"x": -0.7, "y": 0.3, "z": 1.5}


def chain_logps(choices, mu) -> dict:
    x, y, z = (float(choices[a]) for a in ("x", "y", "z"))
    return {"x": norm_lp(x, mu, 2.0), "y": norm_lp(y, x, 0.5), "z": norm_lp(z, x + y, 1.0)}


@pytest.mark.parametrize("names", [(), ("x",), ("z",), ("y", "z"), ("x", "z"), ("x", "y", "z")])
def test_generate_weight_is_sum_of_constrained_logpdfs(names):
    mu = 0.4
    cons = gv.choice_map({a: VALUES[a] for a in names})
    tr, w = chain.generate(jax.random.key(3), cons, (mu,))
    for a in names:
        same(tr.choices[a], VALUES[a])
    lps = chain_logps(tr.choices, mu)
    close(w, sum(lps[a] for a in names))
    close(tr.score, sum(lps.values()))
    same(tr.retval, tr.choices["z"])
    close(chain.assess(tr.choices, (mu,))[0], tr.score, rtol=1e-6)


def test_generate_fully_constrained_weight_equals_score_and_assess():
    cons = gv.choice_map(VALUES)
    tr, w = chain.generate(KEY, cons, (0.4,))
    close(w, tr.score, rtol=1e-6)
    logp, ret = chain.assess(cons, (0.4,))
    close(w, logp, rtol=1e-6)
    same(ret, 1.5)
    close(w, sum(chain_logps(cons, 0.4).values()))


def test_generate_empty_constraints_zero_weight_matches_simulate():
    tr, w = chain.generate(KEY, gv.choice_map({}), (0.4,))
    assert float(w) == 0.0
    sim = chain.simulate(KEY, (0.4,))
    for a in ("x", "y", "z"):
        same(tr.choices[a], sim.choices[a])
    close(tr.score, sim.score, rtol=1e-7)


def test_generate_accepts_plain_dict_and_differs_across_keys():
    (tr1, w1), (tr2, w2) = (chain.generate(jax.random.key(s), {"z": 1.5}, (0.4,)) for s in (1, 2))
    assert float(tr1.choices["x"]) != float(tr2.choices["x"])
    close(w1, chain_logps(tr1.choices, 0.4)["z"])
    close(w2, chain_logps(tr2.choices, 0.4)["z"])


# ======================================================================================
# 3. Hierarchical addresses.


@gv.gen
def inner(a):
    y = gv.normal(a, 1.0) @ "y"
    k = gv.bernoulli(0.3) @ "k"
    return y + k


@gv.gen
def outer(mu):
    x = gv.normal(mu, 1.0) @ "x"
    r = inner(x) @ "sub"
    return gv.normal(r, 0.5) @ "obs"


@gv.gen
def outer2():
    return outer(0.5) @ "o"


def outer_logp(cm, mu) -> float:
    x, y, k, obs = (float(cm[a]) for a in ("x", ("sub", "y"), ("sub", "k"), "obs"))
    return (norm_lp(x, mu, 1) + norm_lp(y, x, 1) + st.bernoulli.logpmf(k, 0.3)
            + norm_lp(obs, y + k, 0.5))


def test_hierarchical_simulate_addresses_and_score():
    tr = outer.simulate(KEY, (0.2,))
    assert tr.choices.addresses() == [("obs",), ("sub", "k"), ("sub", "y"), ("x",)]
    assert isinstance(tr.choices["sub"], gv.ChoiceMap)
    same(tr.choices["sub", "y"], tr.choices["sub"]["y"])
    assert jnp.issubdtype(tr.choices["sub", "k"].dtype, jnp.integer)
    close(tr.score, outer_logp(tr.choices, 0.2))
    same(tr.retval, tr.choices["obs"])


def test_hierarchical_assess_nested_and_tuple_keys():
    nested = gv.choice_map({"x": 0.1, "sub": {"y": -0.4, "k": 1}, "obs": 0.9})
    flat = gv.choice_map({"x": 0.1, ("sub", "y"): -0.4, ("sub", "k"): 1, "obs": 0.9})
    ref = outer_logp(nested, 0.2)
    for cm in (nested, flat):
        logp, ret = outer.assess(cm, (0.2,))
        close(logp, ref)
        same(ret, 0.9)


def test_hierarchical_generate_nested_constraints():
    cons = gv.choice_map({"sub": {"y": 0.2}, "obs": 1.0})
    tr, w = outer.generate(KEY, cons, (0.2,))
    x, k = float(tr.choices["x"]), int(tr.choices["sub", "k"])
    same(tr.choices["sub", "y"], 0.2)
    close(w, norm_lp(0.2, x, 1.0) + norm_lp(1.0, 0.2 + k, 0.5))
    close(tr.score, outer_logp(tr.choices, 0.2))


def test_two_level_hierarchy():
    tr = outer2.simulate(KEY, ())
    assert tr.choices.addresses() == [
        ("o", "obs"), ("o", "sub", "k"), ("o", "sub", "y"), ("o", "x")
    ]
    close(tr.score, outer_logp(tr.choices["o"], 0.5))
    cons = gv.choice_map({("o", "sub", "k"): 1, ("o", "obs"): -0.3})
    tr2, w = outer2.generate(KEY, cons, ())
    y = float(tr2.choices["o", "sub", "y"])
    close(w, st.bernoulli.logpmf(1, 0.3) + norm_lp(-0.3, y + 1, 0.5))
    close(outer2.assess(tr2.choices, ())[0], tr2.score, rtol=1e-6)


# ======================================================================================
# 4. Combinators.


@gv.gen
def point(mu):
    return gv.normal(mu, 1.0) @ "v"


@gv.gen
def cloud(mu):
    return gv.vmap(point, in_axes=None, axis_size=5)(mu) @ "pts"


def test_vmap_contract_example():
    tr = cloud.simulate(KEY, (1.5,))
    v = tr.choices["pts", "v"]
    assert v.shape == (5,)
    assert len(np.unique(np.asarray(v))) == 5  # independent draws
    same(tr.retval, v)
    close(tr.score, norm_lp(v, 1.5, 1.0))
    close(cloud.assess(tr.choices, (1.5,))[0], tr.score, rtol=1e-6)
    obs = jnp.linspace(-1.0, 1.0, 5)
    tr2, w = cloud.generate(KEY, gv.choice_map({("pts", "v"): obs}), (1.5,))
    same(tr2.choices["pts", "v"], obs)
    close(w, norm_lp(obs, 1.5, 1.0))


@gv.gen
def obs_point(mu, s):
    v = gv.normal(mu, s) @ "v"
    c = gv.bernoulli(0.25) @ "c"
    return v + c


OBS_PLATE = gv.vmap(obs_point, in_axes=(0, None))


def test_vmap_mapped_and_unmapped_args_and_vectorized_generate():
    mus = jnp.array([-1.0, 0.0, 2.0, 3.0])
    tr = OBS_PLATE.simulate(KEY, (mus, 0.7))
    v, c = tr.choices["v"], tr.choices["c"]
    assert v.shape == c.shape == tr.retval.shape == (4,)
    assert jnp.issubdtype(c.dtype, jnp.integer)
    ref = norm_lp(v, np.asarray(mus), 0.7) + st.bernoulli.logpmf(np.asarray(c), 0.25).sum()
    close(tr.score, ref)
    close(tr.retval, v + c, rtol=1e-6)
    logp, ret = OBS_PLATE.assess(tr.choices, (mus, 0.7))
    close(logp, tr.score, rtol=1e-6)
    same(ret, tr.retval)
    cvals = jnp.array([1, 0, 0, 1], dtype=jnp.int32)
    tr2, w = OBS_PLATE.generate(KEY, gv.choice_map({"c": cvals}), (mus, 0.7))
    np.testing.assert_array_equal(tr2.choices["c"], cvals)
    close(w, st.bernoulli.logpmf(np.asarray(cvals), 0.25).sum())
    close(tr2.score, norm_lp(tr2.choices["v"], np.asarray(mus), 0.7)
          + st.bernoulli.logpmf(np.asarray(cvals), 0.25).sum())


@gv.gen
def rw_step(c, x):
    z = gv.normal(c + x, 1.0) @ "z"
    o = gv.normal(z, 0.5) @ "o"
    return z, o - z


RW = gv.scan(rw_step)
XS = jnp.linspace(-0.5, 0.5, 6)


def rw_logp(z, o, init, xs, only_obs=False) -> float:
    z, o, xs = (np.asarray(a, np.float64) for a in (z, o, xs))
    prev = np.concatenate([[init], z[:-1]])
    lo = norm_lp(o, z, 0.5)
    return lo if only_obs else lo + norm_lp(z, prev + xs, 1.0)


def test_scan_stacks_choices_and_returns_carry_and_ys():
    tr = RW.simulate(KEY, (0.3, XS))
    z, o = tr.choices["z"], tr.choices["o"]
    assert z.shape == o.shape == (6,)
    carry, ys = tr.retval
    same(carry, z[-1])
    close(ys, o - z, rtol=1e-6, atol=1e-6)
    close(tr.score, rw_logp(z, o, 0.3, XS))
    logp, (c2, ys2) = RW.assess(tr.choices, (0.3, XS))
    close(logp, tr.score, rtol=1e-6)
    same(c2, carry)
    same(ys2, ys)


def test_scan_generate_vectorized_constraints():
    obs = jnp.array([0.1, -0.2, 0.5, 0.0, 1.0, 0.7])
    tr, w = RW.generate(KEY, gv.choice_map({"o": obs}), (0.3, XS))
    same(tr.choices["o"], obs)
    close(w, rw_logp(tr.choices["z"], obs, 0.3, XS, only_obs=True))
    close(tr.score, rw_logp(tr.choices["z"], obs, 0.3, XS))


def test_scan_with_length_and_no_xs():
    @gv.gen
    def step(c, _):
        return gv.normal(c, 1.0) @ "z", None

    tr = gv.scan(step, length=4).simulate(KEY, (2.0, None))
    z = tr.choices["z"]
    assert z.shape == (4,)
    carry, ys = tr.retval
    same(carry, z[-1])
    assert ys is None
    close(tr.score, norm_lp(z, np.concatenate([[2.0], np.asarray(z)[:-1]]), 1.0))


def test_scan_at_an_address_inside_a_model():
    @gv.gen
    def ssm(init):
        return RW(init, XS) @ "steps"

    tr = ssm.simulate(KEY, (0.0,))
    assert tr.choices["steps", "z"].shape == (6,)
    assert tr.choices.addresses() == [("steps", "o"), ("steps", "z")]
    close(tr.score, rw_logp(tr.choices["steps", "z"], tr.choices["steps", "o"], 0.0, XS))


@gv.gen
def br_a(s):
    return gv.normal(0.0, s) @ "a"


@gv.gen
def br_b(s):
    n = gv.bernoulli(0.4) @ "n"
    return n.astype(jnp.float32) * s


@gv.gen
def br_c(s):
    return gv.normal(1.0, s) @ "a"  # shares "a" with br_a


@gv.gen
def mixture(flag, s):
    return gv.cond(flag, br_a, br_b)(s) @ "c"


@pytest.mark.parametrize("flag", [True, False])
def test_cond_both_branches(flag):
    tr = mixture.simulate(KEY, (flag, 0.8))
    assert tr.choices.addresses() == [("c", "a"), ("c", "n")]
    a, n = float(tr.choices["c", "a"]), int(tr.choices["c", "n"])
    if flag:
        assert n == 0 and a != 0.0
        close(tr.score, norm_lp(a, 0.0, 0.8))
        same(tr.retval, a)
    else:
        assert a == 0.0
        close(tr.score, st.bernoulli.logpmf(n, 0.4))
        close(tr.retval, n * 0.8, rtol=1e-6)
    close(mixture.assess(tr.choices, (flag, 0.8))[0], tr.score, rtol=1e-6)
    # A constraint on the taken branch is weighted; one on the untaken branch is not.
    tr2, w = mixture.generate(KEY, gv.choice_map({("c", "a"): 0.3}), (flag, 0.8))
    if flag:
        close(w, norm_lp(0.3, 0.0, 0.8))
        same(tr2.choices["c", "a"], 0.3)
    else:
        assert float(w) == 0.0
        close(tr2.score, st.bernoulli.logpmf(int(tr2.choices["c", "n"]), 0.4))


SWITCH3_SIM = jax.jit(lambda k, i: gv.switch(i, br_a, br_b, br_c).simulate(k, (0.5,)))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_switch_traced_index(index):
    tr = SWITCH3_SIM(KEY, index)
    assert tr.choices.addresses() == [("a",), ("n",)]
    a, n = float(tr.choices["a"]), int(tr.choices["n"])
    ref = [lambda: norm_lp(a, 0.0, 0.5), lambda: st.bernoulli.logpmf(n, 0.4),
           lambda: norm_lp(a, 1.0, 0.5)][index]()
    close(tr.score, ref)
    if index == 1:
        assert a == 0.0
    else:
        assert n == 0
    sw = gv.switch(index, br_a, br_b, br_c)
    close(sw.assess(tr.choices, (0.5,))[0], tr.score, rtol=1e-6)


def test_switch_assess_missing_choices_nan_only_for_taken_branch():
    only_a = gv.choice_map({"a": 0.25})
    lp_b, _ = gv.switch(1, br_a, br_b).assess(only_a, (0.5,))
    assert np.isnan(float(lp_b))
    lp_a, _ = gv.switch(0, br_a, br_b).assess(only_a, (0.5,))
    close(lp_a, norm_lp(0.25, 0.0, 0.5))
    jitted = jax.jit(lambda i: gv.switch(i, br_a, br_b).assess(only_a, (0.5,))[0])
    assert np.isnan(float(jitted(1)))
    close(jitted(0), norm_lp(0.25, 0.0, 0.5))


@gv.gen
def layer(c, _):
    pts = gv.vmap(point, in_axes=None, axis_size=3)(c) @ "pts"
    return jnp.mean(pts), None


def test_vmap_inside_scan():
    sc = gv.scan(layer, length=4)
    tr = sc.simulate(KEY, (1.0, None))
    v = np.asarray(tr.choices["pts", "v"], np.float64)
    assert v.shape == (4, 3)
    means = np.concatenate([[1.0], v.mean(axis=1)[:-1]])
    close(tr.score, sum(norm_lp(v[t], means[t], 1.0) for t in range(4)))
    close(tr.retval[0], v[-1].mean(), rtol=1e-5)
    close(sc.assess(tr.choices, (1.0, None))[0], tr.score, rtol=1e-6)
    obs = jnp.ones((4, 3))
    _, w = sc.generate(KEY, gv.choice_map({("pts", "v"): obs}), (1.0, None))
    close(w, sum(norm_lp(np.ones(3), m, 1.0) for m in (1.0, 1.0, 1.0, 1.0)))


def test_scan_inside_vmap_with_vectorized_constraints():
    plate = gv.vmap(RW, in_axes=(0, None))
    inits = jnp.array([-1.0, 0.0, 1.0])
    tr = plate.simulate(KEY, (inits, XS))
    z, o = tr.choices["z"], tr.choices["o"]
    assert z.shape == o.shape == (3, 6)
    carry, ys = tr.retval
    assert carry.shape == (3,) and ys.shape == (3, 6)
    close(tr.score, sum(rw_logp(z[i], o[i], float(inits[i]), XS) for i in range(3)))
    close(plate.assess(tr.choices, (inits, XS))[0], tr.score, rtol=1e-6)
    obs = jnp.arange(18.0).reshape(3, 6) / 10
    tr2, w = plate.generate(KEY, gv.choice_map({"o": obs}), (inits, XS))
    z2 = tr2.choices["z"]
    same(tr2.choices["o"], obs)
    close(w, sum(rw_logp(z2[i], obs[i], float(inits[i]), XS, only_obs=True) for i in range(3)))


def test_cond_inside_vmap():
    plate = gv.vmap(mixture, in_axes=(0, None))
    flags = jnp.array([True, False, True, False, False])
    tr = plate.simulate(KEY, (flags, 0.8))
    a, n = np.asarray(tr.choices["c", "a"]), np.asarray(tr.choices["c", "n"])
    f = np.asarray(flags)
    assert a.shape == n.shape == (5,)
    assert np.all(a[~f] == 0) and np.all(a[f] != 0) and np.all(n[f] == 0)
    close(tr.score, norm_lp(a[f], 0.0, 0.8) + st.bernoulli.logpmf(n[~f], 0.4).sum())
    close(tr.retval, np.where(f, a, n * 0.8), rtol=1e-6)
    close(plate.assess(tr.choices, (flags, 0.8))[0], tr.score, rtol=1e-6)
    obs = jnp.linspace(-1, 1, 5)
    tr2, w = plate.generate(KEY, gv.choice_map({("c", "a"): obs}), (flags, 0.8))
    close(w, norm_lp(np.asarray(obs)[f], 0.0, 0.8))
    same(tr2.choices["c", "a"], np.where(f, obs, 0.0))


# ======================================================================================
# 5. Under jax.jit, jax.vmap and jax.grad.


def _leaves_close(a, b, rtol=1e-6):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        close(x, y, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("gf,args", [
    (chain, (0.4,)), (cloud, (1.5,)), (RW, (0.3, XS)), (mixture, (False, 0.8)),
], ids=["chain", "vmap", "scan", "cond"])
def test_jit_matches_eager(gf, args):
    eager = gf.simulate(KEY, args)
    jitted = jax.jit(gf.simulate)(KEY, args)
    _leaves_close(eager.choices, jitted.choices)
    close(jitted.score, eager.score, rtol=1e-6)
    _leaves_close(eager.retval, jitted.retval)
    close(jax.jit(gf.assess)(eager.choices, args)[0], eager.score, rtol=1e-6)
    cons = eager.choices.filter(gv.select(eager.choices.addresses()[0]))
    tr_e, w_e = gf.generate(KEY, cons, args)
    tr_j, w_j = jax.jit(gf.generate)(KEY, cons, args)
    close(w_j, w_e, rtol=1e-6)
    _leaves_close(tr_e.choices, tr_j.choices)


def test_vmap_over_keys():
    keys = jax.random.split(KEY, 4)
    trs = jax.vmap(lambda k: outer.simulate(k, (0.2,)))(keys)
    assert trs.choices["sub", "y"].shape == (4,)
    assert len(np.unique(np.asarray(trs.choices["x"]))) == 4
    for i, k in enumerate(keys):
        one = outer.simulate(k, (0.2,))
        close(trs.score[i], one.score, rtol=1e-6)
        close(trs.choices["x"][i], one.choices["x"], rtol=1e-6)
    ws = jax.vmap(lambda k: chain.generate(k, gv.choice_map({"z": 1.5}), (0.4,))[1])(keys)
    for i, k in enumerate(keys):
        close(ws[i], chain.generate(k, gv.choice_map({"z": 1.5}), (0.4,))[1], rtol=1e-6)


@gv.gen
def iid(mu, s):
    return gv.normal(mu, s) @ "x"


def test_grad_of_assess_matches_analytic():
    x = jnp.array([0.3, -1.2, 2.0, 0.7])
    cm = gv.choice_map({"x": x})
    mu, s = 0.5, 1.3
    gmu, gs = jax.grad(lambda m, s_: iid.assess(cm, (m, s_))[0], argnums=(0, 1))(mu, s)
    xn = np.asarray(x, np.float64)
    close(gmu, np.sum(xn - mu) / s**2)
    close(gs, np.sum(-1 / s + (xn - mu) ** 2 / s**3))


def test_grad_through_combinator_assess():
    tr = RW.simulate(KEY, (0.3, XS))
    g = jax.grad(lambda init: RW.assess(tr.choices, (init, XS))[0])(0.3)
    close(g, float(tr.choices["z"][0]) - 0.3 - float(XS[0]))
    mus = jnp.array([-1.0, 0.0, 2.0, 3.0])
    tr2 = OBS_PLATE.simulate(KEY, (mus, 0.7))
    gm = jax.grad(lambda m: OBS_PLATE.assess(tr2.choices, (m, 0.7))[0])(mus)
    close(gm, (np.asarray(tr2.choices["v"]) - np.asarray(mus)) / 0.49)


@gv.gen
def latent_obs(mu, s):
    x = gv.normal(mu, 1.0) @ "x"
    return gv.normal(x, s) @ "y"


def test_grad_of_generate_weight_wrt_args():
    cons = gv.choice_map({"y": 0.9})
    mu, s = 0.2, 0.6
    weight = lambda m, s_: latent_obs.generate(KEY, cons, (m, s_))[1]
    gmu, gs = jax.grad(weight, argnums=(0, 1))(mu, s)
    x = float(latent_obs.generate(KEY, cons, (mu, s))[0].choices["x"])
    # x = mu + eps (reparameterized draw), so d log N(y; x, s) / d mu = (y - x) / s^2.
    close(gmu, (0.9 - x) / s**2, rtol=1e-4)
    close(gs, -1 / s + (0.9 - x) ** 2 / s**3, rtol=1e-4)
    close(jax.jit(jax.grad(weight))(mu, s), gmu, rtol=1e-5)


# ======================================================================================
# 6. Error messages.


@gv.gen
def dup():
    gv.normal(0.0, 1.0) @ "x"
    gv.normal(0.0, 1.0) @ "x"


def test_error_duplicate_address_names_both_sites():
    with pytest.raises(ValueError, match="used twice") as e:
        dup.simulate(KEY, ())
    msg = str(e.value)
    first, second = lines_of(dup, '@ "x"')
    assert msg.count(THIS_FILE) == 2
    assert f"{THIS_FILE}:{first}" in msg and f"{THIS_FILE}:{second}" in msg
    assert "'x'" in msg and "`dup`" in msg
    for run in (lambda: dup.assess(gv.choice_map({"x": 0.0}), ()),
                lambda: dup.generate(KEY, gv.choice_map({}), ())):
        with pytest.raises(ValueError, match="used twice"):
            run()


def test_error_duplicate_address_dist_and_subcall_and_loop():
    @gv.gen
    def clash():
        gv.normal(0.0, 1.0) @ "sub"
        inner(0.0) @ "sub"

    with pytest.raises(ValueError, match="'sub' is used twice"):
        clash.simulate(KEY, ())

    @gv.gen
    def loop():
        for _ in range(2):
            gv.normal(0.0, 1.0) @ "x"

    with pytest.raises(ValueError, match="used twice") as e:
        loop.simulate(KEY, ())
    (line,) = lines_of(loop, '@ "x"')
    assert str(e.value).count(f"{THIS_FILE}:{line}") == 2


def test_error_constraint_never_visited():
    with pytest.raises(ValueError, match="'typo' is never visited") as e:
        chain.generate(KEY, gv.choice_map({"typo": 1.0}), (0.0,))
    assert "'x', 'y', 'z'" in str(e.value)
    with pytest.raises(ValueError, match=r"\('sub', 'typo'\) is never visited") as e:
        outer.generate(KEY, gv.choice_map({("sub", "typo"): 1.0}), (0.0,))
    assert "'y', 'k'" in str(e.value)
    with pytest.raises(ValueError, match="'typo'"):
        chain.assess(gv.choice_map(VALUES) | gv.choice_map({"typo": 1.0}), (0.0,))


def test_error_nested_constraint_under_a_single_choice():
    # Previously ignored silently (weight 0, "x" sampled from the prior).
    with pytest.raises(ValueError, match=r"\('x', 'y'\) is never visited"):
        chain.generate(KEY, gv.choice_map({"x": {"y": 1.0}}), (0.0,))
    with pytest.raises(ValueError, match=r"\('sub', 'y', 'deep'\)"):
        outer.generate(KEY, gv.choice_map({("sub", "y", "deep"): 1.0}), (0.0,))


def test_error_value_where_a_submap_is_expected():
    cm = gv.choice_map({"x": 0.0, "sub": 1.0, "obs": 0.0})
    with pytest.raises(ValueError, match="holds a value"):
        outer.assess(cm, (0.0,))


def test_error_assess_missing_address():
    with pytest.raises(KeyError, match="required address 'y'") as e:
        chain.assess(gv.choice_map({"x": 0.0, "z": 1.0}), (0.0,))
    assert "'x', 'z'" in str(e.value)
    with pytest.raises(KeyError, match="required address 'k'"):
        outer.assess(gv.choice_map({"x": 0.0, ("sub", "y"): 0.0, "obs": 0.0}), (0.0,))


@gv.gen
def typed():
    gv.bernoulli(0.3) @ "b"
    gv.mv_normal_diag(jnp.zeros(3), jnp.ones(3)) @ "v"


def test_error_wrong_dtype_for_discrete_value():
    cm = gv.choice_map({"b": 1.0, "v": jnp.zeros(3)})
    with pytest.raises(TypeError, match="integer") as e:
        typed.assess(cm, ())
    assert "'b'" in str(e.value)
    with pytest.raises(TypeError, match="integer"):
        typed.generate(KEY, gv.choice_map({"b": 0.0}), ())
    ok = gv.choice_map({"b": 1, "v": jnp.zeros(3)})
    close(typed.assess(ok, ())[0], np.log(0.3) + norm_lp(np.zeros(3), 0, 1))


def test_error_wrong_shape_for_vector_value():
    cm = gv.choice_map({"b": 1, "v": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"'v' has shape \(2,\).*\(3,\)"):
        typed.assess(cm, ())
    with pytest.raises(ValueError, match=r"\(3,\)"):
        typed.generate(KEY, gv.choice_map({"v": jnp.zeros(4)}), ())


def undecorated():
    return gv.normal(0.0, 1.0) @ "h"


def test_error_non_generative_with_matmul():
    @gv.gen
    def uses_int():
        return (lambda: 1)() @ "x"

    @gv.gen
    def uses_plain_result():
        return undecorated() @ "h2"

    @gv.gen
    def uses_function_object():
        return undecorated @ "h3"

    for gf in (uses_int, uses_plain_result, uses_function_object):
        with pytest.raises(TypeError, match="@gv.gen") as e:
            gf.simulate(KEY, ())
        (line,) = lines_of(gf.fn, "@ \"h") or lines_of(gf.fn, '@ "x"')
        assert f"{THIS_FILE}:{line}" in str(e.value)
        assert gf.name in str(e.value)
    # through a sub-generative function and a combinator, the message still says it
    @gv.gen
    def wraps():
        return gv.vmap(uses_int, in_axes=None, axis_size=2)() @ "w"

    with pytest.raises(TypeError, match="@gv.gen"):
        wraps.simulate(KEY, ())


def test_error_non_string_address():
    @gv.gen
    def bad_addr():
        return gv.normal(0.0, 1.0) @ 3

    with pytest.raises(TypeError, match="addresses are strings"):
        bad_addr.simulate(KEY, ())


def test_error_matmul_outside_generative_function():
    with pytest.raises(RuntimeError, match="outside a generative function"):
        gv.normal(0.0, 1.0) @ "x"
    with pytest.raises(RuntimeError, match="@gv.gen"):
        inner(0.0) @ "sub"


@pytest.mark.parametrize("gf,args", [
    (chain, 0.4), (chain, [0.4]), (OBS_PLATE, None), (RW, [0.3, XS]), (mixture, 1),
])
def test_error_args_not_a_tuple(gf, args):
    with pytest.raises(TypeError, match="must be a tuple"):
        gf.simulate(KEY, args)
    with pytest.raises(TypeError, match="must be a tuple"):
        gf.generate(KEY, gv.choice_map({}), args)
    with pytest.raises(TypeError, match="must be a tuple"):
        gf.assess(gv.choice_map({}), args)


def test_error_choice_map_merge_overlap():
    with pytest.raises(ValueError, match="'x' is in both"):
        gv.choice_map({"x": 1.0}) | gv.choice_map({"x": 2.0})


def test_error_vmap_axis_size():
    with pytest.raises(ValueError, match="axis_size"):
        gv.vmap(point, in_axes=None).simulate(KEY, (0.0,))
    with pytest.raises(ValueError, match="axis_size=3"):
        gv.vmap(point, axis_size=3).simulate(KEY, (jnp.zeros(4),))
    with pytest.raises(ValueError, match="leading axis must have size 4"):
        OBS_PLATE.assess(gv.choice_map({"v": jnp.zeros(3), "c": jnp.zeros(3, jnp.int32)}),
                         (jnp.zeros(4), 1.0))


def test_error_combinator_construction_and_misuse():
    for make in (lambda: gv.vmap(undecorated), lambda: gv.scan(undecorated),
                 lambda: gv.cond(True, undecorated, br_a), lambda: gv.switch(0, br_a, 3)):
        with pytest.raises(TypeError, match="@gv.gen"):
            make()
    with pytest.raises(TypeError, match=r"@gv.gen decorates a function"):
        gv.gen(3)

    @gv.gen
    def not_a_pair(c, x):
        return gv.normal(c, 1.0) @ "z"

    with pytest.raises(TypeError, match=r"\(carry, y\)"):
        gv.scan(not_a_pair).simulate(KEY, (0.0, XS))
    with pytest.raises(TypeError, match=r"\(init_carry, xs\)"):
        RW.simulate(KEY, (0.0,))
    with pytest.raises(ValueError, match="length=n"):
        gv.scan(rw_step).simulate(KEY, (0.0, None))

    @gv.gen
    def vec_a(s):
        return gv.normal(jnp.zeros(2), s) @ "a"

    with pytest.raises(ValueError, match="'a' has shape/dtype"):
        gv.switch(0, br_a, vec_a).simulate(KEY, (1.0,))
    with pytest.raises(ValueError, match="'zz' is in no branch"):
        gv.switch(0, br_a, br_b).generate(KEY, gv.choice_map({"zz": 1.0}), (1.0,))
    with pytest.raises(TypeError, match="expected a ChoiceMap"):
        chain.generate(KEY, [("z", 1.0)], (0.0,))
