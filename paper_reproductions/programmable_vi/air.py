"""Attend-Infer-Repeat (Eslami et al., 2016) as in Becker et al. (PLDI 2024), Table 2 / Fig. 7.

Data: multi-object images built from scikit-learn's shipped 8x8 digits (the paper uses
multi-MNIST; MNIST is not shipped and the run has to fit on 2 CPU cores): 0-2 digits pasted
at integer offsets on a 20x20 canvas without overlap, the object count recorded.

Model (`air_model`): up to 3 steps; z_pres ~ Bernoulli, z_where ~ Normal (log-scale, shift x,
shift y), z_what ~ Normal; a decoder MLP draws an 8x8 object and a spatial transformer
(bilinear sampling) writes it onto the canvas; the image is Normal around the canvas. Once a
z_pres is 0 the later steps are off: every later site's log density is multiplied by the
running product of z_pres (`gv.scale`), the masking of the standard AIR implementation.

Guide (`air_guide`): a GRU over the steps sees an embedding of the image and the previous
step's latents and proposes z_pres and z_where; an encoder MLP of the attended 8x8 crop
(inverse spatial transformer) proposes z_what.

Estimators for the z_pres sites (z_where and z_what are reparameterized): REINFORCE with a
learned, image-dependent baseline; ENUM; MVD; IWAE(K) + REINFORCE (with baseline); IWAE(K) +
MVD; a hybrid (ENUM on the first step, MVD on the later ones); reweighted wake-sleep
(p_wake for the model + q_wake for the guide). NumPyro's TraceGraph_ELBO, TraceEnum_ELBO and
RenyiELBO run on the same networks and data where NumPyro can express them.

Criteria (fixed before the run, computed in `_claims`):
1. Table 2: for every estimator that both genvi and NumPyro express, genvi's median time per
   compiled update step <= NumPyro's (same batch, same networks, both jitted, timed in
   alternation, compile excluded).
2. Fig. 7: ENUM or MVD reaches a higher held-out ELBO than REINFORCE (with baseline) at equal
   wall-clock: the mean of the held-out ELBO evaluations in the last 20% of the common
   training-time budget, averaged over the seeds, is higher for ENUM or for MVD.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.ndimage import map_coordinates

import genvi as gv

sg = jax.lax.stop_gradient

# ---------------------------------------------------------------------------------------
# Sizes (the full run; `--quick` shrinks the networks and the data)
CANVAS = 20        # canvas side (pixels)
WIN = 8            # object window side (the digits' own size)
STEPS = 3          # AIR steps
SIGMA = 0.3        # observation noise around the canvas
S0 = WIN / CANVAS  # object scale in normalized canvas coordinates
WHERE_PRIOR_SCALE = np.array([1.0, 0.5, 0.5], np.float32)


def where_to_affine(z_where):
    """(scale, shift_y, shift_x) of the window in normalized canvas coordinates [-1, 1]."""
    return S0 * jnp.exp(0.1 * z_where[0]), z_where[1], z_where[2]


def _pixel_centers(n):
    return (2.0 * jnp.arange(n) + 1.0) / n - 1.0


def write_object(obj, z_where):
    """Spatial transformer: the WIN x WIN object drawn onto the CANVAS x CANVAS canvas."""
    s, ty, tx = where_to_affine(z_where)
    c = _pixel_centers(CANVAS)
    rows = (WIN * ((c - ty) / s + 1.0) - 1.0) / 2.0
    cols = (WIN * ((c - tx) / s + 1.0) - 1.0) / 2.0
    rr, cc = jnp.meshgrid(rows, cols, indexing="ij")
    return map_coordinates(obj, [rr, cc], order=1, mode="constant", cval=0.0)


def read_window(img, z_where):
    """Inverse spatial transformer: the WIN x WIN crop of the canvas at z_where."""
    s, ty, tx = where_to_affine(z_where)
    u = _pixel_centers(WIN)
    rows = (CANVAS * (s * u + ty + 1.0) - 1.0) / 2.0
    cols = (CANVAS * (s * u + tx + 1.0) - 1.0) / 2.0
    rr, cc = jnp.meshgrid(rows, cols, indexing="ij")
    return map_coordinates(img, [rr, cc], order=1, mode="constant", cval=0.0)


# ---------------------------------------------------------------------------------------
# Data


def make_data(n, seed=0, max_objects=2):
    """`n` canvases with 0..max_objects non-overlapping digits; returns (images (n, C*C) in
    [0, 1], counts (n,))."""
    from sklearn.datasets import load_digits

    digits = load_digits().images.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, CANVAS, CANVAS), np.float32)
    counts = rng.integers(0, max_objects + 1, size=n)
    span = CANVAS - WIN
    for i, k in enumerate(counts):
        boxes = []
        while len(boxes) < k:
            oy, ox = rng.integers(0, span + 1, size=2)
            if all(abs(oy - by) >= WIN or abs(ox - bx) >= WIN for by, bx in boxes):
                boxes.append((oy, ox))
        for oy, ox in boxes:
            d = digits[rng.integers(len(digits))]
            imgs[i, oy:oy + WIN, ox:ox + WIN] += d
    return np.clip(imgs, 0.0, 1.0).reshape(n, -1), counts.astype(np.int32)


# ---------------------------------------------------------------------------------------
# Networks (plain parameter dicts, so that NumPyro can register the same leaves)


def _dense(key, n_in, n_out, scale=1.0, bias=0.0):
    return {"w": scale * jax.random.normal(key, (n_in, n_out)) / math.sqrt(n_in),
            "b": jnp.full((n_out,), bias, jnp.float32)}


def _apply(layer, x):
    return x @ layer["w"] + layer["b"]


def init_params(key, sizes):
    """{"model": theta, "guide": phi, "baseline": psi}."""
    d, h, e, r = sizes["what"], sizes["hidden"], sizes["embed"], sizes["rnn"]
    ks = iter(jax.random.split(key, 16))
    npix, nwin = CANVAS * CANVAS, WIN * WIN
    theta = {
        "dec1": _dense(next(ks), d, h),
        "dec2": _dense(next(ks), h, nwin, bias=-2.0),
        "pres_logit": jnp.zeros((STEPS,)),
    }
    rnn_in = e + 3 + d + 1
    phi = {
        "embed": _dense(next(ks), npix, e),
        "gru_x": _dense(next(ks), rnn_in, 3 * r),
        "gru_h": _dense(next(ks), r, 3 * r),
        "pres": _dense(next(ks), r, 1, scale=0.1, bias=1.0),
        "where": _dense(next(ks), r, 6, scale=0.1),
        "enc1": _dense(next(ks), nwin, h),
        "enc2": _dense(next(ks), h, 2 * d, scale=0.1),
    }
    psi = {"b1": _dense(next(ks), npix, 32), "b2": _dense(next(ks), 32, 1)}
    return {"model": theta, "guide": phi, "baseline": psi}


def decode(theta, what):
    hid = jax.nn.relu(_apply(theta["dec1"], what))
    return jax.nn.sigmoid(_apply(theta["dec2"], hid)).reshape(WIN, WIN)


def gru(phi, hstate, x):
    gx = _apply(phi["gru_x"], x)
    gh = _apply(phi["gru_h"], hstate)
    r = hstate.shape[-1]
    z = jax.nn.sigmoid(gx[:r] + gh[:r])
    rt = jax.nn.sigmoid(gx[r:2 * r] + gh[r:2 * r])
    n = jnp.tanh(gx[2 * r:] + rt * gh[2 * r:])
    return (1.0 - z) * n + z * hstate


def guide_step(phi, hstate, emb, prev, live):
    """One RNN step: new state, z_pres logit (forced off once a step was off), z_where
    loc and scale."""
    prev_where, prev_what = prev
    x = jnp.concatenate([emb, prev_where, prev_what, jnp.reshape(live, (1,))])
    hstate = gru(phi, hstate, x)
    logit = _apply(phi["pres"], hstate)[0]
    # Off steps are masked out of every density; proposing 0 there (logit -20) also keeps
    # their score terms at zero, as masking does in Pyro's and NumPyro's AIR.
    logit = jnp.where(live > 0, logit, -20.0)
    w = _apply(phi["where"], hstate)
    return hstate, logit, w[:3], jax.nn.softplus(w[3:] - 1.0) + 1e-3


def encode(phi, crop):
    hid = jax.nn.relu(_apply(phi["enc1"], crop.reshape(-1)))
    out = _apply(phi["enc2"], hid)
    d = out.shape[0] // 2
    return out[:d], jax.nn.softplus(out[d:]) + 1e-3


def baseline_value(psi, img):
    return _apply(psi["b2"], jax.nn.relu(_apply(psi["b1"], img)))[0]


# ---------------------------------------------------------------------------------------
# The model and the guide, as generative functions


@gv.gen
def air_model(theta):
    d = theta["dec1"]["w"].shape[0]
    canvas = jnp.zeros((CANVAS, CANVAS))
    live = 1.0
    for t in range(STEPS):
        pres = gv.scale(gv.bernoulli(logits=theta["pres_logit"][t]), live) @ f"pres{t}"
        live = live * pres
        where = gv.scale(gv.normal(jnp.zeros(3), WHERE_PRIOR_SCALE), live) @ f"where{t}"
        what = gv.scale(gv.normal(jnp.zeros(d), jnp.ones(d)), live) @ f"what{t}"
        canvas = canvas + live * write_object(decode(theta, what), where)
    gv.normal(canvas.reshape(-1), SIGMA) @ "obs"
    return canvas


@gv.gen
def air_guide(img, phi, pres_est):
    """`pres_est`: one estimator (or None for the default) per z_pres site."""
    d = phi["enc2"]["w"].shape[1] // 2
    emb = jax.nn.relu(_apply(phi["embed"], img))
    hstate = jnp.zeros(phi["gru_h"]["w"].shape[0])
    prev = (jnp.zeros(3), jnp.zeros(d))
    live = 1.0
    for t in range(STEPS):
        hstate, logit, wloc, wscale = guide_step(phi, hstate, emb, prev, live)
        pres_d = gv.bernoulli(logits=logit)
        if pres_est[t] is not None:
            pres_d = pres_d.using(pres_est[t])
        pres = gv.scale(pres_d, live) @ f"pres{t}"
        live = live * pres
        where = gv.scale(gv.normal(wloc, wscale), live) @ f"where{t}"
        crop = read_window(img.reshape(CANVAS, CANVAS), where)
        cloc, cscale = encode(phi, crop)
        what = gv.scale(gv.normal(cloc, cscale), live) @ f"what{t}"
        prev = (where, what)


def guide_mode_count(phi, img):
    """Object count from the guide's most likely z_pres (greedy: z_pres = [p > 1/2], the
    other latents at their means)."""
    d = phi["enc2"]["w"].shape[1] // 2
    emb = jax.nn.relu(_apply(phi["embed"], img))
    hstate = jnp.zeros(phi["gru_h"]["w"].shape[0])
    prev = (jnp.zeros(3), jnp.zeros(d))
    live = jnp.float32(1.0)
    count = jnp.int32(0)
    for _ in range(STEPS):
        hstate, logit, wloc, _ = guide_step(phi, hstate, emb, prev, live)
        live = live * (logit > 0)
        count = count + (live > 0).astype(jnp.int32)
        cloc, _ = encode(phi, read_window(img.reshape(CANVAS, CANVAS), wloc))
        prev = (wloc, cloc)
    return count


# ---------------------------------------------------------------------------------------
# Estimator variants: name -> how the objective of one image is built

REINFORCE, ENUM, MVD = gv.adev.reinforce, gv.adev.enum, gv.adev.mvd


def _variant_specs(k):
    """name -> (objective kind, z_pres estimators per step (b = the baseline's value), baseline?)"""
    bl = "baseline"
    return {
        "REINFORCE": ("elbo", (bl,) * STEPS, True),
        "ENUM": ("elbo", (ENUM,) * STEPS, False),
        "MVD": ("elbo", (MVD,) * STEPS, False),
        f"IWAE(K={k})+REINFORCE": (("iwelbo", k), (bl,) * STEPS, True),
        f"IWAE(K={k})+MVD": (("iwelbo", k), (MVD,) * STEPS, False),
        "Hybrid (ENUM step 1, MVD later)": ("elbo", (ENUM,) + (MVD,) * (STEPS - 1), False),
        f"RWS(K={k})": (("rws", k), (None,) * STEPS, False),
        # Timing only (Table 2): REINFORCE without a baseline, as NumPyro's TraceGraph_ELBO.
        "REINFORCE (no baseline)": ("elbo", (REINFORCE,) * STEPS, False),
    }


def make_image_objective(kind, ests, use_baseline):
    """objective(key, params, img) -> scalar to maximize, for one image."""
    if kind == "elbo":
        obj = gv.vi.elbo(air_model, air_guide)
    elif kind[0] == "iwelbo":
        obj = gv.vi.iwelbo(air_model, air_guide, kind[1])
    elif kind[0] == "rws":
        pw, qw = gv.vi.p_wake(air_model, air_guide, kind[1]), gv.vi.q_wake(air_model, air_guide, kind[1])
    else:
        raise ValueError(kind)

    def one(key, params, img):
        data = gv.choice_map({"obs": img})
        margs = (params["model"],)
        if kind != "elbo" and kind[0] == "rws":
            gargs = (img, params["guide"], ests)
            k1, k2 = jax.random.split(key)
            return pw(k1, data, margs, gargs) + qw(k2, data, margs, gargs)
        if use_baseline:
            b = baseline_value(params["baseline"], img)
            e = tuple(gv.adev.baseline(REINFORCE, b) if x == "baseline" else x for x in ests)
            value = obj(key, data, margs, (img, params["guide"], e))
            # the baseline regresses on the objective's value (its own, separate loss)
            return value - (b - sg(value)) ** 2 + sg((b - sg(value)) ** 2)
        return obj(key, data, margs, (img, params["guide"], ests))

    return one


def batch_objective(one):
    """Mean over a batch of images; each image is its own expectation program (a vmap of
    the objective call), so ENUM/MVD continuations never cross images."""

    def f(key, params, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jnp.mean(jax.vmap(one, in_axes=(0, None, 0))(keys, params, batch))

    return f


_eval_elbo = gv.vi.elbo(air_model, air_guide)


def heldout_elbo(params, imgs, key):
    """Mean single-sample ELBO over held-out images (sampled z_pres, common random numbers)."""
    keys = jax.random.split(key, imgs.shape[0])
    f = lambda k, img: _eval_elbo(k, gv.choice_map({"obs": img}), (params["model"],),
                                  (img, params["guide"], (None,) * STEPS))
    return jnp.mean(jax.vmap(f)(keys, imgs))


def make_step(objective, optimizer, data, batch_size):
    """A jitted update step that draws its own minibatch (with replacement)."""
    n = data.shape[0]

    def loss(params, key, batch):
        return -objective(key, params, batch)

    @jax.jit
    def step(params, opt_state, key):
        kb, ko = jax.random.split(key)
        idx = jax.random.randint(kb, (batch_size,), 0, n)
        val, grads = jax.value_and_grad(loss)(params, ko, data[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, -val

    return step
