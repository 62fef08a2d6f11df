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

PARTS = ("cone", "vae")  # "air" joins once air.run_air exists
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
        lines += ["| estimator | genvi ms/step | NumPyro ms/step |", "|---|---|---|"]
        for name, row in parts["air"]["table2"].items():
            g = row.get("genvi_ms") if isinstance(row, dict) else row
            n = row.get("numpyro_ms", "—") if isinstance(row, dict) else "—"
            g = f"{g:.1f}" if isinstance(g, (int, float)) else str(g)
            n = f"{n:.1f}" if isinstance(n, (int, float)) else str(n)
            lines.append(f"| {name} | {g} | {n} |")
        lines.append("")
    lines.append("| part | claim | measured | verdict |")
    lines.append("|---|---|---|---|")
    for name, r in parts.items():
        for c in r["claims"]:
            m = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in c["measured"].items())
            lines.append(f"| {name} | {c['claim']} | {m} | {c['verdict']} |")
    return "\n".join(lines)
