"""genvi: programmable variational inference for JAX.

Models and guides are generative functions (`@gv.gen`), objectives are expectation
programs (`@gv.expectation`, `gv.vi`), and their gradients are unbiased estimates built
by program transformation (ADEV).
"""

from genvi import adev, distributions, vi
from genvi.adev import expectation
from genvi.core import (
    ChoiceMap,
    GenerativeFunction,
    Selection,
    Trace,
    choice_map,
    cond,
    gen,
    scale,
    scan,
    select,
    switch,
    vmap,
)
from genvi.distributions import (
    bernoulli,
    beta,
    binomial,
    categorical,
    dirichlet,
    exponential,
    flip,
    gamma,
    geometric,
    half_normal,
    laplace,
    lognormal,
    mv_normal,
    mv_normal_diag,
    normal,
    poisson,
    student_t,
    uniform,
)

__version__ = "0.1.0"


def __getattr__(name):
    # `gv.fit` lives in the VI layer; resolved lazily so the layer can be imported alone.
    if name == "fit":
        from genvi.vi.fit import fit

        return fit
    raise AttributeError(f"module 'genvi' has no attribute {name!r}")

__all__ = [
    "adev", "distributions", "vi", "fit", "scale", "expectation", "ChoiceMap", "GenerativeFunction", "Selection",
    "Trace", "choice_map", "cond", "gen", "scan", "select", "switch", "vmap", "bernoulli",
    "beta", "binomial", "categorical", "dirichlet", "exponential", "flip", "gamma",
    "geometric", "half_normal", "laplace", "lognormal", "mv_normal", "mv_normal_diag",
    "normal", "poisson", "student_t", "uniform",
]
