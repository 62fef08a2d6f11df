"""Variational inference as programs: objectives (maximized), families, closed-form KLs."""

from genvi.vi.conjugate import fit_conjugate, gamma_precision_posterior, normal_gamma_marginal
from genvi.vi.families import (
    SIR,
    Marginal,
    Normalized,
    diwhvi,
    hvi,
    iwhvi,
    marginal,
    normalize,
    sir,
)
from genvi.vi.fit import NonFiniteWarning, fit
from genvi.vi.kl import kl_divergence
from genvi.vi.objectives import elbo, iwelbo, p_wake, q_wake, renyi, vimco

__all__ = [
    "SIR", "Marginal", "Normalized", "diwhvi", "hvi", "iwhvi", "marginal", "normalize",
    "sir", "kl_divergence", "elbo", "iwelbo", "p_wake", "q_wake", "renyi", "vimco",
    "fit", "NonFiniteWarning",
    "fit_conjugate", "gamma_precision_posterior", "normal_gamma_marginal",
]
