"""The two data sets: rendered 16x16 shapes with attributes and nuisance, and sklearn digits.

Attribute vectors `x` are float arrays (one-hot groups and bits); images `y` are float
vectors in roughly [0, 1]. CelebA and CUB (the paper's data) are not available offline.
"""

from __future__ import annotations

import itertools

import numpy as np

SIDE = 16
SHAPES = ("square", "circle", "triangle")
INTENSITY = {0: 0.55, 1: 1.0}  # low, high
HALF_SIZE = {0: 2.6, 1: 4.6}  # small, large: inradius-like half extent in pixels
PIXEL_NOISE = 0.03  # the data's pixel noise, so that images have a density on R^256
HELD_OUT = (2, 1, 1)  # (triangle, high, large) is never shown to the generative models


def shape_combos():
    """All 12 (shape, intensity, size) combinations."""
    return list(itertools.product(range(3), range(2), range(2)))


def shape_attrs(shape, intensity, size):
    """The attribute vector: one-hot shape (3), intensity bit, size bit."""
    shape, intensity, size = (np.asarray(v) for v in (shape, intensity, size))
    onehot = np.eye(3, dtype=np.float32)[shape]
    return np.concatenate([onehot, intensity[..., None], size[..., None]], -1).astype(np.float32)


def render(shape, intensity, size, cx, cy, angle):
    """Anti-aliased renders (n, 256) from a soft signed distance: pixel = I * clip(0.5 - d)."""
    shape, intensity, size = (np.asarray(v) for v in (shape, intensity, size))
    n = shape.shape[0]
    g = np.arange(SIDE, dtype=np.float32) + 0.5
    px, py = np.meshgrid(g, g)  # image rows are y
    dx = px[None] - cx[:, None, None]
    dy = py[None] - cy[:, None, None]
    r = np.vectorize(HALF_SIZE.get)(size).astype(np.float32)[:, None, None]

    def polygon(k):
        d = np.full((n, SIDE, SIDE), -np.inf, np.float32)
        for j in range(k):
            t = angle[:, None, None] + 2 * np.pi * j / k
            d = np.maximum(d, dx * np.cos(t) + dy * np.sin(t))
        return d

    circle = np.sqrt(dx**2 + dy**2) - r * 1.1
    square = polygon(4) - r
    triangle = polygon(3) - r * 0.75
    d = np.where((shape == 0)[:, None, None], square,
                 np.where((shape == 1)[:, None, None], circle, triangle))
    level = np.vectorize(INTENSITY.get)(intensity).astype(np.float32)[:, None, None]
    img = level * np.clip(0.5 - d, 0.0, 1.0)
    return img.reshape(n, SIDE * SIDE).astype(np.float32)


def sample_shapes(rng, combos, n):
    """n shapes with attributes drawn uniformly from `combos`; position and rotation are
    nuisance. Returns (x, y_noisy, y_clean, attribute labels (n, 3))."""
    combos = np.asarray(combos)
    lab = combos[rng.integers(len(combos), size=n)]
    shape, intensity, size = lab.T
    margin = np.vectorize(HALF_SIZE.get)(size) * 1.15 + 0.5
    cx = rng.uniform(margin, SIDE - margin).astype(np.float32)
    cy = rng.uniform(margin, SIDE - margin).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
    clean = render(shape, intensity, size, cx, cy, angle)
    noisy = clean + PIXEL_NOISE * rng.standard_normal(clean.shape).astype(np.float32)
    return shape_attrs(shape, intensity, size), noisy, clean, lab


def shapes_dataset(seed, n_train, n_test, n_classifier):
    """Training/test sets without the held-out combination, a test set of it, and a
    separate real set (all 12 combinations) for the independent classifiers."""
    rng = np.random.default_rng(seed)
    seen = [c for c in shape_combos() if c != HELD_OUT]
    tr = sample_shapes(rng, seen, n_train)
    te = sample_shapes(rng, seen, n_test)
    ho = sample_shapes(rng, [HELD_OUT], n_test)
    clf = sample_shapes(rng, shape_combos(), n_classifier)
    clf_test = sample_shapes(rng, shape_combos(), n_classifier // 4)
    return {"train": tr, "test": te, "held_out": ho, "clf": clf, "clf_test": clf_test,
            "seen": seen}


# -- digits ----------------------------------------------------------------------------


def digits_dataset(seed, test_fraction=0.25):
    """sklearn's 8x8 digits: x = class one-hot + a "thick" bit (ink mass above the class's
    median on the training split); y = (v + u) / 17 with u ~ U(0, 1) (dequantized)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    v = d.data.astype(np.float32)
    c = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(c))
    n_test = int(round(test_fraction * len(c)))
    te_idx, tr_idx = perm[:n_test], perm[n_test:]
    ink = v.sum(1)
    median = np.array([np.median(ink[tr_idx][c[tr_idx] == k]) for k in range(10)], np.float32)
    thick = (ink > median[c]).astype(np.int64)
    x = np.concatenate([np.eye(10, dtype=np.float32)[c], thick[:, None].astype(np.float32)], 1)
    y = (v + rng.uniform(size=v.shape).astype(np.float32)) / 17.0
    clean = (v + 0.5) / 17.0
    lab = np.stack([c, thick], 1)

    def part(idx):
        return x[idx], y[idx], clean[idx], lab[idx]

    return {"train": part(tr_idx), "test": part(te_idx), "median_ink": median,
            "combos": list(itertools.product(range(10), range(2)))}


def digits_attrs(cls, thick):
    cls, thick = np.asarray(cls), np.asarray(thick)
    return np.concatenate([np.eye(10, dtype=np.float32)[cls],
                           thick[..., None].astype(np.float32)], -1)


def digits_thickness(images, cls, median_ink):
    """The thick bit by its definition: ink mass (in the 0..16 scale) above the class median.
    Images are on the (v + 0.5) / 17 scale of `clean`."""
    v = np.clip(np.asarray(images) * 17.0 - 0.5, 0.0, 16.0)
    return (v.sum(-1) > median_ink[np.asarray(cls)]).astype(np.int64)
