"""Reproduction of "Probabilistic Programming with Programmable Variational Inference"
(Becker et al., PLDI 2024) with genvi: three parts, each with claims checked in code.

- cone: Table 4 and Figure 2 (objectives on the noisy cone; NumPyro in the same run),
- vae:  Table 1 (gradient overhead versus hand-coded JAX),
- air:  Table 2 and Figure 7 (Attend-Infer-Repeat estimators, versus NumPyro).

Each part writes `<part>_results.json`; `results.json` gathers every part found in the
output folder, and the overall verdict follows from all their claims.
"""

from __future__ import annotations

import importlib
import json
import os
import time

from paper_reproductions._common import (
    is_reference_dir,
    overall,
    update_readme,
    versions,
    write_json,
)

PARTS = ("cone", "vae", "air")
PAPER = ("Becker, Lew, Wang, Ghavami, Huot, Rinard, Mansinghka. Probabilistic Programming "
         "with Programmable Variational Inference. PLDI 2024")


def _run_part(name: str, quick: bool, out: str) -> dict:
    mod = importlib.import_module(f"paper_reproductions.programmable_vi.{name}")
    t0 = time.perf_counter()
    res = getattr(mod, f"run_{name}")(quick, out)
    res["runtime_s"] = time.perf_counter() - t0
    res["quick"] = quick
    write_json(os.path.join(out, f"{name}_results.json"), res)
    return res


def main(quick: bool = False, out: str = "results/programmable_vi", part: str | None = None):
    if part is not None and part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    os.makedirs(out, exist_ok=True)
    for name in (part,) if part else PARTS:
        _run_part(name, quick, out)
    parts = {}
    for name in PARTS:
        path = os.path.join(out, f"{name}_results.json")
        if os.path.exists(path):
            with open(path) as fh:
                parts[name] = json.load(fh)
    claims = [dict(c, part=name) for name, r in parts.items() for c in r["claims"]]
    result = {
        "slug": "programmable_vi",
        "paper": PAPER,
        "claims": claims,
        "verdict": overall(claims),
        "parts": sorted(parts),
        "missing_parts": [p for p in PARTS if p not in parts],
        "config": {name: r["config"] for name, r in parts.items()},
        "quick": {name: r["quick"] for name, r in parts.items()},
        "versions": versions(),
        "runtime_s": sum(r["runtime_s"] for r in parts.values()),
        "seed": 0,
    }
    write_json(os.path.join(out, "results.json"), result)
    table = render_markdown(parts)
    print(table)
    if is_reference_dir(out, __file__):
        update_readme(os.path.join(os.path.dirname(__file__), "README.md"), table)
    return result


def render_markdown(parts: dict) -> str:
    """The README's tables, from the part results (so no number is typed by hand)."""
    lines = []
    if "cone" in parts:
        c = parts["cone"]
        lines += ["| objective | genvi (ours) | paper (genjax) | NumPyro (ours) | paper NumPyro |",
                  "|---|---|---|---|---|"]
        for name, row in c["table4"].items():
            npv = (c.get("numpyro") or {}).get(name, {}).get("value")
            pn = c["paper_numpyro"].get(name)
            lines.append(f"| {name} | {row['value']:.2f} ± {row['se']:.2f} | {row['paper']:.2f} | "
                         f"{'—' if npv is None else f'{npv:.2f}'} | {'—' if pn is None else pn} |")
        lines.append("")
    if "vae" in parts:
        lines += ["| batch | genvi ms | hand ms | ratio (median of pairs) | compile genvi / hand s |"
                  " max abs grad diff |", "|---|---|---|---|---|---|"]
        for b, row in parts["vae"]["table1"].items():
            lines.append(f"| {b} | {row['genvi_ms']:.2f} | {row['hand_ms']:.2f} | {row['ratio']:.3f}"
                         f" | {row['genvi_compile_s']:.2f} / {row['hand_compile_s']:.2f} |"
                         f" {row['grad_max_abs_diff']:.1e} |")
        lines.append("")
    if "air" in parts and "table2" in parts["air"]:
        lines += _air_table(parts["air"])
    lines.append("| part | claim | measured | verdict |")
    lines.append("|---|---|---|---|")
    for name, r in parts.items():
        for c in r["claims"]:
            m = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in c["measured"].items())
            lines.append(f"| {name} | {c['claim']} | {m} | {c['verdict']} |")
    return "\n".join(lines)


def _num(x, fmt):
    return fmt.format(x) if isinstance(x, (int, float)) else ("—" if x is None else str(x))


def _air_table(air: dict) -> list:
    """Table 2 (ms per update step; NumPyro's reasons below the table) with the Fig. 7
    columns (held-out ELBO over the last 20% of the training budget, count accuracy)."""
    lines = ["| estimator | genvi ms/step | NumPyro ms/step | NumPyro objective | genvi compile s |"
             " held-out ELBO (last 20%) | count accuracy |", "|---|---|---|---|---|---|---|"]
    reasons = {}
    for name, row in air["table2"].items():
        n = row.get("numpyro_ms", "—")
        if isinstance(n, str) and "(" in n:
            reasons[row.get("numpyro_objective", name)] = n
            n = n.split(" (")[0]
        obj = row.get("numpyro_objective", "—")
        if obj != "—" and row.get("numpyro_exact") is False:
            obj += " (approximate)"
        lines.append(f"| {name} | {_num(row.get('genvi_ms'), '{:.2f}')} | {_num(n, '{:.2f}')} | "
                     f"{obj} | {_num(row.get('genvi_compile_s'), '{:.1f}')} | "
                     f"{_num(row.get('heldout_elbo_last20'), '{:.1f}')} | "
                     f"{_num(row.get('count_accuracy'), '{:.3f}')} |")
    lines.append("")
    for np_name, row in (air.get("numpyro") or {}).items():
        why = f" — {reasons.pop(np_name)}" if np_name in reasons else ""
        if row.get("note"):
            lines.append(f"- NumPyro {np_name}: {row['note']}{why}.")
    for np_name, why in reasons.items():
        lines.append(f"- NumPyro {np_name}: {why}.")
    if air.get("numpyro_import_error"):
        lines.append(f"- NumPyro not importable: {air['numpyro_import_error']}.")
    lines.append("")
    return lines
