"""`fit`: the training loop that maximizes an objective with an optax optimizer.

Steps run compiled, `chunk_size` at a time, inside one `jax.lax.scan`; the host only updates
the progress bar, the history, the callback and the checkpoint between chunks. Every random
choice is derived from the global step index (the step's key is `fold_in(key, step)`, the
epoch's shuffle is `fold_in(key, epoch)`), so a run resumed from a checkpoint follows exactly
the trajectory of an uninterrupted one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from genvi.vi import _checkpoint

__all__ = ["fit", "NonFiniteWarning"]


class NonFiniteWarning(RuntimeWarning):
    """`fit` stopped because the objective or a gradient leaf was NaN or infinite."""


_NO_BATCH = None


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_positive_int(name: str, value, example: str) -> None:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"fit: `{name}` must be a positive int, got {value!r}. Example: {example}")


def _as_key(key):
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"fit: `key` must be a single key, got a key array of shape {key.shape}.")
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)  # legacy jax.random.PRNGKey
    raise TypeError(
        f"fit: `key` must be a JAX random key, got {type(key).__name__}. "
        "Fix: pass `key=jax.random.key(0)`."
    )


def _float_leaves_to_arrays(params):
    """Python floats and numpy float arrays become JAX arrays (so that `{"a": 0.0}` trains).

    Equinox modules are left alone: by Equinox's convention a Python float field of a module
    is a hyperparameter, not a trainable parameter.
    """

    def convert(x):
        if isinstance(x, (float, complex)) or (
            isinstance(x, (np.ndarray, np.generic)) and jnp.issubdtype(x.dtype, jnp.inexact)
        ):
            return jnp.asarray(x)
        return x

    return jax.tree.map(convert, params, is_leaf=lambda x: isinstance(x, eqx.Module))


def _strong(tree):
    """Strongly typed JAX copies of the array leaves (weak types would recompile step 2)."""
    return jax.tree.map(
        lambda x: jax.lax.convert_element_type(jnp.asarray(x), jnp.asarray(x).dtype)
        if eqx.is_array(x) else x,
        tree,
    )


def _match(new, old):
    """Cast `new`'s leaves to `old`'s dtypes so that the scan carry keeps its type."""
    return jax.tree.map(
        lambda n, o: jax.lax.convert_element_type(n, o.dtype), new, old,
    )


def _check_data(data, batch_size):
    leaves, _ = jax.tree_util.tree_flatten_with_path(data)
    if not leaves:
        raise ValueError("fit: `data` has no arrays. Pass an array or a pytree of arrays.")
    sizes = {}
    for path, x in leaves:
        if np.ndim(x) == 0:
            raise ValueError(
                f"fit: every `data` leaf needs a leading data axis, but leaf "
                f"{jax.tree_util.keystr(path) or '<root>'} is a scalar. Fix: stack the examples "
                "along axis 0, e.g. `data = {'x': xs, 'y': ys}` with xs.shape[0] == ys.shape[0]."
            )
        sizes[jax.tree_util.keystr(path) or "<root>"] = np.shape(x)[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"fit: all `data` leaves must have the same leading size (the number of examples), "
            f"got {sizes}. Fix: stack the examples along axis 0 of every leaf."
        )
    n = next(iter(sizes.values()))
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size, "batch_size=32")
        if batch_size > n:
            raise ValueError(
                f"fit: `batch_size={batch_size}` is larger than the data set ({n} examples). "
                f"Fix: pass `batch_size<={n}`, or `batch_size=None` to use the whole data set "
                "at every step."
            )
    return n


def _make_mesh(devices, mesh):
    if devices is not None and mesh is not None:
        raise ValueError("fit: pass either `devices=` or `mesh=`, not both.")
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"fit: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
        return mesh
    if devices is not None:
        devices = list(devices)
        if not devices:
            raise ValueError("fit: `devices` is empty. Example: `devices=jax.devices()`.")
        return Mesh(np.asarray(devices), ("batch",))
    return None


def fit(
    objective: Callable[..., Any],
    params: Any,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    key: jax.Array,
    num_samples: int = 1,
    data: Any = None,
    batch_size: int | None = None,
    chunk_size: int = 100,
    callback: Callable[[int, Any, dict], bool | None] | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    devices: list | None = None,
    mesh: Mesh | None = None,
) -> tuple[Any, dict]:
    """Maximize `objective` over `params` by stochastic gradient ascent with `optimizer`.

    The objective is **maximized** (e.g. an ELBO): each step draws `num_samples` independent
    keys, averages `objective(key_s, params[, batch])` over them, and passes the negated
    gradient of the average to `optimizer`. Any function whose `jax.grad` is an unbiased
    gradient estimate works: `gv.vi` objectives, `@gv.expectation` programs, plain JAX.

    Steps are compiled: `chunk_size` steps run in one `jax.lax.scan` inside one `jax.jit`, so
    the loop compiles once per call (a shorter last chunk is masked, not recompiled). The
    progress bar, history, callback and checkpoints are updated between chunks.

    Trainable params are the floating-point arrays of `params` (`eqx.is_inexact_array`;
    Python floats outside Equinox modules are converted to arrays); everything else is
    held fixed. The step-`i` key is `jax.random.fold_in(k_steps, i)` and the shuffle of
    epoch `e` uses `jax.random.fold_in(k_data, e)` (`k_steps, k_data = split(key)`), so a
    resumed run reproduces an uninterrupted one.

    If at some step the objective or a gradient leaf is NaN or infinite, training stops
    without applying that step: the params from before it are returned, a
    `NonFiniteWarning` names the step and the bad leaves, and `history["stopped"]` records
    them.

    Args:
        objective: `objective(key, params)`, or `objective(key, params, batch)` when `data`
            is given; returns a scalar to maximize.
        params: any pytree of parameters (dicts, lists, Equinox modules).
        optimizer: an optax `GradientTransformation`; it sees the trainable leaves only.
        steps: total number of steps (counted from step 0, including resumed ones).
        key: a JAX random key (`jax.random.key(0)`).
        num_samples: independent objective evaluations averaged per step (a `vmap`).
        data: an array or pytree of arrays with the examples along axis 0 (size N).
        batch_size: minibatch size B. Each epoch is a fresh permutation of the N examples
            cut into `N // B` batches; the last incomplete batch of each epoch is dropped.
            `None` with `data` uses the whole data set at every step.
        chunk_size: steps per compiled chunk (host work happens between chunks).
        callback: `callback(step, params, history)` after each chunk, with `step` the number
            of completed steps; returning True stops training (the params so far are
            returned).
        checkpoint_dir: directory for checkpoints (params, optimizer state, step, key,
            history; `.npz` + JSON, no pickle), written atomically.
        checkpoint_every: write a checkpoint at the first chunk boundary at least this many
            steps after the previous one; a checkpoint is always written at the end.
        resume: continue from the checkpoint in `checkpoint_dir` if there is one (its key is
            used); `False` starts over and overwrites it.
        progress: show a tqdm progress bar with the running objective (mean over the last
            chunk).
        devices: data-parallel training on these devices (a 1-D mesh named `"batch"`).
        mesh: a `jax.sharding.Mesh` to shard over instead (all its axes shard the batch).
            Params and optimizer state are replicated; the minibatch (or, without data, the
            `num_samples` axis) is split across devices and must divide evenly. With
            `batch_size`, the data set is replicated on every device.

    Returns:
        `(params, history)`: the trained params (same structure as `params`) and a dict with
        numpy arrays `"objective"` (the per-step objective, averaged over `num_samples`,
        evaluated at the params before that step's update) and `"step"` (the step indices),
        plus `"stopped"` (`{"step", "reason", "leaves"}`) if training stopped early.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> def objective(key, p):
        ...     eps = jax.random.normal(key)
        ...     return -((p["a"] + 0.1 * eps - 3.0) ** 2)
        >>> params, history = fit(objective, {"a": 0.0}, optax.adam(0.1), steps=500,
        ...                       key=jax.random.key(0), num_samples=8, progress=False)
        >>> bool(abs(params["a"] - 3.0) < 0.1)
        True
    """
    if not callable(objective):
        raise TypeError(
            f"fit: `objective` must be a function objective(key, params) (or "
            f"objective(key, params, batch) with `data=`) returning a scalar to maximize, got "
            f"{type(objective).__name__}. Example: `fit(lambda key, p: -(p['a'] - 3.0) ** 2, "
            "{'a': 0.0}, optax.adam(0.1), steps=100, key=jax.random.key(0))`."
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"fit: `optimizer` must be an optax GradientTransformation (e.g. `optax.adam(1e-2)`), "
            f"got {type(optimizer).__name__}."
        )
    _check_positive_int("steps", steps, "steps=1000")
    _check_positive_int("num_samples", num_samples, "num_samples=16")
    _check_positive_int("chunk_size", chunk_size, "chunk_size=100")
    if checkpoint_every is not None:
        _check_positive_int("checkpoint_every", checkpoint_every, "checkpoint_every=1000")
        if checkpoint_dir is None:
            raise ValueError(
                "fit: `checkpoint_every` needs `checkpoint_dir`. Fix: pass "
                "`checkpoint_dir='ckpt'` too."
            )
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: `callback` must be callable or None, got {type(callback).__name__}.")
    if batch_size is not None and data is None:
        raise ValueError(
            "fit: `batch_size` was given without `data`. Fix: pass `data=` (arrays with the "
            "examples along axis 0), or drop `batch_size`."
        )
    key = _as_key(key)
    n_data = None if data is None else _check_data(data, batch_size)
    mesh = _make_mesh(devices, mesh)

    params = _float_leaves_to_arrays(params)
    params_dyn, params_static = eqx.partition(params, eqx.is_inexact_array)
    params_dyn = _strong(params_dyn)
    dyn_flat, _ = jax.tree_util.tree_flatten_with_path(params_dyn)
    if not dyn_flat:
        raise ValueError(
            "fit: `params` contains no floating-point arrays to train (fit trains the leaves "
            "for which `eqx.is_inexact_array` is true; ints, bools and other objects are held "
            "fixed). Fix: make the trainable leaves float arrays, e.g. "
            "`{'w': jnp.zeros(3), 'b': 0.0}`."
        )
    leaf_names = [jax.tree_util.keystr(p) or "<root>" for p, _ in dyn_flat]
    opt_state = optimizer.init(params_dyn)
    opt_dyn, opt_static = eqx.partition(opt_state, eqx.is_array)
    opt_dyn = _strong(opt_dyn)

    if data is not None:
        data = _strong(jax.tree.map(jnp.asarray, data))
    n_dev = 1 if mesh is None else mesh.size
    per_step = batch_size if batch_size is not None else n_data
    if mesh is not None and n_dev > 1:
        what, size = (
            ("batch size", per_step) if data is not None else ("num_samples", num_samples)
        )
        if size % n_dev:
            raise ValueError(
                f"fit: the {what} ({size}) must be divisible by the number of devices "
                f"({n_dev}) to split it evenly across them. Fix: choose a {what} that is a "
                f"multiple of {n_dev}, or use fewer devices."
            )

    # -- resume -------------------------------------------------------------------------
    history_obj = np.full(steps, np.nan, dtype=np.float64)
    start, stopped = 0, None
    config = {"num_samples": num_samples, "batch_size": batch_size, "data_size": n_data}
    if checkpoint_dir is not None and resume:
        ckpt = _checkpoint.load(checkpoint_dir, params_dyn, opt_dyn)
        if ckpt is not None:
            if not np.array_equal(jax.random.key_data(ckpt["key"]), jax.random.key_data(key)):
                warnings.warn(
                    f"fit: resuming from {checkpoint_dir!r}, which was written with another "
                    "`key`; the checkpoint's key is used so that the run continues as it began. "
                    "Pass `resume=False` to start over with the new key.", stacklevel=2,
                )
            differ = {k: (ckpt["config"].get(k), v) for k, v in config.items()
                      if ckpt["config"].get(k) != v}
            if differ:
                warnings.warn(
                    f"fit: resuming from {checkpoint_dir!r} with different settings "
                    f"(checkpoint, now): {differ}; the run will not match an uninterrupted one.",
                    stacklevel=2,
                )
            key = ckpt["key"]
            params_dyn = _match(ckpt["params_dyn"], params_dyn)
            opt_dyn = _match(ckpt["opt_dyn"], opt_dyn)
            start = ckpt["step"]
            history_obj = np.full(max(steps, start), np.nan, dtype=np.float64)
            history_obj[:start] = ckpt["objective"][:start]
            stopped = ckpt["stopped"]
            if stopped is not None and stopped.get("reason", "").startswith("non-finite"):
                warnings.warn(_nonfinite_message(stopped), NonFiniteWarning, stacklevel=2)
            else:
                stopped = None

    k_steps, k_data = jax.random.split(key)

    # -- sharding -------------------------------------------------------------------------
    if mesh is not None:
        replicated = NamedSharding(mesh, P())
        split = NamedSharding(mesh, P(tuple(mesh.axis_names)))
        params_dyn = jax.device_put(params_dyn, replicated)
        opt_dyn = jax.device_put(opt_dyn, replicated)
        if data is not None:
            data = jax.device_put(data, replicated if batch_size is not None else split)

        def constrain(tree):
            return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, split), tree)
    else:
        def constrain(tree):
            return tree

    value_dtype = jnp.result_type(float)

    # -- one step ---------------------------------------------------------------------
    def mean_objective(p_dyn, step_key, batch):
        p = eqx.combine(p_dyn, params_static)
        keys = jax.random.split(step_key, num_samples)
        if data is None:
            keys = constrain(keys)

        def one(k):
            v = objective(k, p) if batch is _NO_BATCH else objective(k, p, batch)
            v = jnp.asarray(v)
            if v.shape != () or not jnp.issubdtype(v.dtype, jnp.floating):
                raise TypeError(
                    f"fit: the objective must return a real scalar to maximize, got an array "
                    f"of shape {v.shape} and dtype {v.dtype}. Fix: reduce it, e.g. return "
                    "`jnp.sum(...)` or `jnp.mean(...)` of per-example terms."
                )
            return v

        return jnp.mean(jax.vmap(one)(keys))

    value_and_grad = jax.value_and_grad(mean_objective)
    batches_per_epoch = None if batch_size is None else n_data // batch_size

    def permutation(epoch):
        return jax.random.permutation(jax.random.fold_in(k_data, epoch), n_data).astype(jnp.int32)

    def do_step(state, step, data):
        p_dyn, o_dyn, perm, perm_epoch = state
        if data is None:
            batch = _NO_BATCH
        elif batch_size is None:
            batch = constrain(data)
        else:
            epoch = step // batches_per_epoch
            perm, perm_epoch = jax.lax.cond(
                epoch != perm_epoch,
                lambda: (permutation(epoch), epoch),
                lambda: (perm, perm_epoch),
            )
            start_idx = (step % batches_per_epoch) * batch_size
            idx = jax.lax.dynamic_slice(perm, (start_idx,), (batch_size,))
            batch = constrain(jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data))
        value, grads = value_and_grad(p_dyn, jax.random.fold_in(k_steps, step), batch)
        leaf_bad = jnp.stack(
            [~jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]
        )
        bad = ~jnp.isfinite(value) | jnp.any(leaf_bad)
        o_state = eqx.combine(o_dyn, opt_static)
        updates, new_o = optimizer.update(jax.tree.map(jnp.negative, grads), o_state, p_dyn)
        new_p = _match(optax.apply_updates(p_dyn, updates), p_dyn)
        new_o = _match(eqx.filter(new_o, eqx.is_array), o_dyn)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(bad, b, a), new, old)
        new_state = (keep(new_p, p_dyn), keep(new_o, o_dyn), perm, perm_epoch)
        return new_state, value.astype(value_dtype), bad, leaf_bad

    def skip_step(state, step, data):
        return state, jnp.full((), jnp.nan, value_dtype), jnp.array(False), jnp.zeros(
            len(leaf_names), bool
        )

    # -- one chunk --------------------------------------------------------------------
    chunk = min(chunk_size, steps)

    @jax.jit
    def run_chunk(p_dyn, o_dyn, first, n_valid, data):
        if batch_size is None:
            perm, perm_epoch = jnp.zeros((0,), jnp.int32), jnp.int32(0)
        else:
            perm_epoch = first // batches_per_epoch
            perm = permutation(perm_epoch)

        def body(carry, i):
            state, stopped, bad_step, bad_mask = carry
            step = first + i
            active = (i < n_valid) & ~stopped
            state, value, bad, leaf_bad = jax.lax.cond(
                active, do_step, skip_step, state, step, data
            )
            new_bad = bad & ~stopped
            bad_step = jnp.where(new_bad, step, bad_step)
            bad_mask = jnp.where(new_bad, leaf_bad, bad_mask)
            return (state, stopped | bad, bad_step, bad_mask), value

        init = (
            (p_dyn, o_dyn, perm, perm_epoch), jnp.array(False), jnp.int32(-1),
            jnp.zeros(len(leaf_names), bool),
        )
        (state, stopped, bad_step, bad_mask), values = jax.lax.scan(
            body, init, jnp.arange(chunk, dtype=jnp.int32)
        )
        return state[0], state[1], values, stopped, bad_step, bad_mask

    # -- the loop ---------------------------------------------------------------------
    def history_view(done):
        obj = history_obj[:done]
        obj.flags.writeable = False
        h = {"objective": obj, "step": np.arange(done)}
        if stopped is not None:
            h["stopped"] = stopped
        return h

    def save(done):
        # Params are replicated, so one process writes (the others would race on the files).
        if jax.process_index() != 0:
            return
        _checkpoint.save(
            checkpoint_dir, step=done, key=key, params_dyn=params_dyn, opt_dyn=opt_dyn,
            objective_history=history_obj[:done], stopped=stopped, config=config,
        )

    done, last_saved = start, start
    bar = tqdm(total=steps, initial=min(start, steps), disable=not progress, desc="fit",
               unit="step", dynamic_ncols=True)
    try:
        while done < steps and stopped is None:
            n = min(chunk, steps - done)
            p_new, o_new, values, bad_flag, bad_step, bad_mask = run_chunk(
                params_dyn, opt_dyn, np.int32(done), np.int32(n), data
            )
            values = np.asarray(values)
            n_ok = int(bad_step) - done if bool(bad_flag) else n
            params_dyn, opt_dyn = p_new, o_new
            history_obj[done:done + n_ok] = values[:n_ok]
            done += n_ok
            bar.update(n_ok)
            if n_ok:
                bar.set_postfix(objective=f"{float(np.mean(values[:n_ok])):.6g}")
            if bool(bad_flag):
                bad_leaves = [name for name, b in zip(leaf_names, np.asarray(bad_mask),
                                                      strict=True) if b]
                value_ok = bool(np.isfinite(values[n_ok]))
                reason = "non-finite gradient" if value_ok else (
                    "non-finite objective and gradient" if bad_leaves else "non-finite objective"
                )
                stopped = {"step": done, "reason": reason, "leaves": bad_leaves}
                warnings.warn(_nonfinite_message(stopped), NonFiniteWarning, stacklevel=2)
                break
            if callback is not None:
                params_now = eqx.combine(params_dyn, params_static)
                if callback(done, params_now, history_view(done)):
                    stopped = {"step": done, "reason": "callback requested stop", "leaves": []}
                    break
            if checkpoint_every is not None and done - last_saved >= checkpoint_every:
                save(done)
                last_saved = done
    except KeyboardInterrupt:
        if checkpoint_dir is not None and done != last_saved:
            save(done)  # the state after the last complete chunk, so that resume loses nothing
        raise
    finally:
        bar.close()
    if checkpoint_dir is not None and (
        done != last_saved or not (Path(checkpoint_dir) / _checkpoint.MANIFEST).exists()
    ):
        save(done)
    return eqx.combine(params_dyn, params_static), history_view(done)


def _nonfinite_message(stopped: dict) -> str:
    leaves = stopped["leaves"]
    where = f" (params leaves with a non-finite gradient: {', '.join(leaves)})" if leaves else ""
    return (
        f"fit stopped at step {stopped['step']}: {stopped['reason']}{where}. The returned "
        f"params are those from before step {stopped['step']} (its update was not applied); "
        "history['stopped'] records this. Common fixes: lower the learning rate, clip "
        "gradients (optax.clip_by_global_norm), or keep parameters inside their support "
        "(e.g. optimize log-scales and use jnp.exp)."
    )
