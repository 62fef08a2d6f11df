"""Checkpoints for `fit`: numpy `.npz` leaves plus a JSON manifest, no pickle.

A checkpoint directory holds `checkpoint.json` (the manifest: step, key, configuration,
leaf layout, history) and the `state-<step>.npz` file it names (the params' trainable leaves
and the optimizer state's array leaves as `leaf_0`, `leaf_1`, ...). Both are written to a
temporary file and moved into place with `os.replace`; the manifest is written last, so an
interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

MANIFEST = "checkpoint.json"
_FORMAT = "genvi.fit checkpoint"
_VERSION = 1


def _layout(tree) -> dict:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "paths": [jax.tree_util.keystr(p) for p, _ in flat],
        "shapes": [list(np.shape(x)) for _, x in flat],
        "dtypes": [jnp.dtype(x.dtype).name for _, x in flat],
    }


def _to_numpy(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "V":  # ml_dtypes (bfloat16, float8...): store the raw bits
        a = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    return a


def _from_numpy(a: np.ndarray, dtype_name: str):
    dtype = jnp.dtype(dtype_name)
    if dtype.kind == "V":
        a = a.view(dtype)
    return jnp.asarray(a, dtype=dtype)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(directory, *, step, key, params_dyn, opt_dyn, objective_history, stopped, config):
    """Write a checkpoint of the state after `step` completed steps."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_leaves(params_dyn) + jax.tree_util.tree_leaves(opt_dyn)
    arrays = {f"leaf_{i}": _to_numpy(x) for i, x in enumerate(leaves)}
    state_name = f"state-{step:09d}.npz"
    _atomic_write(directory / state_name, lambda f: np.savez(f, **arrays))
    manifest = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": int(step),
        "state_file": state_name,
        "key": {
            "impl": str(jax.random.key_impl(key)),
            "data": np.asarray(jax.random.key_data(key)).tolist(),
        },
        "config": config,
        "params": _layout(params_dyn),
        "opt_state": _layout(opt_dyn),
        "history": {"objective": [float(v) for v in objective_history]},
        "stopped": stopped,
    }
    text = json.dumps(manifest, indent=1).encode()
    _atomic_write(directory / MANIFEST, lambda f: f.write(text))
    for old in directory.glob("state-*.npz"):  # only after the manifest names the new file
        if old.name != state_name:
            old.unlink(missing_ok=True)


def _check_layout(saved: dict, tree, what: str, directory) -> None:
    now = _layout(tree)
    fix = (
        f"Pass the same {what} (and optimizer) that wrote the checkpoint, choose another "
        f"`checkpoint_dir`, or pass `resume=False` to start over (the checkpoint in "
        f"{str(directory)!r} is then overwritten)."
    )
    if len(saved["paths"]) != len(now["paths"]):
        raise ValueError(
            f"fit: cannot resume: the checkpoint holds {len(saved['paths'])} {what} leaves "
            f"but the current {what} have {len(now['paths'])} (checkpoint leaves: "
            f"{saved['paths']}; current: {now['paths']}). {fix}"
        )
    for field in ("paths", "shapes", "dtypes"):
        for i, (a, b) in enumerate(zip(saved[field], now[field], strict=True)):
            if a != b:
                raise ValueError(
                    f"fit: cannot resume: {what} leaf {i} ({now['paths'][i]}) has "
                    f"{field[:-1]} {a} in the checkpoint but {b} now. {fix}"
                )


def load(directory, params_dyn, opt_dyn):
    """Read the checkpoint in `directory`, or return None when there is none.

    Returns a dict with `step`, `key`, `params_dyn`, `opt_dyn`, `objective` (numpy),
    `stopped` and `config`. Raises ValueError when the stored leaves do not match the
    layout (number, paths, shapes, dtypes) of `params_dyn` and `opt_dyn`.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
        raise ValueError(
            f"fit: {str(path)!r} is not a genvi.fit checkpoint (version {_VERSION}); "
            "choose another `checkpoint_dir` or pass `resume=False`."
        )
    _check_layout(manifest["params"], params_dyn, "params", directory)
    _check_layout(manifest["opt_state"], opt_dyn, "optimizer state", directory)
    p_leaves, p_def = jax.tree_util.tree_flatten(params_dyn)
    o_leaves, o_def = jax.tree_util.tree_flatten(opt_dyn)
    dtypes = manifest["params"]["dtypes"] + manifest["opt_state"]["dtypes"]
    with np.load(directory / manifest["state_file"], allow_pickle=False) as z:
        arrays = [_from_numpy(z[f"leaf_{i}"], d) for i, d in enumerate(dtypes)]
    key_info = manifest["key"]
    key = jax.random.wrap_key_data(
        np.asarray(key_info["data"], dtype=np.uint32), impl=key_info["impl"]
    )
    return {
        "step": manifest["step"],
        "key": key,
        "params_dyn": jax.tree_util.tree_unflatten(p_def, arrays[: len(p_leaves)]),
        "opt_dyn": jax.tree_util.tree_unflatten(o_def, arrays[len(p_leaves):]),
        "objective": np.asarray(manifest["history"]["objective"], dtype=np.float64),
        "stopped": manifest["stopped"],
        "config": manifest["config"],
    }
