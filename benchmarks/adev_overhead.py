"""ADEV overhead: genvi's VAE ELBO gradient against the same estimator written in JAX.

The VAE of the programmable-VI paper (Becker et al., PLDI 2024, Table 1): encoder
784-200-(10 means, 10 log-scales), decoder 10-200-784 with Bernoulli pixel likelihood
(logits), a reparameterized diagonal-Gaussian guide, and per-example ELBOs vectorized with
`jax.vmap`. Each side computes the gradient, with respect to all network parameters, of
the mean over the batch of one-sample per-example ELBO estimates:

  genvi   `@gv.gen` model and guide, the ELBO as a `@gv.expectation` program
          (guide.simulate, model.assess); `jax.grad` gives the ADEV (REPARAM) gradient.
  hand    the same estimator in plain JAX: eps ~ N(0, I), z = mu + sigma * eps,
          log p(z) + log p(x | z) - log q(z | x), `jax.grad`.
  vi      (only if `gv.vi.elbo` exists) the library objective `gv.vi.elbo(model, guide)`.

Both draw eps from the same key (see `hand_elbo`), so the gradients must agree to
rounding. Reported per batch size: runtime median and IQR (interleaved calls), the
genvi/hand ratio (median of per-round ratios, and ratio of medians), fresh lower+compile
times and their ratio, program sizes (jaxpr equations, StableHLO ops, optimized HLO
instructions), and the gradient agreement. Data are random binary images (fixed seed).

Run: `python benchmarks/adev_overhead.py [--sizes 64 128 ...] [--reps 30] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

try:
    from benchmarks import _timing as T
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import _timing as T

import genvi as gv

PIXELS, HIDDEN, LATENT = 784, 200, 10
SIZES = (64, 128, 256, 512, 1024)
QUICK_SIZES = (64, 128)
TARGET_RUNTIME_RATIO = 1.05
TARGET_COMPILE_RATIO = 1.5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-6
DEFAULT_OUT = os.path.join("results", "benchmarks", "adev_overhead.json")
SEED = 0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# -- the networks (shared by both sides) -----------------------------------------------------

def init_params(rng: np.random.Generator) -> dict:
    """Network weights (float32), drawn with NumPy: eager JAX ops would each compile."""

    def linear(n_in, n_out):
        w = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
        return {"w": jnp.asarray(w.astype(np.float32)), "b": jnp.asarray(np.zeros(n_out, np.float32))}

    return {
        "enc1": linear(PIXELS, HIDDEN), "enc2": linear(HIDDEN, 2 * LATENT),
        "dec1": linear(LATENT, HIDDEN), "dec2": linear(HIDDEN, PIXELS),
    }


def _mlp(l1, l2, v):
    h = jnp.tanh(v @ l1["w"] + l1["b"])
    return h @ l2["w"] + l2["b"]


def encoder(params, x):
    """(means, log-scales) of q(z | x) for one binary image `x` (int32, shape (784,))."""
    out = _mlp(params["enc1"], params["enc2"], x.astype(jnp.result_type(float)))
    return out[:LATENT], out[LATENT:]


def decoder(params, z):
    """Bernoulli logits of the 784 pixels given z."""
    return _mlp(params["dec1"], params["dec2"], z)


def make_data(batch: int, seed: int = SEED):
    """(params, per-example keys, binary images) for one batch size; fixed seeds."""
    rng = np.random.default_rng(seed)
    params = init_params(rng)
    xs = jnp.asarray((rng.random((batch, PIXELS)) < 0.5).astype(np.int32))
    keys = jax.random.split(jax.random.key(seed), batch)
    return params, keys, xs


# -- genvi ---------------------------------------------------------------------------------

def make_genvi_programs():
    """Fresh model, guide and ELBO expectation (fresh objects: no staging cache carried)."""

    @gv.gen
    def model(params):
        z = gv.mv_normal_diag(jnp.zeros(LATENT), jnp.ones(LATENT)) @ "z"
        x = gv.bernoulli(logits=decoder(params, z)) @ "x"
        return x

    @gv.gen
    def guide(x, params):
        mu, log_sigma = encoder(params, x)
        return gv.mv_normal_diag(mu, jnp.exp(log_sigma)) @ "z"

    @gv.expectation
    def elbo(key, x, params):
        tr = guide.simulate(key, (x, params))
        logp, _ = model.assess(tr.choices | gv.choice_map({"x": x}), (params,))
        return logp - tr.score

    return model, guide, elbo


def _batch_grad(per_example):
    """params -> grad of mean_b per_example(key_b, x_b, params), vmapped over the batch."""

    def grad_fn(params, keys, xs):
        def loss(p):
            return jnp.mean(jax.vmap(lambda k, x: per_example(k, x, p))(keys, xs))

        return jax.grad(loss)(params)

    return grad_fn


def make_genvi_grad():
    _, _, elbo = make_genvi_programs()
    return _batch_grad(elbo)


def _vi_elbo_factory():
    vi = getattr(gv, "vi", None)
    return getattr(vi, "elbo", None) if vi is not None else None


def make_vi_grad():
    """The library objective `gv.vi.elbo(model, guide)`, if the library has it."""
    model, guide, _ = make_genvi_programs()
    objective = _vi_elbo_factory()(model, guide)

    def per_example(key, x, params):
        return objective(key, gv.choice_map({"x": x}), (params,), (x, params))

    return _batch_grad(per_example)


# -- hand-written --------------------------------------------------------------------------

def _normal_diag_logpdf(z, loc, scale):
    # MvNormalDiag.log_prob, then Distribution.logpdf's sum.
    u = (z - loc) / scale
    return jnp.sum(-0.5 * u**2 - jnp.log(scale) - _HALF_LOG_2PI)


def _bernoulli_logits_logpdf(x, logits):
    # Bernoulli.log_prob with logits (support check included), summed.
    ok = (x == 0) | (x == 1)
    lp = jnp.where(x == 1, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits))
    return jnp.sum(jnp.where(ok, lp, -jnp.inf))


def hand_elbo(key, x, params):
    """One-sample reparameterized ELBO estimate, plain JAX.

    Noise: `guide.simulate(key, ...)` draws its first (only) choice with the second half
    of `jax.random.split(key)` (`_Simulate._split` in genvi/core/gen_fn.py), and the REPARAM
    estimator samples `mv_normal_diag` as loc + scale * jax.random.normal(sub, (10,)). The
    same key derivation here makes the two gradients equal, not just equal in expectation.
    """
    mu, log_sigma = encoder(params, x)
    sigma = jnp.exp(log_sigma)
    _, sub = jax.random.split(key)
    eps = jax.random.normal(sub, (LATENT,), dtype=mu.dtype)
    z = mu + sigma * eps
    log_q = _normal_diag_logpdf(z, mu, sigma)
    log_pz = _normal_diag_logpdf(z, jnp.zeros(LATENT), jnp.ones(LATENT))
    log_px = _bernoulli_logits_logpdf(x, decoder(params, z))
    return log_pz + log_px - log_q


def make_hand_grad():
    return _batch_grad(hand_elbo)


# -- measurement ---------------------------------------------------------------------------

def _grad_diff(a, b) -> dict:
    """Agreement of two gradient pytrees (in NumPy: eager JAX ops would each compile)."""
    la = [np.asarray(u, np.float64) for u in jax.tree.leaves(a)]
    lb = [np.asarray(v, np.float64) for v in jax.tree.leaves(b)]
    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError("gradient pytrees differ in structure")
    pairs = list(zip(la, lb, strict=True))
    abs_d = max(float(np.max(np.abs(u - v))) for u, v in pairs)
    rel_d = max(float(np.max(np.abs(u - v) / (np.abs(v) + GRAD_ATOL))) for u, v in pairs)
    close = all(np.allclose(u, v, rtol=GRAD_RTOL, atol=GRAD_ATOL) for u, v in pairs)
    finite = all(np.all(np.isfinite(u)) for u in la + lb)
    return {"max_abs_diff": abs_d, "max_rel_diff": rel_d, "allclose": bool(close and finite),
            "rtol": GRAD_RTOL, "atol": GRAD_ATOL,
            "max_abs_grad": max(float(np.max(np.abs(v))) for v in lb)}


def _program_size(traced, lowered, compiled) -> dict:
    jx = traced.jaxpr
    jcounts = T.jaxpr_primitive_counts(jx.jaxpr)
    shlo = T.stablehlo_op_counts(lowered.as_text())
    hlo = T.hlo_op_counts(compiled.as_text())
    out = {
        "jaxpr_eqns_top": len(jx.jaxpr.eqns), "jaxpr_eqns_total": sum(jcounts.values()),
        "stablehlo_ops": sum(shlo.values()), "hlo_instructions": sum(hlo.values()),
        "jaxpr_primitives": dict(sorted(jcounts.items())),
        "hlo_opcodes": dict(sorted(hlo.items())),
    }
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out["flops"] = float(cost.get("flops", float("nan")))
    except Exception:  # cost analysis is optional and backend dependent
        out["flops"] = None
    return out


def _count_diff(a: dict, b: dict) -> dict:
    return {k: [a.get(k, 0), b.get(k, 0)] for k in sorted(set(a) | set(b)) if a.get(k, 0) != b.get(k, 0)}


def bench_size(batch: int, reps: int, warmup: int, compile_reps: int, use_vi: bool) -> dict:
    args = make_data(batch)
    makers = {"genvi": make_genvi_grad, "hand": make_hand_grad}
    if use_vi:
        makers["vi"] = make_vi_grad

    ctimes, last = T.compile_times(makers, args, reps=compile_reps)

    # Gradient agreement, from the compiled executables.
    exe = {n: last[n][2] for n in makers}
    grads = {n: jax.block_until_ready(exe[n](*args)) for n in makers}
    check = {"genvi_vs_hand": _grad_diff(grads["genvi"], grads["hand"])}
    if use_vi:
        check["vi_vs_hand"] = _grad_diff(grads["vi"], grads["hand"])

    sizes = {n: _program_size(*last[n]) for n in makers}
    hlo = {n: T.normalized_hlo(last[n][2].as_text()) for n in makers}
    same_hlo = {n: hlo[n] == hlo["hand"] for n in makers if n != "hand"}

    # Runtime: the compiled executables, warmed up, then interleaved call by call.
    raw = T.interleaved(exe, args, reps=reps, warmup=warmup)

    rt = {n: T.summarize(raw[n], 1e3) for n in makers}
    comp = {
        n: {
            "total_s": T.summarize(ctimes[n]["total"]),
            "trace_s": T.summarize(ctimes[n]["trace"]),
            "lower_s": T.summarize(ctimes[n]["lower"]),
            "xla_compile_s": T.summarize(ctimes[n]["compile"]),
        }
        for n in makers
    }

    def ratios(name):
        pr = T.paired_ratios(raw[name], raw["hand"])
        return {
            "median_of_pair_ratios": T.median(pr),
            "pair_ratio_iqr": T.summarize(pr)["iqr"],
            "ratio_of_medians": rt[name]["median"] / rt["hand"]["median"],
            "ratio_of_mins": rt[name]["min"] / rt["hand"]["min"],
            "compile_ratio": comp[name]["total_s"]["median"] / comp["hand"]["total_s"]["median"],
            "trace_ratio": comp[name]["trace_s"]["median"] / comp["hand"]["trace_s"]["median"],
            "lower_ratio": comp[name]["lower_s"]["median"] / comp["hand"]["lower_s"]["median"],
            "xla_compile_ratio": (comp[name]["xla_compile_s"]["median"]
                                  / comp["hand"]["xla_compile_s"]["median"]),
        }

    ratio = {n: ratios(n) for n in makers if n != "hand"}
    g = ratio["genvi"]
    return {
        "batch_size": batch,
        "runtime_ms": rt,
        "runtime_raw_ms": {n: [t * 1e3 for t in raw[n]] for n in makers},
        "compile": comp,
        "ratio": ratio,
        "grad_check": check,
        "program_size": {n: {k: v for k, v in s.items() if k not in ("jaxpr_primitives", "hlo_opcodes")}
                         for n, s in sizes.items()},
        "program_size_diff_genvi_vs_hand": {
            "jaxpr_primitives": _count_diff(sizes["genvi"]["jaxpr_primitives"],
                                            sizes["hand"]["jaxpr_primitives"]),
            "hlo_opcodes": _count_diff(sizes["genvi"]["hlo_opcodes"], sizes["hand"]["hlo_opcodes"]),
        },
        "optimized_hlo_identical_to_hand": same_hlo,
        "pass": {
            "runtime": g["median_of_pair_ratios"] <= TARGET_RUNTIME_RATIO,
            "compile": g["compile_ratio"] <= TARGET_COMPILE_RATIO,
            "gradients": check["genvi_vs_hand"]["allclose"],
        },
    }


# -- report ----------------------------------------------------------------------------------

def _pf(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def format_table(result: dict) -> str:
    rows = result["results"]
    use_vi = any("vi" in r["runtime_ms"] for r in rows)
    lines = []
    hdr = (f"{'batch':>5} | {'genvi ms (IQR)':>17} | {'hand ms (IQR)':>17} | {'ratio':>6} "
           f"{'r.med':>6} {'r.min':>6} | {'compile genvi/hand s':>20} {'ratio':>5} | {'max|dgrad|':>10}")
    if use_vi:
        hdr += f" | {'vi ms':>8} {'ratio':>6} {'c.ratio':>7}"
    lines += [hdr, "-" * len(hdr)]
    for r in rows:
        rt, g, c = r["runtime_ms"], r["ratio"]["genvi"], r["compile"]
        line = (
            f"{r['batch_size']:>5} | {rt['genvi']['median']:>8.3f} ({rt['genvi']['iqr']:>6.3f}) | "
            f"{rt['hand']['median']:>8.3f} ({rt['hand']['iqr']:>6.3f}) | "
            f"{g['median_of_pair_ratios']:>6.3f} {g['ratio_of_medians']:>6.3f} "
            f"{g['ratio_of_mins']:>6.3f} | "
            f"{c['genvi']['total_s']['median']:>9.3f} / {c['hand']['total_s']['median']:>8.3f} "
            f"{g['compile_ratio']:>5.2f} | {r['grad_check']['genvi_vs_hand']['max_abs_diff']:>10.2e}"
        )
        if use_vi:
            v = r["ratio"]["vi"]
            line += (f" | {rt['vi']['median']:>8.3f} {v['median_of_pair_ratios']:>6.3f} "
                     f"{v['compile_ratio']:>7.2f}")
        lines.append(line)
    lines.append("")
    lines.append("ratio = median over rounds of genvi/hand (interleaved calls); r.med = ratio of "
                 "medians; r.min = ratio of fastest calls; compile = fresh trace+lower+XLA compile, median of "
                 f"{result['config']['compile_reps']}.")
    lines.append("")
    lines.append("compile breakdown (median s): trace | lower | XLA compile")
    for r in rows:
        c = r["compile"]
        parts = "   ".join(
            f"{n}: {c[n]['trace_s']['median']:.3f} | {c[n]['lower_s']['median']:.3f} | "
            f"{c[n]['xla_compile_s']['median']:.3f}" for n in c
        )
        lines.append(f"  batch {r['batch_size']:>5}:  {parts}")
    lines.append("")
    p = rows[0]["program_size"]
    lines.append(f"program size (batch {rows[0]['batch_size']}): " + "; ".join(
        f"{n}: jaxpr eqns {s['jaxpr_eqns_total']} (top {s['jaxpr_eqns_top']}), StableHLO ops "
        f"{s['stablehlo_ops']}, HLO instrs {s['hlo_instructions']}"
        + (f", flops {s['flops']:.3g}" if s.get("flops") else "")
        for n, s in p.items()
    ))
    d = rows[0]["program_size_diff_genvi_vs_hand"]
    lines.append(f"  jaxpr primitive counts that differ [genvi, hand]: {d['jaxpr_primitives']}")
    lines.append(f"  HLO opcode counts that differ [genvi, hand]: {d['hlo_opcodes']}")
    same = {n: [r["optimized_hlo_identical_to_hand"][n] for r in rows]
            for n in rows[0]["optimized_hlo_identical_to_hand"]}
    lines.append("  optimized HLO identical to hand's up to renaming (per batch size): " + "; ".join(
        f"{n}: {v}" for n, v in same.items()))
    lines.append("")
    lines.append(f"targets: runtime ratio <= {TARGET_RUNTIME_RATIO}, compile ratio <= "
                 f"{TARGET_COMPILE_RATIO}, gradients allclose(rtol={GRAD_RTOL}, atol={GRAD_ATOL})")
    for r in rows:
        ps, g = r["pass"], r["ratio"]["genvi"]
        gc = r["grad_check"]["genvi_vs_hand"]
        lines.append(
            f"  batch {r['batch_size']:>5}: runtime {g['median_of_pair_ratios']:.3f} {_pf(ps['runtime'])}"
            f"   compile {g['compile_ratio']:.2f} {_pf(ps['compile'])}   gradients max|diff| "
            f"{gc['max_abs_diff']:.2e} (max|grad| {gc['max_abs_grad']:.2e}) {_pf(ps['gradients'])}"
        )
    s = result["summary"]
    lines.append(f"  overall: runtime {_pf(s['runtime'])}, compile {_pf(s['compile'])}, "
                 f"gradients {_pf(s['gradients'])}")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help=f"batch sizes (default {' '.join(map(str, SIZES))}; --quick: "
                         f"{' '.join(map(str, QUICK_SIZES))})")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed calls per function per size (default 30; --quick: 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3)")
    ap.add_argument("--compile-reps", type=int, default=None,
                    help="fresh compiles per function (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="sizes 64 128, few repetitions")
    ap.add_argument("--no-vi", action="store_true", help="skip the gv.vi.elbo column")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    a = ap.parse_args(argv)
    if a.sizes is None:
        a.sizes = list(QUICK_SIZES if a.quick else SIZES)
    if a.reps is None:
        a.reps = 5 if a.quick else 30
    if a.warmup is None:
        a.warmup = 1 if a.quick else 3
    if a.compile_reps is None:
        a.compile_reps = 1 if a.quick else 3
    if min(a.sizes) < 1 or a.reps < 1 or a.compile_reps < 1 or a.warmup < 0:
        ap.error("sizes, --reps and --compile-reps must be positive, --warmup >= 0")
    return a


def _vi_available() -> tuple[bool, str]:
    if _vi_elbo_factory() is None:
        return False, "gv.vi.elbo not found"
    try:
        jax.eval_shape(make_vi_grad(), *make_data(2))
    except Exception as e:  # the column is optional: report why it was skipped
        return False, f"gv.vi.elbo failed to trace: {type(e).__name__}: {e}"
    return True, ""


def main(argv=None) -> dict:
    a = parse_args(argv)
    use_vi, vi_note = (False, "disabled by --no-vi") if a.no_vi else _vi_available()
    dev = jax.devices()[0]
    config = {
        "sizes": a.sizes, "reps": a.reps, "warmup": a.warmup, "compile_reps": a.compile_reps,
        "quick": a.quick, "columns": ["genvi", "hand"] + (["vi"] if use_vi else []),
        "vi_note": vi_note, "seed": SEED,
        "network": {"pixels": PIXELS, "hidden": HIDDEN, "latent": LATENT, "activation": "tanh"},
        "gradient": "jax.grad of mean over batch of jax.vmap(per-example one-sample ELBO)",
        "jax": jax.__version__, "backend": jax.default_backend(), "device": str(dev),
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"adev_overhead: jax {jax.__version__} on {dev} ({os.cpu_count()} CPUs); sizes "
          f"{a.sizes}, reps {a.reps}, compile reps {a.compile_reps}; columns "
          f"{config['columns']}" + (f" ({vi_note})" if vi_note else ""), flush=True)
    rows = []
    for b in a.sizes:
        t0 = time.perf_counter()
        rows.append(bench_size(b, a.reps, a.warmup, a.compile_reps, use_vi))
        r = rows[-1]
        print(f"  batch {b}: genvi {r['runtime_ms']['genvi']['median']:.3f} ms, hand "
              f"{r['runtime_ms']['hand']['median']:.3f} ms, ratio "
              f"{r['ratio']['genvi']['median_of_pair_ratios']:.3f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    result = {
        "config": config,
        "targets": {"runtime_ratio_max": TARGET_RUNTIME_RATIO,
                    "compile_ratio_max": TARGET_COMPILE_RATIO,
                    "grad_rtol": GRAD_RTOL, "grad_atol": GRAD_ATOL},
        "results": rows,
        "summary": {k: all(r["pass"][k] for r in rows) for k in ("runtime", "compile", "gradients")},
    }
    print()
    print(format_table(result))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
        print(f"\nwrote {a.out}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
