"""Quickstart: variational inference on the "noisy cone" with genvi.

The model draws a point (x, y) from a broad prior and observes its squared radius
z = x**2 + y**2 with noise. Given z = 5 the posterior is a ring of radius about sqrt(5);
a naive (mean-field Gaussian) guide can only cover part of it. We fit the guide by
maximizing the ELBO with `gv.fit` and print the bound before and after.

Run: `make demo` (or `python examples/quickstart.py`).
"""

import time

import jax
import jax.numpy as jnp
import optax

import genvi as gv


@gv.gen
def model():
    x = gv.normal(0.0, 10.0) @ "x"
    y = gv.normal(0.0, 10.0) @ "y"
    rs = x**2 + y**2
    gv.normal(rs, 0.1 + rs / 100.0) @ "z"


@gv.gen
def guide(data, phi):
    gv.normal(phi["mx"], jnp.exp(phi["sx"])) @ "x"
    gv.normal(phi["my"], jnp.exp(phi["sy"])) @ "y"


data = gv.choice_map({"z": 5.0})
elbo = gv.vi.elbo(model, guide)  # an expectation program: elbo(key, data, model_args, guide_args)


def objective(key, phi):
    """One-sample ELBO estimate; its gradient is an unbiased estimate of the ELBO's gradient."""
    return elbo(key, data, (), (data, phi))


def mean_elbo(key, phi, n=10_000):
    """A precise ELBO value: the mean of n independent one-sample estimates."""
    keys = jax.random.split(key, n)
    return jnp.mean(jax.vmap(lambda k: objective(k, phi))(keys))


def main():
    t0 = time.perf_counter()
    key = jax.random.key(0)
    k_init, k_fit, k_eval = jax.random.split(key, 3)

    # The generative-function interface on the model itself.
    tr = model.simulate(k_init, ())
    logp, _ = model.assess(tr.choices, ())
    print(f"prior sample: x={float(tr.choices['x']):.3f} y={float(tr.choices['y']):.3f} "
          f"z={float(tr.choices['z']):.3f}  score={float(tr.score):.3f} (assess: {float(logp):.3f})")

    phi = {"mx": 0.0, "my": 0.0, "sx": 0.0, "sy": 0.0}
    value, grad = jax.value_and_grad(objective, argnums=1)(k_init, phi)
    print(f"one ELBO estimate at the initial guide: {float(value):.3f}")
    print("its gradient estimate:", {k: round(float(v), 3) for k, v in grad.items()})

    before = mean_elbo(k_eval, phi)
    phi, history = gv.fit(objective, phi, optax.adam(1e-2), steps=2000, key=k_fit, num_samples=16)
    after = mean_elbo(k_eval, phi)
    # history["objective"][i] is the step-i estimate (mean of num_samples ELBO estimates).
    last = history["objective"][-100:].mean()

    print(f"ELBO before: {float(before):.3f}")
    print(f"ELBO after:  {float(after):.3f}   (mean of the last 100 training estimates: {last:.3f})")
    mx, my, sx, sy = (float(phi[k]) for k in ("mx", "my", "sx", "sy"))
    print(f"learned guide: x ~ normal({mx:.3f}, {jnp.exp(sx):.3f}), "
          f"y ~ normal({my:.3f}, {jnp.exp(sy):.3f})")
    # The posterior is a thin ring of radius about sqrt(5) = 2.24; a product of two
    # independent normals can only sit on one part of it.
    print(f"guide mean's radius: {(mx**2 + my**2) ** 0.5:.3f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
