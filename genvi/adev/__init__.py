"""ADEV: expectation programs and the gradient estimators they compile to."""

from genvi.adev.estimators import (
    MVD,
    Baseline,
    Enum,
    Estimator,
    Reinforce,
    Reparam,
    baseline,
    default_for,
    enum,
    mvd,
    reinforce,
    reparam,
)
from genvi.adev.expectation import E, Expectation, add_cost, expectation, sample

__all__ = [
    "Estimator", "Reparam", "Reinforce", "Baseline", "Enum", "MVD", "reparam", "reinforce",
    "baseline", "enum", "mvd", "default_for", "E", "Expectation", "expectation", "sample",
    "add_cost",
]
