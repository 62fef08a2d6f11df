"""Primitive distributions: `normal(0., 1.) @ "x"` samples (or scores) a site.

Each distribution is an equinox Module whose parameters are pytree leaves, so it can be
built inside `jit`, `vmap` and `grad`. `sample(key, shape)` returns
`shape + batch_shape + event_shape`; `log_prob(x)` is elementwise over the batch shape.
"""

from genvi.distributions._base import Distribution, Using
from genvi.distributions._continuous import (
    Beta,
    Exponential,
    Gamma,
    HalfNormal,
    Laplace,
    LogNormal,
    Normal,
    StudentT,
    Uniform,
    beta,
    exponential,
    gamma,
    half_normal,
    laplace,
    lognormal,
    normal,
    student_t,
    uniform,
)
from genvi.distributions._discrete import (
    Bernoulli,
    Binomial,
    Categorical,
    Geometric,
    Poisson,
    bernoulli,
    binomial,
    categorical,
    flip,
    geometric,
    poisson,
)
from genvi.distributions._multivariate import (
    Dirichlet,
    MvNormal,
    MvNormalDiag,
    dirichlet,
    mv_normal,
    mv_normal_diag,
)
from genvi.distributions._wrap import Wrapped, wrap

__all__ = [
    "Distribution",
    "Using",
    "wrap",
    "Wrapped",
    # constructors
    "normal",
    "mv_normal_diag",
    "mv_normal",
    "bernoulli",
    "flip",
    "categorical",
    "uniform",
    "beta",
    "gamma",
    "dirichlet",
    "poisson",
    "geometric",
    "exponential",
    "laplace",
    "lognormal",
    "half_normal",
    "student_t",
    "binomial",
    # classes
    "Normal",
    "MvNormalDiag",
    "MvNormal",
    "Bernoulli",
    "Categorical",
    "Uniform",
    "Beta",
    "Gamma",
    "Dirichlet",
    "Poisson",
    "Geometric",
    "Exponential",
    "Laplace",
    "LogNormal",
    "HalfNormal",
    "StudentT",
    "Binomial",
]
