"""One small program per gradient estimator, checked against the exact derivative.

Each program is an expectation E_{x ~ p_theta}[f(x)] whose derivative in theta is known in
closed form. For every estimator we draw 1000 independent gradient estimates (one per
key) and print their mean, their standard deviation, and the standard error of the mean:
an unbiased estimator's mean lies within a few standard errors of the exact value.

Run: `python examples/estimators.py`.
"""

import jax
import jax.numpy as jnp

import genvi as gv

N_KEYS = 1000
THETA = 0.5


def report(name, program, theta, exact):
    """Mean and std of `N_KEYS` gradient estimates of `program` at `theta`."""
    keys = jax.random.split(jax.random.key(0), N_KEYS)
    grads = jax.jit(jax.vmap(lambda k: jax.grad(program, argnums=1)(k, theta)))(keys)
    mean, std = float(jnp.mean(grads)), float(jnp.std(grads))
    se = std / N_KEYS**0.5
    print(f"{name:<34} mean {mean:+.4f}  std {std:.4f}  (s.e. {se:.4f})  exact {exact:+.4f}")


# Continuous: E_{x ~ N(theta, 1)}[x^2] = theta^2 + 1, derivative 2 theta. ----------------

@gv.expectation
def reparam_program(key, theta):
    # normal is reparameterizable, so REPARAM is the default; `.using` makes it explicit.
    x = gv.adev.sample(gv.normal(theta, 1.0).using(gv.adev.reparam), key)
    return x**2


@gv.expectation
def reinforce_program(key, theta):
    x = gv.adev.sample(gv.normal(theta, 1.0).using(gv.adev.reinforce), key)
    return x**2


@gv.expectation
def baseline_program(key, theta):
    # A control variate b that does not depend on x keeps the estimate unbiased; b near
    # E[f] = theta^2 + 1 removes most of REINFORCE's variance.
    b = jax.lax.stop_gradient(theta**2 + 1.0)
    x = gv.adev.sample(gv.normal(theta, 1.0).using(gv.adev.baseline(gv.adev.reinforce, b)), key)
    return x**2


@gv.expectation
def mvd_normal_program(key, theta):
    x = gv.adev.sample(gv.normal(theta, 1.0).using(gv.adev.mvd), key)
    return x**2


# Discrete: E_{b ~ Bernoulli(theta)}[(b - 0.2)^2 * 3] = 3 (theta 0.64 + (1 - theta) 0.04),
# derivative 3 (0.64 - 0.04) = 1.8. -------------------------------------------------------

def f_discrete(b):
    return 3.0 * (b - 0.2) ** 2


@gv.expectation
def enum_program(key, theta):
    b = gv.adev.sample(gv.bernoulli(theta).using(gv.adev.enum), key)
    return f_discrete(b)


@gv.expectation
def reinforce_discrete_program(key, theta):
    # bernoulli is discrete, so REINFORCE is the default here.
    b = gv.adev.sample(gv.bernoulli(theta), key)
    return f_discrete(b)


@gv.expectation
def mvd_discrete_program(key, theta):
    b = gv.adev.sample(gv.bernoulli(theta).using(gv.adev.mvd), key)
    return f_discrete(b)


def main():
    print(f"d/dtheta E_(x ~ normal(theta, 1))[x^2] at theta = {THETA}:")
    exact = 2 * THETA
    report("  reparam", reparam_program, THETA, exact)
    report("  reinforce", reinforce_program, THETA, exact)
    report("  baseline(reinforce, E[x^2])", baseline_program, THETA, exact)
    report("  mvd", mvd_normal_program, THETA, exact)

    print(f"d/dtheta E_(b ~ bernoulli(theta))[3 (b - 0.2)^2] at theta = {THETA}:")
    exact = 3 * (0.8**2 - 0.2**2)
    report("  enum", enum_program, THETA, exact)
    report("  reinforce", reinforce_discrete_program, THETA, exact)
    report("  mvd", mvd_discrete_program, THETA, exact)


if __name__ == "__main__":
    main()
