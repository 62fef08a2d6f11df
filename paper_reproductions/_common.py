"""Pieces every reproduction shares: the overall verdict, versions, the README block."""

from __future__ import annotations

import json
import os
import platform

START, END = "<!-- results:start -->", "<!-- results:end -->"


def overall(claims: list) -> str:
    """'reproduced' if every claim is, 'partially reproduced' if some are, else 'not reproduced'."""
    ok = [c["verdict"] == "reproduced" for c in claims]
    if ok and all(ok):
        return "reproduced"
    return "partially reproduced" if any(ok) else "not reproduced"


def versions(**extra) -> dict:
    import jax

    import genvi

    return {"genvi": genvi.__version__, "jax": jax.__version__,
            "python": platform.python_version(), "platform": platform.platform(), **extra}


def write_json(path: str, obj) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)


def update_readme(readme: str, table: str) -> None:
    """Replace the block between the results markers of `readme` with `table`."""
    with open(readme) as fh:
        text = fh.read()
    i, j = text.index(START) + len(START), text.index(END)
    with open(readme, "w") as fh:
        fh.write(text[:i] + "\n" + table + "\n" + text[j:])


def is_reference_dir(out: str, module_file: str) -> bool:
    """Is `out` the committed results folder of the reproduction whose file is given?"""
    ref = os.path.join(os.path.dirname(module_file), "results")
    return os.path.abspath(out) == os.path.abspath(ref)
