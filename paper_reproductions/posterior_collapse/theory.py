"""Closed-form global optima of the linear CVAE and the two-level linear MHVAE.

Dang, Tran, Nguyen, Ho, "Beyond Vanilla Variational Autoencoders: Detecting Posterior
Collapse in Conditional and Hierarchical Variational Autoencoders", ICLR 2024 (arXiv
2306.05023), Theorems 2, 3 and 5. The formulas below were derived from the models (the
derivation is sketched in the docstrings) and agree with the official code's `utils.py`
(thotranhuu99/Posterior_collapse_CVAE_HVAE), with one difference noted in `mhvae_fixed`.
`tests/test_posterior_collapse.py` checks every formula against a direct numerical
minimization of the exact expected loss, independently of genvi.

All moments are uncentered second moments over the data set (the linear models have no
biases); the experiments centre their data first, so these are covariances there.
"""

from __future__ import annotations

import numpy as np


# --- whitening and the spectra the theorems are written in ---------------------------
def whiten(X, rel_tol=1e-10):
    """(phi, P_A) with E[x x^T] = P_A diag(phi) P_A^T, eigenvalues in descending order.
    Eigenvalues below `rel_tol * max` are treated as zero (pseudo-inverse whitening)."""
    A = X.T @ X / X.shape[0]
    phi, P = np.linalg.eigh(A)
    order = np.argsort(phi)[::-1]
    phi, P = phi[order], P[:, order]
    phi = np.where(phi > rel_tol * phi[0], phi, 0.0)
    return phi, P


def cvae_theta(X, Y):
    """The theta_i of Theorem 2: singular values of E = D (I - Z^T Z) D^T, where
    x~ = Phi^{-1/2} P_A^T x and y~ = Psi^{-1/2} P_B^T y are the whitened input and output,
    Z = E[x~ y~^T] and D = P_B Psi^{1/2}. Equivalently E = S_yy - S_yx S_xx^+ S_xy, the
    covariance of y left after its best linear prediction from x. Descending order."""
    n = X.shape[0]
    phi, PA = whiten(X)
    psi, PB = whiten(Y)
    keep_x = phi > 0
    Xt = (X @ PA[:, keep_x]) / np.sqrt(phi[keep_x])
    keep_y = psi > 0
    Yt = (Y @ PB[:, keep_y]) / np.sqrt(psi[keep_y])
    Z = Xt.T @ Yt / n
    D = PB[:, keep_y] * np.sqrt(psi[keep_y])
    E = D @ (np.eye(Z.shape[1]) - Z.T @ Z) @ D.T
    theta = np.linalg.svd(E, compute_uv=False)
    return np.sort(theta)[::-1]


def hvae_theta(X):
    """The theta_i of Theorems 3 and 5 (output = input): singular values of
    Z = E[x x~^T] = P_A Phi^{1/2}, i.e. sqrt of the eigenvalues of E[x x^T]. Descending."""
    phi, _ = whiten(X)
    return np.sqrt(phi)


def _top(theta, k):
    t = np.zeros(k)
    m = min(k, len(theta))
    t[:m] = np.sort(np.asarray(theta, dtype=np.float64))[::-1][:m]
    return t


# --- Theorem 2: linear CVAE ----------------------------------------------------------
def cvae_optimum(theta, beta, eta_enc, eta_dec, d_z):
    """Global optimum of the linear CVAE
        q(z | x, y) = N(W1 x + W2 y, diag(sigma^2)),  p(z) = N(0, eta_enc^2 I),
        p(y | z, x) = N(U1 z + U2 x, eta_dec^2 I),
    for the beta-ELBO with KL weight beta. Minimizing over U2 and W1 in closed form leaves
    a linear VAE on the residual covariance E; per singular direction with data variance
    theta, t = lambda^2 + beta (eta_dec / eta_enc)^2 minimizes
    beta c^2 theta / t + beta eta_dec^2 log t  (c = eta_dec / eta_enc), so
        lambda_i* = sqrt(max(0, theta_i - beta eta_dec^2)) / eta_enc,
        sigma_i*  = eta_enc * min(1, sqrt(beta) eta_dec / sqrt(theta_i)).
    Dimension i collapses iff theta_i <= beta eta_dec^2.

    Returns dict with `lambda` (singular values of U1, descending), `sigma` and `theta_thr`
    (the collapse threshold on theta, the same for every dimension).
    """
    t = _top(theta, d_z)
    lam = np.sqrt(np.maximum(0.0, t - beta * eta_dec**2)) / eta_enc
    with np.errstate(divide="ignore"):
        sig = eta_enc * np.minimum(1.0, np.sqrt(beta) * eta_dec / np.sqrt(t))
    return {"lambda": lam, "sigma": sig, "theta_thr": np.full(d_z, beta * eta_dec**2)}


def cvae_lambda_of_theta(theta, beta, eta_enc, eta_dec):
    return np.sqrt(np.maximum(0.0, np.asarray(theta) - beta * eta_dec**2)) / eta_enc


# --- Theorems 3 and 5: two-level Markov linear HVAE ---------------------------------------
#   guide:  q(z1 | x) = N(W1 x, sigma1^2 I)        (fixed, isotropic)
#           q(z2 | z1) = N(W2 z1, Sigma2)          (Sigma2 diagonal learnable, or sigma2^2 I)
#   model:  p(z2) = N(0, eta_enc^2 I), p(z1 | z2) = N(U2 z2, eta_dec^2 I),
#           p(x | z1) = N(U1 z1, eta_dec^2 I)
#   objective: E log p(x|z1) - beta1 E[log q(z1|x) - log p(z1|z2)] - beta2 E KL(q(z2|z1)||p(z2)).
# Minimizing over U1 (ridge) gives theta_i^2 sigma1^2 / m_i per direction, with
# m_i = lambda_i^2 + sigma1^2 the second moment of z1 along V1's i-th singular direction
# (V1 = W1 P_A Phi^{1/2}, singular values lambda_i). The z1 -> z2 level is a linear VAE on
# data with second moment m_i; its minimum over (W2, U2, Sigma2) is a function g(m) that is
# linear (beta1 m) below a threshold and concave above it, so F(m) = theta^2 sigma1^2 / m + g(m)
# is C^1 and unimodal on m >= sigma1^2; its minimizer m* gives lambda and omega (the
# singular values of U2).
def _mhvae_common(theta, sigma1, d1):
    t = _top(theta, d1)
    return t


def mhvae_learnable(theta, sigma1, eta_enc, eta_dec, beta1, beta2, d1):
    """Theorem 3 (Sigma1 = sigma1^2 I fixed, Sigma2 diagonal learnable).

    g(m) = beta1 m (+const) for m <= m0 = (beta2 / beta1) eta_dec^2, else
    beta2 eta_dec^2 log m (+const). Minimizer of F on m >= sigma1^2:
        m_B = theta sigma1 / sqrt(beta1)            if m_B <= m0,
        m_A = theta^2 sigma1^2 / (beta2 eta_dec^2)   otherwise;  m* = max(sigma1^2, .).
    lambda^2 = m* - sigma1^2;  omega^2 = max(0, m* / eta_enc^2 - (beta2 / beta1) c^2).
    """
    t = _mhvae_common(theta, sigma1, d1)
    c2 = (eta_dec / eta_enc) ** 2
    m0 = beta2 / beta1 * eta_dec**2
    m_b = t * sigma1 / np.sqrt(beta1)
    m_a = t**2 * sigma1**2 / (beta2 * eta_dec**2)
    m = np.maximum(sigma1**2, np.where(m_b <= m0, m_b, m_a))
    lam = np.sqrt(np.maximum(0.0, m - sigma1**2))
    omega = np.sqrt(np.maximum(0.0, m / eta_enc**2 - beta2 / beta1 * c2))
    return {"lambda": lam, "omega": np.sort(omega)[::-1], "m": m}


def mhvae_fixed(theta, sigma1, sigma2, eta_enc, eta_dec, beta1, beta2, d1):
    """Theorem 5 (Sigma1 = sigma1^2 I and Sigma2 = sigma2^2 I both fixed).

    g(m) = beta1 m (+const) for m <= m1 = (beta2 / beta1) c^2 sigma2^2, else
    2 sigma2 c sqrt(beta1 beta2 m) (+const). Minimizer of F on m >= sigma1^2:
        m_B = theta sigma1 / sqrt(beta1)                                   if m_B <= m1,
        m_A = (theta^2 sigma1^2 / (sigma2 c sqrt(beta1 beta2)))^(2/3)       otherwise;
    m* = max(sigma1^2, .), lambda^2 = m* - sigma1^2,
    omega^2 = max(0, sqrt(beta2 / beta1) c sqrt(m*) / sigma2 - (beta2 / beta1) c^2).

    These agree with the official `calculate_lambda_omega_2_linear_nonleanable_isotropic_
    Sigma_beta` except its branch test `theta >= sqrt(beta2^2 beta1) c^2 sigma2^2 / sigma1`,
    which by the derivation is `theta >= (beta2 / sqrt(beta1)) c^2 sigma2^2 / sigma1` (the two
    coincide at beta1 = 1; the formulas inside the branch are the same).
    """
    t = _mhvae_common(theta, sigma1, d1)
    c = eta_dec / eta_enc
    m1 = beta2 / beta1 * c**2 * sigma2**2
    m_b = t * sigma1 / np.sqrt(beta1)
    m_a = (t**2 * sigma1**2 / (sigma2 * c * np.sqrt(beta1 * beta2))) ** (2.0 / 3.0)
    m = np.maximum(sigma1**2, np.where(m_b <= m1, m_b, m_a))
    lam = np.sqrt(np.maximum(0.0, m - sigma1**2))
    omega = np.sqrt(np.maximum(
        0.0, np.sqrt(beta2 / beta1) * c * np.sqrt(m) / sigma2 - beta2 / beta1 * c**2))
    return {"lambda": lam, "omega": np.sort(omega)[::-1], "m": m}


# --- collapse thresholds, generic over the formulas above ------------------------------
def threshold_theta(value_of_theta, hi=1e3, iters=80):
    """The theta at which `value_of_theta(theta)` (non-decreasing, >= 0) leaves zero:
    sup{theta >= 0 : value == 0}. 0.0 when the value is positive for every theta > 0,
    inf when it is zero up to `hi`."""
    if value_of_theta(1e-12) > 0:
        return 0.0
    if value_of_theta(hi) <= 0:
        return np.inf
    lo, up = 1e-12, hi
    for _ in range(iters):
        mid = 0.5 * (lo + up)
        if value_of_theta(mid) > 0:
            up = mid
        else:
            lo = mid
    return 0.5 * (lo + up)


def collapse_epsilon(value_of_theta, theta_thr, margin=0.01):
    """The value below which a trained singular value counts as collapsed: the theory's value
    at theta = (1 + margin) * theta_thr, i.e. a trained value is 'collapsed' when the theta it
    implies is within `margin` of the threshold. For a quantity that never collapses
    (theta_thr == 0) half its value at theta -> 0."""
    if theta_thr == 0.0:
        return 0.5 * value_of_theta(1e-12)
    if not np.isfinite(theta_thr):
        return np.inf
    return value_of_theta((1.0 + margin) * theta_thr)


# --- the exact expected losses (for checking the formulas, independently of genvi) -------
def cvae_expected_loss(p, Sxx, Syy, Sxy, beta, eta_enc, eta_dec, xp=np):
    """2 x (negative beta-ELBO) of the linear CVAE averaged over data with second moments
    S_xx, S_yy, S_xy = E[x y^T], up to an additive constant. p: W1, W2, U1, U2, log_sigma."""
    W1, W2, U1, U2 = p["W1"], p["W2"], p["U1"], p["U2"]
    s2 = xp.exp(2 * p["log_sigma"])
    A = U1 @ W1 + U2
    B = U1 @ W2 - xp.eye(Syy.shape[0])
    recon = (xp.trace(A @ Sxx @ A.T) + xp.trace(B @ Syy @ B.T) + 2 * xp.trace(A @ Sxy @ B.T)
             + xp.sum((U1**2) * s2[None, :]))
    mu2 = (xp.trace(W1 @ Sxx @ W1.T) + xp.trace(W2 @ Syy @ W2.T)
           + 2 * xp.trace(W1 @ Sxy @ W2.T))
    kl = (mu2 + xp.sum(s2)) / eta_enc**2 - xp.sum(xp.log(s2))
    return recon / eta_dec**2 + beta * kl


def mhvae_expected_loss(p, Sxx, sigma1, eta_enc, eta_dec, beta1, beta2, sigma2=None, xp=np):
    """2 x (negative beta1/beta2-ELBO) of the linear MHVAE, up to an additive constant.
    p: W1, U1, W2, U2 and, when `sigma2` is None (learnable Sigma2), log_sigma2."""
    W1, U1, W2, U2 = p["W1"], p["U1"], p["W2"], p["U2"]
    d0, d1 = Sxx.shape[0], W1.shape[0]
    if sigma2 is None:
        s2 = xp.exp(2 * p["log_sigma2"])
        logdet = xp.sum(xp.log(s2))
    else:
        s2 = sigma2**2 * xp.ones(W2.shape[0])
        logdet = 0.0
    R = xp.eye(d0) - U1 @ W1
    recon = xp.trace(R @ Sxx @ R.T) + sigma1**2 * xp.sum(U1**2)
    M = W1 @ Sxx @ W1.T + sigma1**2 * xp.eye(d1)
    Q = xp.eye(d1) - U2 @ W2
    lvl1 = xp.trace(Q @ M @ Q.T) + xp.sum((U2**2) * s2[None, :])
    kl2 = (xp.trace(W2 @ M @ W2.T) + xp.sum(s2)) / eta_enc**2 - logdet
    return (recon + beta1 * lvl1) / eta_dec**2 + beta2 * kl2
