"""The noisy-cone model of Becker et al. (PLDI 2024), Fig. 2 / Table 4, and its two guides."""

import jax.numpy as jnp

import genvi as gv

Z_OBS = 5.0


@gv.gen
def cone():
    """x, y ~ N(0, 10); z ~ N(x^2 + y^2, 0.1 + (x^2 + y^2) / 100)."""
    x = gv.normal(0.0, 10.0) @ "x"
    y = gv.normal(0.0, 10.0) @ "y"
    rs = x**2 + y**2
    gv.normal(rs, 0.1 + rs / 100.0) @ "z"


@gv.gen
def naive(data, phi):
    """Independent normals over x and y."""
    gv.normal(phi["mx"], jnp.exp(phi["sx"])) @ "x"
    gv.normal(phi["my"], jnp.exp(phi["sy"])) @ "y"


@gv.gen
def expressive(data, psi):
    """A ring: u ~ U(0, 1), theta = 2 pi u, (x, y) ~ N((sqrt z cos, sqrt z sin), sigma)."""
    u = gv.uniform(0.0, 1.0) @ "u"
    th = 2.0 * jnp.pi * u
    r = jnp.sqrt(data["z"])
    gv.normal(r * jnp.cos(th), jnp.exp(psi["s1"])) @ "x"
    gv.normal(r * jnp.sin(th), jnp.exp(psi["s2"])) @ "y"


XY = gv.select("x", "y")
DATA = gv.choice_map({"z": Z_OBS})


def objectives():
    """name -> (objective, initial params, guide); the five columns of Table 4."""
    phi0 = {"mx": 0.0, "my": 0.0, "sx": 0.0, "sy": 0.0}
    psi0 = {"s1": 0.0, "s2": 0.0}
    return {
        "ELBO": (gv.vi.elbo(cone, naive), phi0, naive),
        "IWELBO(n=5)": (gv.vi.iwelbo(cone, naive, 5), phi0, naive),
        "HVI": (gv.vi.hvi(cone, expressive, XY), psi0, expressive),
        "IWHVI(m=5)": (gv.vi.iwhvi(cone, expressive, XY, m=5), psi0, expressive),
        "DIWHVI(n=5,m=5)": (gv.vi.diwhvi(cone, expressive, XY, n=5, m=5), psi0, expressive),
    }
