"""The AIR part of the programmable-VI reproduction: data, the NumPyro port of the model
and guide, and the claims' logic (the quick end-to-end run is in test_reproductions.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from paper_reproductions.programmable_vi import air

SIZES = {"what": 3, "hidden": 8, "embed": 8, "rnn": 8}


def test_make_data_counts_and_range():
    imgs, counts = air.make_data(40, seed=3)
    assert imgs.shape == (40, air.CANVAS * air.CANVAS) and counts.shape == (40,)
    assert set(np.unique(counts)) <= {0, 1, 2}
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    assert np.all(imgs[counts == 0] == 0.0) and np.all(imgs[counts > 0].max(axis=1) > 0.0)


@pytest.mark.parametrize("seed,off_from", [(0, None), (1, 1), (2, 0)])
def test_numpyro_port_has_the_same_densities(seed, off_from):
    """genvi's and NumPyro's AIR give the same log p and log q on the same choices
    (the masking by the running product of z_pres included)."""
    pytest.importorskip("numpyro")
    from numpyro.infer.util import log_density

    imgs, _ = air.make_data(3, seed=seed)
    img = jnp.asarray(imgs[seed % 3])
    params = air.init_params(jax.random.key(seed), SIZES)
    tr = air.air_guide.simulate(jax.random.key(10 + seed), (img, params["guide"], (None,) * air.STEPS))
    choices = {a: tr.choices[a] for t in range(air.STEPS) for a in (f"pres{t}", f"where{t}", f"what{t}")}
    if off_from is not None:  # steps from `off_from` on are off: their sites are masked
        for t in range(off_from, air.STEPS):
            choices[f"pres{t}"] = jnp.zeros_like(choices[f"pres{t}"])
    gargs = (img, params["guide"], (None,) * air.STEPS)
    logq, _ = air.air_guide.assess(gv.choice_map(choices), gargs)
    logp, _ = air.air_model.assess(gv.choice_map({**choices, "obs": img}), (params["model"],))
    model, guide = air._numpyro_programs(False)
    np_choices = {k: jnp.asarray(v, jnp.float32) for k, v in choices.items()}
    # jitted as in the run: NumPyro's `handlers.scale` refuses a concrete scale of 0 (an off
    # step) outside a trace, while a traced one is taken as is
    dens = jax.jit(lambda fn, c: log_density(fn, (img, params), {}, c)[0], static_argnums=0)
    np_logp, np_logq = dens(model, np_choices), dens(guide, np_choices)
    np.testing.assert_allclose(float(np_logp), float(logp), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(float(np_logq), float(logq), rtol=1e-5, atol=1e-3)


def test_claims_follow_the_criteria():
    cfg = {"seeds": [0, 1], "budget_s": 10.0}
    table2 = {"REINFORCE (no baseline)": {"genvi_ms": 1.0, "numpyro_ms": 2.0},
              "ENUM": {"genvi_ms": 2.0, "numpyro_ms": "not run (funsor)"},
              "REINFORCE": {"genvi_ms": 1.0, "numpyro_ms": "not expressible"}}
    fig7 = {"REINFORCE": {"heldout_elbo_last20": 5.0}, "ENUM": {"heldout_elbo_last20": 4.0},
            "MVD": {"heldout_elbo_last20": 6.0}}
    claims = air._claims(list(table2), table2, fig7, cfg, None)
    assert [c["verdict"] for c in claims] == ["reproduced", "reproduced"]
    table2["REINFORCE (no baseline)"]["numpyro_ms"] = 0.5
    fig7["MVD"]["heldout_elbo_last20"] = 5.0  # a tie is not higher
    claims = air._claims(list(table2), table2, fig7, cfg, None)
    assert [c["verdict"] for c in claims] == ["not reproduced", "not reproduced"]


def test_last_fraction_mean_uses_the_end_of_the_budget():
    curve = [(0.0, 0, -100.0), (5.0, 10, 1.0), (8.5, 17, 2.0), (10.0, 20, 4.0)]
    assert air._last_fraction_mean(curve, 10.0) == 3.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separable_spatial_transformer_is_bilinear_sampling(seed):
    """`write_object` / `read_window` (two matmuls with hat weights) equal bilinear sampling
    with zeros outside (`map_coordinates(order=1, cval=0)`) on the same grid."""
    from jax.scipy.ndimage import map_coordinates

    k1, k2 = jax.random.split(jax.random.key(seed))
    obj = jax.random.uniform(k1, (air.WIN, air.WIN))
    img = jax.random.uniform(k2, (air.CANVAS, air.CANVAS))
    z_where = jnp.array([0.3, -0.2, 0.25]) * (seed + 1)
    s, ty, tx = air.where_to_affine(z_where)
    c, u = air._pixel_centers(air.CANVAS), air._pixel_centers(air.WIN)
    grids = {
        "write": (obj, (air.WIN * ((c - ty) / s + 1.0) - 1.0) / 2.0,
                  (air.WIN * ((c - tx) / s + 1.0) - 1.0) / 2.0),
        "read": (img, (air.CANVAS * (s * u + ty + 1.0) - 1.0) / 2.0,
                 (air.CANVAS * (s * u + tx + 1.0) - 1.0) / 2.0),
    }
    got = {"write": air.write_object(obj, z_where), "read": air.read_window(img, z_where)}
    for name, (src, rows, cols) in grids.items():
        rr, cc = jnp.meshgrid(rows, cols, indexing="ij")
        want = map_coordinates(src, [rr, cc], order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want), atol=1e-5)
