"""The `sample` primitive: a stochastic site as it appears in a staged expectation program.

Operands are the PRNG key, the distribution's leaves and the estimator's leaves; the
static parameters carry both treedefs, the site's address (for error messages) and the
number of leading batch axes added by `jax.vmap`. Outside the ADEV interpreter the
primitive just samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax._src import ad_util
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

sample_p = Primitive("genvi_sample")
add_cost_p = Primitive("genvi_add_cost")


def site_of(params, operands):
    """(key, dist, estimator) rebuilt from a `sample_p` equation's operands."""
    n_dist = params["n_dist"]
    key = operands[0]
    dist = jax.tree.unflatten(params["dist_def"], operands[1 : 1 + n_dist])
    est = jax.tree.unflatten(params["est_def"], operands[1 + n_dist :])
    return key, dist, est


def _sample_one(key, dist):
    return dist.sample(key)


def batched(fn, n: int):
    for _ in range(n):
        fn = jax.vmap(fn)
    return fn


def _impl(*operands, dist_def, est_def, n_dist, addr, batch_ndims):
    params = dict(dist_def=dist_def, est_def=est_def, n_dist=n_dist)
    key, dist, _ = site_of(params, operands)
    return batched(_sample_one, batch_ndims)(key, dist)


def _abstract_eval(*avals, **params):
    out = jax.eval_shape(lambda *ops: _impl(*ops, **params), *avals)
    return jax.core.ShapedArray(out.shape, out.dtype)


sample_p.def_impl(_impl)
sample_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(sample_p, mlir.lower_fun(_impl, multiple_results=False))


def _batch(args, dims, *, batch_ndims, **params):
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    moved = []
    for a, d in zip(args, dims, strict=True):
        if d is None:
            moved.append(jnp.broadcast_to(a, (size,) + jnp.shape(a)))
        else:
            moved.append(jnp.moveaxis(a, d, 0))
    return sample_p.bind(*moved, batch_ndims=batch_ndims + 1, **params), 0


batching.primitive_batchers[sample_p] = _batch


def _no_jvp(primals, tangents, *, addr, **params):
    where = f"at {(addr[0] if len(addr) == 1 else addr)!r}" if addr else "(unaddressed)"
    raise TypeError(
        f"the random choice {where} is being differentiated outside an expectation "
        "program. Gradients of sampled values exist only as ADEV estimates.\nFix: decorate "
        "the function you differentiate with `@gv.expectation` (or use a `gv.vi` objective)."
    )


ad.primitive_jvps[sample_p] = _no_jvp


# add_cost: a term added to the program's result, collected by the interpreter -------------
add_cost_p.def_impl(lambda x: jnp.zeros((), jnp.result_type(float)))
add_cost_p.def_abstract_eval(lambda x: jax.core.ShapedArray((), jnp.result_type(float)))
mlir.register_lowering(
    add_cost_p,
    mlir.lower_fun(lambda x: jnp.zeros((), jnp.result_type(float)), multiple_results=False),
)
batching.primitive_batchers[add_cost_p] = lambda args, dims: (
    add_cost_p.bind(jnp.sum(args[0])), None
)


# stop_gradient on tangents ------------------------------------------------------------------
# The interpreter's tangents are ordinary operands of JAX operations (`jax.lax.switch` in
# `_Interp._cond`, `jax.jvp` of a deterministic `cond`). When a cond's predicate is
# batched (a program vmapped inside `jax.grad`, or a cond after an enum site), JAX's cond
# batching rule runs every branch on every lane and applies `stop_gradient` to each
# operand in the lanes that did not take the branch; applied to a tangent, that
# stop_gradient lands in the linear program that reverse mode transposes, and JAX has no
# transpose rule for it (jax-ml/jax#22011, #39219; open in JAX 0.10.2). Its transpose is
# zero: stop_gradient passes no derivative, as its JVP rule says (so a lane gets no
# gradient from a branch it did not take, and a non-finite derivative there, such as the
# log of a negative number, cannot leak in as 0 * inf). Registered only where JAX has none.
def _stop_gradient_transpose(ct, x):
    return [ad.Zero(x.aval)]


if ad_util.stop_gradient_p not in ad.primitive_transposes:
    ad.primitive_transposes[ad_util.stop_gradient_p] = _stop_gradient_transpose
