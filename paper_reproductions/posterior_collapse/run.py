"""Reproduction of Dang, Tran, Nguyen, Ho, "Beyond Vanilla Variational Autoencoders: Detecting
Posterior Collapse in Conditional and Hierarchical Variational Autoencoders" (ICLR 2024).

Linear CVAEs and two-level Markov linear HVAEs (learnable and fixed second-level variance)
are trained with genvi's Monte Carlo beta-ELBO (and, for the synthetic CVAE, with the
analytic KL too); their singular values and collapsed-dimension counts are compared with
the closed-form global optima of the paper (`theory.py`). ReLU versions check the trends.
Every sweep is one vmapped, compiled `gv.fit` (`train.py`).

The criteria (`CRITERIA`, `_claims`) were written before any number was seen.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from paper_reproductions import _common
from paper_reproductions.posterior_collapse import model as M
from paper_reproductions.posterior_collapse import theory as T
from paper_reproductions.posterior_collapse import train as TR

SLUG = "posterior_collapse"
PAPER = ("H. Dang, T. Tran, T. Nguyen, N. Ho. Beyond Vanilla Variational Autoencoders: "
         "Detecting Posterior Collapse in Conditional and Hierarchical Variational "
         "Autoencoders. ICLR 2024 (arXiv 2306.05023)")

# Written before the run; see README "Criteria".
CRITERIA = {
    "rel_err_max": 1e-2,         # mean |lambda_emp - lambda*| <= 1e-2 * max lambda*, per family
    "mc_vs_analytic_max": 1e-2,  # mean |lambda_MC - lambda_analytic| <= 1e-2 * max lambda*
    "count_agree_min": 0.95,     # collapse counts equal theory in >= 95% of linear settings
    "count_margin": 0.02,        # ... every mismatch has a theta within 2% of a threshold
    "collapse_margin": 0.01,     # trained value counts as collapsed when below the theory's
                                 # value at theta = 1.01 * threshold
    "au_threshold": 0.01,        # active unit: Var_x(E_q[z_j]) > 0.01
    "trend_tol": 0.5,            # seed-mean AU may rise by at most 0.5 between neighbours
}
PARTS = ("linear", "nonlinear")


def config(quick: bool) -> dict:
    if quick:
        return {
            "quick": True, "seed": 0,
            "synth": {"d": 5, "n": 500, "spectrum": [2.0, 1.4, 0.9, 0.6, 0.3],
                      "cs": [0.0, 0.5], "betas": [0.5], "steps": 300, "batch": 250,
                      "lr": 0.03},
            "digits": None,
            "mhvae": {"d0": 6, "d1": 5, "d2": 5, "n": 500,
                      "theta": [2.0, 1.5, 1.0, 0.7, 0.4, 0.2], "sigma1": 0.5,
                      "sigma2_fixed": [0.5], "betas1": [1.0], "betas2": [0.5],
                      "eta_decs": [1.0], "steps": 300, "batch": 250, "lr": 0.03},
            "nonlinear": None,
        }
    return {
        "quick": False, "seed": 0,
        "synth": {"d": 5, "n": 2000, "spectrum": [2.0, 1.4, 0.9, 0.6, 0.3],
                  "cs": [0.0, 0.125, 0.25, 0.5, 1.0], "betas": [0.1, 0.5, 1.0, 2.0],
                  "steps": 2000, "batch": 500, "lr": 0.03},
        "digits": {"d_z": 16, "betas": [round(0.1 * i, 1) for i in range(1, 51)],
                   "steps": 2000, "batch": 256, "lr": 0.03},
        "mhvae": {"d0": 6, "d1": 5, "d2": 5, "n": 2000,
                  "theta": [2.0, 1.5, 1.0, 0.7, 0.4, 0.2], "sigma1": 0.5,
                  "sigma2_fixed": [0.5, 1.0], "betas1": [0.1, 0.5, 1.0, 2.0],
                  "betas2": [0.1, 0.5, 1.0, 2.0], "eta_decs": [0.5, 1.0],
                  "steps": 2000, "batch": 500, "lr": 0.03},
        "nonlinear": {"hidden": 64, "seeds": [0, 1], "steps": 3000, "batch": 128, "lr": 3e-3,
                      "cvae_dz": 16, "betas": [0.25, 0.5, 1.0, 2.0, 4.0],
                      "eta_decs": [0.5, 0.71, 1.0, 1.41, 2.0],
                      "cs": [0.0, 0.125, 0.25, 0.5, 1.0], "c_beta": 0.5,
                      "mhvae_d1": 16, "mhvae_d2": 16, "mhvae_betas2": [0.5, 1.0, 2.0],
                      "sigma2_fixed": [0.5, 1.0]},
    }


# -- data ---------------------------------------------------------------------------------


def synth_pair(c, n, spectrum, rng):
    """y ~ N(0, diag(spectrum)), x = c y + sqrt(1 - c^2) n with n distributed as y."""
    s = np.sqrt(np.asarray(spectrum))
    y = rng.standard_normal((n, len(s))) * s
    noise = rng.standard_normal((n, len(s))) * s
    return c * y + np.sqrt(1.0 - c**2) * noise, y


def digits_halves():
    """Left 4 columns (x, 32-d) and right 4 columns (y, 32-d) of the scikit-learn digits,
    centred and divided by one global standard deviation."""
    from sklearn.datasets import load_digits

    img = load_digits().data.reshape(-1, 8, 8)
    x, y = img[:, :, :4].reshape(-1, 32), img[:, :, 4:].reshape(-1, 32)
    x, y = x - x.mean(0), y - y.mean(0)
    s = np.sqrt(np.concatenate([x, y], 1).var(0).mean())
    return x / s, y / s


def digits_full():
    from sklearn.datasets import load_digits

    x = load_digits().data
    x = x - x.mean(0)
    return x / np.sqrt(x.var(0).mean())


def mhvae_data(n, theta, rng):
    """x = P diag(theta) n with a random rotation P, so sqrt(eig E[x x^T]) ~ theta."""
    d = len(theta)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (rng.standard_normal((n, d)) * np.asarray(theta)) @ q.T


def _f32(a):
    return jnp.asarray(np.asarray(a), jnp.float32)


def _hyp(rows):
    return tuple(_f32(v) for v in zip(*rows, strict=True))


def _sv(a):
    return np.linalg.svd(np.asarray(a, np.float64), compute_uv=False)


# -- comparison with theory ----------------------------------------------------------------


def _count_check(values_emp, theta, value_of_theta, thr, margin):
    """(empirical count, theory count, theta near the threshold) for one quantity."""
    eps = T.collapse_epsilon(value_of_theta, thr, margin)
    n_emp = int(np.sum(values_emp > eps))
    n_th = int(np.sum(theta > thr)) if thr > 0 else len(theta)
    near = bool(thr > 0 and np.isfinite(thr)
                and np.any(np.abs(theta / thr - 1.0) <= CRITERIA["count_margin"]))
    return n_emp, n_th, near


def eval_cvae(p, X, Y, beta, eta_enc, eta_dec, d_z):
    theta = T.cvae_theta(X, Y)
    opt = T.cvae_optimum(theta, beta, eta_enc, eta_dec, d_z)
    lam = _sv(p["U1"])[:d_z]
    thr = beta * eta_dec**2
    n_emp, n_th, near = _count_check(
        lam, T._top(theta, d_z), lambda t: T.cvae_lambda_of_theta(t, beta, eta_enc, eta_dec),
        thr, CRITERIA["collapse_margin"])
    return {"theta": T._top(theta, d_z).tolist(), "lambda_star": opt["lambda"].tolist(),
            "lambda_emp": lam.tolist(), "abs_err": float(np.mean(np.abs(lam - opt["lambda"]))),
            "count_emp": n_emp, "count_theory": n_th, "near_threshold": near,
            "threshold": thr}


def eval_mhvae(p, X, hyper, learnable, d1):
    beta1, beta2, eta_enc, eta_dec, sigma1, sigma2 = hyper
    theta = T.hvae_theta(X)
    Sxx = X.T @ X / X.shape[0]
    w, v = np.linalg.eigh(Sxx)
    s_half = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    lam_e = _sv(np.asarray(p["W1"], np.float64) @ s_half)
    om_e = _sv(p["U2"])

    def opt(th):
        if learnable:
            return T.mhvae_learnable(th, sigma1, eta_enc, eta_dec, beta1, beta2, d1)
        return T.mhvae_fixed(th, sigma1, sigma2, eta_enc, eta_dec, beta1, beta2, d1)

    o = opt(theta)
    th_top = T._top(theta, d1)
    out = {"theta": th_top.tolist(), "lambda_star": o["lambda"].tolist(),
           "omega_star": o["omega"].tolist(), "lambda_emp": lam_e.tolist(),
           "omega_emp": om_e.tolist(),
           "abs_err_lambda": float(np.mean(np.abs(lam_e - o["lambda"]))),
           "abs_err_omega": float(np.mean(np.abs(om_e - o["omega"])))}
    ok, near = True, False
    for name in ("lambda", "omega"):
        f = (lambda t, name=name: float(opt(np.array([t]))[name][0]))
        thr = T.threshold_theta(f)
        emp = lam_e if name == "lambda" else om_e
        n_emp, n_th, nr = _count_check(emp, th_top, f, thr, CRITERIA["collapse_margin"])
        out[f"count_emp_{name}"], out[f"count_theory_{name}"] = n_emp, n_th
        out[f"threshold_{name}"] = thr
        ok &= n_emp == n_th
        near |= nr
    out["count_emp"] = (out["count_emp_lambda"], out["count_emp_omega"])
    out["count_theory"] = (out["count_theory_lambda"], out["count_theory_omega"])
    out["near_threshold"] = near
    return out


# -- the linear experiments -----------------------------------------------------------------


def run_synth_cvae(cfg, key):
    s = cfg["synth"]
    rng = np.random.default_rng(cfg["seed"])
    members, Xs, Ys = [], [], []
    for c in s["cs"]:
        x, y = synth_pair(c, s["n"], s["spectrum"], rng)
        for b in s["betas"]:
            members.append((c, b))
            Xs.append(x)
            Ys.append(y)
    hyp = _hyp([(b, 1.0, 1.0) for _, b in members])
    d = s["d"]
    params = TR.stack([M.cvae_init(jax.random.fold_in(key, i), d, d, d)
                       for i in range(len(members))])
    data = (_f32(np.stack(Xs, 1)), _f32(np.stack(Ys, 1)))
    out = {}
    for kl in ("mc", "analytic"):
        t0 = time.perf_counter()
        p, hist = TR.train(TR.cvae_member_objective(kl == "analytic"), params, hyp, data,
                           steps=s["steps"], lr=s["lr"], key=jax.random.fold_in(key, 99),
                           batch_size=s["batch"], shared_data=False)
        rows = [dict(c=c, beta=b, **eval_cvae(jax.tree.map(lambda a, i=i: a[i], p),
                                              Xs[i], Ys[i], b, 1.0, 1.0, d))
                for i, (c, b) in enumerate(members)]
        out[kl] = {"settings": rows, "train_s": time.perf_counter() - t0}
        print(f"[synth cvae {kl}] {len(members)} settings in {out[kl]['train_s']:.0f} s; "
              f"mean |err| {np.mean([r['abs_err'] for r in rows]):.4f}", flush=True)
    return out


def run_digits_cvae(cfg, key):
    s = cfg["digits"]
    X, Y = digits_halves()
    d_z = s["d_z"]
    betas = s["betas"]
    params = TR.stack([M.cvae_init(jax.random.fold_in(key, i), 32, 32, d_z)
                       for i in range(len(betas))])
    t0 = time.perf_counter()
    p, _ = TR.train(TR.cvae_member_objective(False), params, _hyp([(b, 1.0, 1.0) for b in betas]),
                    (_f32(X), _f32(Y)), steps=s["steps"], lr=s["lr"],
                    key=jax.random.fold_in(key, 98), batch_size=s["batch"])
    rows = [dict(beta=b, **eval_cvae(jax.tree.map(lambda a, i=i: a[i], p), X, Y, b, 1.0, 1.0,
                                     d_z)) for i, b in enumerate(betas)]
    train_s = time.perf_counter() - t0
    print(f"[digits cvae] {len(betas)} settings in {train_s:.0f} s; mean |err| "
          f"{np.mean([r['abs_err'] for r in rows]):.4f}", flush=True)
    return {"settings": rows, "train_s": train_s,
            "theta": T.cvae_theta(X, Y)[:d_z].tolist()}


def run_mhvae(cfg, key):
    s = cfg["mhvae"]
    X = mhvae_data(s["n"], s["theta"], np.random.default_rng(cfg["seed"] + 1))
    d0, d1, d2 = s["d0"], s["d1"], s["d2"]
    grid = [(b1, b2, e) for b1 in s["betas1"] for b2 in s["betas2"] for e in s["eta_decs"]]
    out = {}
    for learnable in (True, False):
        sig2s = [None] if learnable else s["sigma2_fixed"]
        members = [(b1, b2, e, s2) for s2 in sig2s for b1, b2, e in grid]
        hyp_rows = [(b1, b2, 1.0, e, s["sigma1"], 1.0 if s2 is None else s2)
                    for b1, b2, e, s2 in members]
        params = TR.stack([M.mhvae_init(jax.random.fold_in(key, i % len(grid)), d0, d1, d2,
                                        learnable) for i in range(len(members))])
        t0 = time.perf_counter()
        p, _ = TR.train(TR.mhvae_member_objective(False), params, _hyp(hyp_rows), (_f32(X),),
                        steps=s["steps"], lr=s["lr"], key=jax.random.fold_in(key, 97),
                        batch_size=s["batch"])
        rows = [dict(beta1=m[0], beta2=m[1], eta_dec=m[2], sigma2=m[3],
                     **eval_mhvae(jax.tree.map(lambda a, i=i: a[i], p), X, h, learnable, d1))
                for i, (m, h) in enumerate(zip(members, hyp_rows, strict=True))]
        name = "learnable" if learnable else "fixed"
        out[name] = {"settings": rows, "train_s": time.perf_counter() - t0}
        print(f"[mhvae {name}] {len(members)} settings in {out[name]['train_s']:.0f} s; "
              f"mean |err| lambda {np.mean([r['abs_err_lambda'] for r in rows]):.4f} "
              f"omega {np.mean([r['abs_err_omega'] for r in rows]):.4f}", flush=True)
    out["theta"] = T.hvae_theta(X)[:d1].tolist()
    return out


# -- the nonlinear trend check ---------------------------------------------------------------


def _active_units(mu):
    var = np.var(np.asarray(mu, np.float64), axis=0)
    return int(np.sum(var > CRITERIA["au_threshold"])), var.tolist()


def run_nonlinear(cfg, key):
    s = cfg["nonlinear"]
    h, seeds = s["hidden"], s["seeds"]
    out = {}
    # (a) digits halves: beta sweep at eta_dec = 1 and eta_dec sweep at beta = 1
    X, Y = digits_halves()
    pairs = sorted({(b, 1.0) for b in s["betas"]} | {(1.0, e) for e in s["eta_decs"]})
    members = [(b, e, sd) for b, e in pairs for sd in seeds]
    params = TR.stack([M.relu_cvae_init(jax.random.fold_in(key, 1000 + sd), 32, 32,
                                        s["cvae_dz"], h) for _, _, sd in members])
    t0 = time.perf_counter()
    p, _ = TR.train(TR.cvae_member_objective(False, relu=True), params,
                    _hyp([(b, 1.0, e) for b, e, _ in members]), (_f32(X), _f32(Y)),
                    steps=s["steps"], lr=s["lr"], key=jax.random.fold_in(key, 96),
                    batch_size=s["batch"])
    enc = jax.jit(jax.vmap(jax.vmap(M.relu_cvae_encode, in_axes=(0, 0, None)),
                           in_axes=(None, None, 0)))
    mu, sd = enc(_f32(X), _f32(Y), p)
    rows = []
    for i, (b, e, seed) in enumerate(members):
        au, var = _active_units(mu[i])
        kl = 0.5 * np.mean(np.asarray(mu[i]) ** 2 + np.asarray(sd[i]) ** 2 - 1
                           - 2 * np.log(np.asarray(sd[i])), axis=0)
        rows.append({"beta": b, "eta_dec": e, "seed": seed, "au": au,
                     "kl_per_dim": kl.tolist()})
    out["digits_cvae"] = {"settings": rows, "train_s": time.perf_counter() - t0}
    print(f"[relu cvae digits] {len(members)} in {out['digits_cvae']['train_s']:.0f} s",
          flush=True)
    # (b) synthetic correlation sweep
    sy = cfg["synth"]
    rng = np.random.default_rng(cfg["seed"] + 2)
    data = {c: synth_pair(c, sy["n"], sy["spectrum"], rng) for c in s["cs"]}
    members = [(c, sd) for c in s["cs"] for sd in seeds]
    d = sy["d"]
    params = TR.stack([M.relu_cvae_init(jax.random.fold_in(key, 2000 + sd), d, d, d, h)
                       for _, sd in members])
    Xs = np.stack([data[c][0] for c, _ in members], 1)
    Ys = np.stack([data[c][1] for c, _ in members], 1)
    t0 = time.perf_counter()
    p, _ = TR.train(TR.cvae_member_objective(False, relu=True), params,
                    _hyp([(s["c_beta"], 1.0, 1.0)] * len(members)), (_f32(Xs), _f32(Ys)),
                    steps=s["steps"], lr=s["lr"], key=jax.random.fold_in(key, 95),
                    batch_size=s["batch"], shared_data=False)
    enc2 = jax.jit(jax.vmap(jax.vmap(M.relu_cvae_encode, in_axes=(0, 0, None)),
                            in_axes=(1, 1, 0)))
    mu, _ = enc2(_f32(Xs), _f32(Ys), p)
    rows = [{"c": c, "seed": seed, "au": _active_units(mu[i])[0],
             "theory_count_linear": int(np.sum(T.cvae_theta(data[c][0], data[c][1])
                                               > s["c_beta"]))}
            for i, (c, seed) in enumerate(members)]
    out["synth_cvae"] = {"settings": rows, "train_s": time.perf_counter() - t0}
    print(f"[relu cvae synth] {len(members)} in {out['synth_cvae']['train_s']:.0f} s",
          flush=True)
    # (c) ReLU MHVAE on the digits: learnable vs fixed Sigma2, beta1 = 1, beta2 sweep
    Xd = digits_full()
    d1, d2 = s["mhvae_d1"], s["mhvae_d2"]
    res = []
    for learnable in (True, False):
        sig2s = [None] if learnable else s["sigma2_fixed"]
        members = [(b2, s2, sd) for s2 in sig2s for b2 in s["mhvae_betas2"] for sd in seeds]
        params = TR.stack([M.relu_mhvae_init(jax.random.fold_in(key, 3000 + sd), 64, d1, d2,
                                             h, learnable) for _, _, sd in members])
        hyp = _hyp([(1.0, b2, 1.0, 1.0, 1.0, 1.0 if s2 is None else s2)
                    for b2, s2, _ in members])
        t0 = time.perf_counter()
        p, _ = TR.train(TR.mhvae_member_objective(False, relu=True), params, hyp, (_f32(Xd),),
                        steps=s["steps"], lr=s["lr"], key=jax.random.fold_in(key, 94),
                        batch_size=s["batch"])

        def codes(x, q):
            mu1, _ = M.relu_mhvae_encode(x, q)
            return mu1, M.relu_mhvae_encode2(mu1, q, 1.0)[0]

        mu1, mu2 = jax.jit(jax.vmap(jax.vmap(codes, in_axes=(0, None)), in_axes=(None, 0)))(
            _f32(Xd), p)
        for i, (b2, s2, seed) in enumerate(members):
            res.append({"learnable": learnable, "beta2": b2, "sigma2": s2, "seed": seed,
                        "au_z1": _active_units(mu1[i])[0], "au_z2": _active_units(mu2[i])[0]})
        print(f"[relu mhvae {'learnable' if learnable else 'fixed'}] {len(members)} in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    out["digits_mhvae"] = {"settings": res}
    return out


# -- claims -------------------------------------------------------------------------------


def _verdict(ok):
    return "reproduced" if ok else "not reproduced"


def _rel_err(rows, emp="lambda_emp", star="lambda_star"):
    err = np.mean([np.abs(np.asarray(r[emp]) - np.asarray(r[star])) for r in rows])
    scale = max(max(r[star]) for r in rows)
    return float(err / scale) if scale > 0 else float("inf"), float(scale)


def _seed_mean(rows, key, value="au"):
    vals = {}
    for r in rows:
        vals.setdefault(r[key], []).append(r[value])
    return {k: float(np.mean(v)) for k, v in sorted(vals.items())}


def _au_sweeps(nl):
    """Seed-mean active units of the ReLU CVAE along its three sweeps: beta (eta_dec = 1)
    and eta_dec (beta = 1) on digits, the correlation c on synthetic data."""
    rows = nl["digits_cvae"]["settings"]
    return (_seed_mean([r for r in rows if r["eta_dec"] == 1.0], "beta"),
            _seed_mean([r for r in rows if r["beta"] == 1.0], "eta_dec"),
            _seed_mean(nl["synth_cvae"]["settings"], "c"))


def _non_increasing(means):
    v = list(means.values())
    return all(b <= a + CRITERIA["trend_tol"] for a, b in zip(v, v[1:], strict=False))


def _claims(res):
    claims, tol = [], CRITERIA["rel_err_max"]
    lin = res.get("linear")
    if lin is not None:
        fams = {"synthetic CVAE, Monte Carlo KL": lin["synth_cvae"]["mc"]["settings"],
                "synthetic CVAE, analytic KL": lin["synth_cvae"]["analytic"]["settings"]}
        if lin.get("digits_cvae") is not None:
            fams["digits-halves CVAE, Monte Carlo KL"] = lin["digits_cvae"]["settings"]
        for name, rows in fams.items():
            rel, scale = _rel_err(rows)
            claims.append({
                "claim": f"{name}: the trained singular values of U1 equal the closed-form "
                         "global optimum lambda_i* = sqrt(max(0, theta_i - beta eta_dec^2))"
                         " / eta_enc (Theorem 2)",
                "criterion": f"mean over settings and dimensions of |lambda_emp - lambda*| <= "
                             f"{tol} * max lambda*",
                "measured": {"mean_abs_err_over_max_lambda": rel, "max_lambda_star": scale,
                             "settings": len(rows),
                             "worst_setting_abs_err": max(r["abs_err"] for r in rows)},
                "verdict": _verdict(rel <= tol)})
        mc, an = lin["synth_cvae"]["mc"]["settings"], lin["synth_cvae"]["analytic"]["settings"]
        scale = max(max(r["lambda_star"] for r in mc))
        diff = float(np.mean([np.abs(np.asarray(a["lambda_emp"]) - np.asarray(b["lambda_emp"]))
                              for a, b in zip(mc, an, strict=True)]) / scale)
        claims.append({
            "claim": "the Monte Carlo KL and the analytic KL estimators of genvi reach the same "
                     "optimum (synthetic CVAE, same initialisation and data)",
            "criterion": f"mean |lambda_MC - lambda_analytic| <= "
                         f"{CRITERIA['mc_vs_analytic_max']} * max lambda*",
            "measured": {"mean_abs_diff_over_max_lambda": diff},
            "verdict": _verdict(diff <= CRITERIA["mc_vs_analytic_max"])})
        for name in ("learnable", "fixed"):
            rows = lin["mhvae"][name]["settings"]
            rl, sl = _rel_err(rows)
            ro, so = _rel_err(rows, "omega_emp", "omega_star")
            thm = "Theorem 3" if name == "learnable" else "Theorem 5"
            claims.append({
                "claim": f"linear two-level MHVAE, {name} Sigma2: the trained singular values "
                         f"of V1 = W1 P_A Phi^(1/2) and of U2 equal the closed-form optimum "
                         f"({thm})",
                "criterion": f"mean |emp - theory| <= {tol} * max theory, for lambda and for "
                             "omega separately",
                "measured": {"lambda_mean_abs_err_over_max": rl, "omega_mean_abs_err_over_max": ro,
                             "max_lambda_star": sl, "max_omega_star": so,
                             "settings": len(rows)},
                "verdict": _verdict(rl <= tol and ro <= tol)})
        # counts, pooled over every linear setting
        pool = []
        for fam, rows in fams.items():
            if "analytic" in fam:
                continue
            pool += [(fam, r) for r in rows]
        for name in ("learnable", "fixed"):
            pool += [(f"mhvae {name}", r) for r in lin["mhvae"][name]["settings"]]
        agree = [tuple(np.atleast_1d(r["count_emp"])) == tuple(np.atleast_1d(r["count_theory"]))
                 for _, r in pool]
        bad = [(f, r) for (f, r), a in zip(pool, agree, strict=True) if not a]
        frac = float(np.mean(agree))
        far = [f for f, r in bad if not r["near_threshold"]]
        claims.append({
            "claim": "the number of non-collapsed (active) dimensions of the trained linear "
                     "models equals the theory's #{theta_i above the collapse threshold}",
            "criterion": f"equal in >= {CRITERIA['count_agree_min']:.0%} of settings, and every "
                         f"mismatch has some theta_i within {CRITERIA['count_margin']:.0%} of "
                         "its threshold",
            "measured": {"agree": int(sum(agree)), "settings": len(agree), "fraction": frac,
                         "mismatches": [{"family": f, **{k: r[k] for k in r if k in (
                             "c", "beta", "beta1", "beta2", "eta_dec", "sigma2", "count_emp",
                             "count_theory", "near_threshold")}} for f, r in bad],
                         "mismatches_far_from_threshold": len(far)},
            "verdict": _verdict(frac >= CRITERIA["count_agree_min"] and not far)})
        # learnable vs fixed Sigma2 (trained counts of collapsed z2 directions)
        L = {(r["beta1"], r["beta2"], r["eta_dec"]): r for r in lin["mhvae"]["learnable"]["settings"]}
        d2 = cfg_d2 = len(next(iter(L.values()))["omega_emp"])
        comp = []
        for r in lin["mhvae"]["fixed"]["settings"]:
            lr_ = L[(r["beta1"], r["beta2"], r["eta_dec"])]
            comp.append({"beta1": r["beta1"], "beta2": r["beta2"], "eta_dec": r["eta_dec"],
                         "sigma2": r["sigma2"],
                         "collapsed_learnable": d2 - lr_["count_emp_omega"],
                         "collapsed_fixed": cfg_d2 - r["count_emp_omega"]})
        ok = all(c["collapsed_learnable"] >= c["collapsed_fixed"] for c in comp)
        claims.append({
            "claim": "linear MHVAE: a learnable Sigma2 collapses at least as many z2 directions "
                     "(zero singular values of U2) as a fixed Sigma2 = sigma2^2 I, sigma2 <= "
                     "eta_enc",
            "criterion": "collapsed_learnable >= collapsed_fixed in every (beta1, beta2, eta_dec,"
                         " sigma2) setting",
            "measured": {"settings": len(comp),
                         "holds": int(sum(c["collapsed_learnable"] >= c["collapsed_fixed"]
                                          for c in comp)),
                         "strictly_more": int(sum(c["collapsed_learnable"] > c["collapsed_fixed"]
                                                  for c in comp))},
            "verdict": _verdict(ok)})
    nl = res.get("nonlinear")
    if nl is not None:
        by_beta, by_eta, by_c = _au_sweeps(nl)
        ok = _non_increasing(by_beta) and _non_increasing(by_eta) and _non_increasing(by_c)
        claims.append({
            "claim": "ReLU CVAE: active units do not increase with beta, eta_dec or the "
                     "input-output correlation c",
            "criterion": f"seed-mean AU (Var_x E_q[z_j] > {CRITERIA['au_threshold']}) "
                         f"non-increasing along each sweep (a rise of at most "
                         f"{CRITERIA['trend_tol']} allowed)",
            "measured": {"au_vs_beta": by_beta, "au_vs_eta_dec": by_eta, "au_vs_c": by_c},
            "verdict": _verdict(ok)})
        mh = nl["digits_mhvae"]["settings"]
        learn = _seed_mean([r for r in mh if r["learnable"]], "beta2", "au_z2")
        comp, ok = {}, True
        for s2 in sorted({r["sigma2"] for r in mh if not r["learnable"]}):
            fixed = _seed_mean([r for r in mh if not r["learnable"] and r["sigma2"] == s2],
                               "beta2", "au_z2")
            comp[f"fixed_sigma2_{s2}"] = fixed
            ok &= all(learn[b] <= fixed[b] for b in fixed)
        claims.append({
            "claim": "ReLU MHVAE: a learnable Sigma2 collapses at least as many z2 units as a "
                     "fixed one",
            "criterion": "seed-mean z2 AU with learnable Sigma2 <= with fixed Sigma2, for every"
                         " beta2 and fixed sigma2",
            "measured": {"au_z2_learnable": learn, **comp},
            "verdict": _verdict(ok)})
    return claims


# -- figures and README ----------------------------------------------------------------------


def _figures(res, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lin = res.get("linear")
    if lin is None:
        return []
    files = []
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    for kl, mk in (("mc", "o"), ("analytic", "x")):
        rows = lin["synth_cvae"][kl]["settings"]
        ax[0].scatter([v for r in rows for v in r["lambda_star"]],
                      [v for r in rows for v in r["lambda_emp"]], marker=mk, s=18,
                      label=f"{kl} KL")
    ax[0].set(title="synthetic linear CVAE", xlabel="theory lambda*", ylabel="trained")
    for name, mk in (("learnable", "o"), ("fixed", "x")):
        rows = lin["mhvae"][name]["settings"]
        ax[2].scatter([v for r in rows for v in r["lambda_star"]],
                      [v for r in rows for v in r["lambda_emp"]], marker=mk, s=14,
                      label=f"V1, {name} Sigma2")
        ax[2].scatter([v for r in rows for v in r["omega_star"]],
                      [v for r in rows for v in r["omega_emp"]], marker=mk, s=14,
                      label=f"U2, {name} Sigma2")
    ax[2].set(title="linear MHVAE", xlabel="theory", ylabel="trained")
    for a in (ax[0], ax[2]):
        m = a.get_xlim()[1]
        a.plot([0, m], [0, m], "k:", lw=1)
        a.legend(fontsize=8)
    if lin.get("digits_cvae") is not None:
        rows = lin["digits_cvae"]["settings"]
        b = [r["beta"] for r in rows]
        ls = np.array([r["lambda_star"] for r in rows])
        le = np.array([r["lambda_emp"] for r in rows])
        for j in range(ls.shape[1]):
            ax[1].plot(b, ls[:, j], "-", color=f"C{j % 10}", lw=1)
            ax[1].plot(b, le[:, j], ".", color=f"C{j % 10}", ms=3)
        ax[1].set(title="digits halves CVAE (lines: theory, dots: trained)", xlabel="beta",
                  ylabel="singular values of U1")
    fig.tight_layout()
    path = os.path.join(out, "singular_values.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    files.append(path)

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    if lin.get("digits_cvae") is not None:
        rows = lin["digits_cvae"]["settings"]
        ax[0].step([r["beta"] for r in rows], [r["count_theory"] for r in rows], where="mid",
                   label="theory #{theta_i > beta eta_dec^2}")
        ax[0].plot([r["beta"] for r in rows], [r["count_emp"] for r in rows], "o", ms=3,
                   label="trained")
        ax[0].set(title="digits halves CVAE", xlabel="beta", ylabel="non-collapsed dims")
        ax[0].legend(fontsize=8)
    rows = lin["synth_cvae"]["mc"]["settings"]
    for j, c in enumerate(sorted({r["c"] for r in rows})):
        rr = [r for r in rows if r["c"] == c]
        ax[1].plot([r["beta"] for r in rr], [r["count_theory"] for r in rr], "-", color=f"C{j}",
                   label=f"c={c} theory")
        ax[1].plot([r["beta"] for r in rr], [r["count_emp"] for r in rr], "o", color=f"C{j}")
    ax[1].set(title="synthetic CVAE (lines: theory, dots: trained)", xlabel="beta",
              ylabel="non-collapsed dims", xscale="log")
    ax[1].legend(fontsize=7)
    nl = res.get("nonlinear")
    if nl is not None:
        bb, ee, cc = _au_sweeps(nl)
        ax[2].plot(list(bb), list(bb.values()), "o-", label="digits, vs beta (eta_dec=1)")
        ax[2].plot(list(ee), list(ee.values()), "s-", label="digits, vs eta_dec (beta=1)")
        ax[2].plot(list(cc), list(cc.values()), "^-", label="synthetic, vs c")
        ax[2].set(title="ReLU CVAE active units", xlabel="beta / eta_dec / c", ylabel="AU")
        ax[2].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "collapse_counts.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    files.append(path)
    return files


def render_markdown(result: dict) -> str:
    lines = [f"Overall verdict: **{result['verdict']}** (run: {result['runtime_s']:.0f} s, "
             f"{'quick' if result['config']['quick'] else 'full'}; genvi "
             f"{result['versions']['genvi']}, JAX {result['versions']['jax']}).", "",
             "| claim | criterion | measured | verdict |", "|---|---|---|---|"]
    for c in result["claims"]:
        m = {k: v for k, v in c["measured"].items() if k != "mismatches"}
        meas = "; ".join(f"{k} = {_fmt(v)}" for k, v in m.items())
        cells = (c["claim"], c["criterion"], meas, c["verdict"])
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    lin = result["results"].get("linear")
    if lin is not None:
        lines += ["", "Training time per family (s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in _times(lin).items()) + "."]
    return "\n".join(lines)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _times(lin):
    t = {f"synth CVAE {k}": lin["synth_cvae"][k]["train_s"] for k in ("mc", "analytic")}
    if lin.get("digits_cvae") is not None:
        t["digits CVAE"] = lin["digits_cvae"]["train_s"]
    for k in ("learnable", "fixed"):
        t[f"MHVAE {k}"] = lin["mhvae"][k]["train_s"]
    return t


def main(quick: bool = False, out: str = f"results/{SLUG}", part: str | None = None) -> dict:
    if part is not None and part not in PARTS:
        raise ValueError(f"posterior_collapse: unknown part {part!r}; choose one of {PARTS}")
    t0 = time.perf_counter()
    cfg = config(quick)
    os.makedirs(out, exist_ok=True)
    key = jax.random.key(cfg["seed"])
    res = {}
    if part in (None, "linear"):
        res["linear"] = {"synth_cvae": run_synth_cvae(cfg, key),
                         "digits_cvae": (run_digits_cvae(cfg, key) if cfg["digits"] else None),
                         "mhvae": run_mhvae(cfg, key)}
    if part in (None, "nonlinear") and cfg["nonlinear"] is not None:
        res["nonlinear"] = run_nonlinear(cfg, key)
    claims = _claims(res)
    result = {"slug": SLUG, "paper": PAPER, "claims": claims,
              "verdict": _common.overall(claims), "criteria": CRITERIA, "config": cfg,
              "part": part, "versions": _common.versions(), "results": res,
              "runtime_s": time.perf_counter() - t0}
    result["figures"] = [os.path.basename(f) for f in _figures(res, out)]
    result["runtime_s"] = time.perf_counter() - t0
    _common.write_json(os.path.join(out, "results.json"), result)
    if _common.is_reference_dir(out, __file__):
        _common.update_readme(os.path.join(os.path.dirname(__file__), "README.md"),
                              render_markdown(json.loads(json.dumps(result, default=str))))
    return result


if __name__ == "__main__":
    import sys

    from paper_reproductions.__main__ import main as _main

    sys.exit(_main([SLUG, *sys.argv[1:]]))
