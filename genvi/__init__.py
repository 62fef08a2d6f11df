"""genvi: programmable variational inference for JAX.

Models and guides are generative functions (`@gv.gen`), objectives are expectation
programs (`@gv.expectation`, `gv.vi`), and their gradients are unbiased estimates built
by program transformation (ADEV).
"""

from genvi import adev, distributions
from genvi.adev import expectation
from genvi.core import (
    ChoiceMap, GenerativeFunction, Selection, Trace, choice_map, cond, gen, scan, select,
    switch, vmap,
)
from genvi.distributions import (
    bernoulli, beta, binomial, categorical, dirichlet, exponential, flip, gamma, geometric,
    half_normal, laplace, lognormal, mv_normal, mv_normal_diag, normal, poisson, student_t,
    uniform,
)

__version__ = "0.1.0"

__all__ = [
    "adev", "distributions", "expectation", "ChoiceMap", "GenerativeFunction", "Selection",
    "Trace", "choice_map", "cond", "gen", "scan", "select", "switch", "vmap", "bernoulli",
    "beta", "binomial", "categorical", "dirichlet", "exponential", "flip", "gamma",
    "geometric", "half_normal", "laplace", "lognormal", "mv_normal", "mv_normal_diag",
    "normal", "poisson", "student_t", "uniform",
]
