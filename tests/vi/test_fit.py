"""Tests for `genvi.vi.fit`: convergence, compilation, early stops, checkpoints, devices."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genvi.vi.fit import NonFiniteWarning, fit

KEY = jax.random.key(0)


def quadratic(key, p):
    return -((p["a"] - 3.0) ** 2)


def regression_data(n=48, seed=1):
    x = jax.random.normal(jax.random.key(seed), (n, 2))
    y = x @ jnp.array([1.5, -0.5]) + 0.25
    return {"x": x, "y": y}


def noisy_regression(key, p, batch):
    pred = batch["x"] @ p["w"] + p["b"]
    noise = 0.1 * jax.random.normal(key, batch["y"].shape)
    return -jnp.mean((pred - batch["y"] - noise) ** 2)


def test_deterministic_objective_converges_and_history():
    params, history = fit(quadratic, {"a": 0.0}, optax.adam(0.1), steps=250, key=KEY,
                          chunk_size=100, progress=False)
    assert abs(float(params["a"]) - 3.0) < 1e-3
    assert set(history) == {"objective", "step"}
    assert isinstance(history["objective"], np.ndarray)
    assert history["objective"].shape == (250,)
    np.testing.assert_array_equal(history["step"], np.arange(250))
    # history[i] is the objective at the params before update i
    assert history["objective"][0] == -9.0
    assert history["objective"][-1] > -1e-5


def test_num_samples_averages_a_stochastic_objective():
    # E_eps[-(a + eps - 3)^2] = -(a - 3)^2 - 1 with eps ~ N(0, 1); optimum a = 3, value -1.
    def objective(key, p):
        return -((p["a"] + jax.random.normal(key) - 3.0) ** 2)

    params, history = fit(objective, {"a": 0.0}, optax.sgd(0.05), steps=400, key=KEY,
                          num_samples=16, progress=False)
    # SGD's stationary spread of a around 3 here is ~0.06 (gradient noise 2/sqrt(16));
    # 0.3 is 5 standard deviations.
    assert abs(float(params["a"]) - 3.0) < 0.3
    # each history value is a mean of 16 draws of -(eps + d)^2: sd sqrt(2/16) = 0.35, so
    # the mean of the last 200 has sd 0.025; 0.15 is 6 sd.
    assert abs(np.mean(history["objective"][-200:]) + 1.0) < 0.15


def test_equinox_module_with_minibatches():
    data = regression_data(n=64)
    model = eqx.nn.Linear(2, "scalar", key=jax.random.key(3))

    def objective(key, m, batch):
        return -jnp.mean((jax.vmap(m)(batch["x"]) - batch["y"]) ** 2)

    trained, history = fit(objective, model, optax.adam(0.05), steps=400, key=KEY,
                           data=data, batch_size=16, progress=False)
    assert isinstance(trained, eqx.nn.Linear)
    assert trained.in_features == 2 and trained.out_features == "scalar"
    np.testing.assert_allclose(trained.weight, [[1.5, -0.5]], atol=2e-2)
    np.testing.assert_allclose(trained.bias, 0.25, atol=2e-2)
    assert history["objective"].shape == (400,)


def test_compiles_once_for_many_chunks_and_a_remainder():
    traces = []

    def objective(key, p, batch):
        traces.append(1)  # runs only while JAX traces the objective
        return noisy_regression(key, p, batch)

    data = regression_data()
    params = {"w": jnp.zeros(2), "b": 0.0}
    kw = dict(key=KEY, data=data, batch_size=8, num_samples=2, progress=False)
    p_chunked, h = fit(objective, params, optax.adam(0.05), steps=53, chunk_size=10, **kw)
    assert len(traces) == 1  # 5 full chunks + a 3-step remainder, one trace
    assert h["objective"].shape == (53,)
    p_whole, _ = fit(objective, params, optax.adam(0.05), steps=53, chunk_size=1000, **kw)
    for k in params:
        np.testing.assert_allclose(p_chunked[k], p_whole[k], rtol=1e-6, atol=1e-6)


def test_callback_stops_early():
    seen = []

    def callback(step, params, history):
        seen.append((step, float(params["a"]), history["objective"].shape))
        return step >= 30

    p_stop, history = fit(quadratic, {"a": 0.0}, optax.adam(0.1), steps=100, key=KEY,
                          chunk_size=10, callback=callback, progress=False)
    assert [s for s, _, _ in seen] == [10, 20, 30]
    assert all(shape == (s,) for s, _, shape in seen)
    assert history["objective"].shape == (30,)
    assert history["stopped"]["step"] == 30
    p_30, _ = fit(quadratic, {"a": 0.0}, optax.adam(0.1), steps=30, key=KEY, chunk_size=10,
                  progress=False)
    assert float(p_stop["a"]) == float(p_30["a"]) == seen[-1][1]


def test_non_finite_gradient_stops_and_keeps_last_good_params():
    # a_t = 3 - 3 * 0.8^t under SGD(0.1); a > 1.5 from t = 4 on, where b's gradient is
    # d/db sqrt(b - b) = inf * 0 = nan while the objective stays finite.
    def objective(key, p):
        bad = jnp.sqrt(jnp.where(p["a"] > 1.5, p["b"] - p["b"], 1.0))
        return -((p["a"] - 3.0) ** 2) - p["b"] ** 2 + bad

    params = {"a": 0.0, "b": 1.0}
    with pytest.warns(NonFiniteWarning, match=r"step 4: non-finite gradient \(params leaves .*: \['b'\]\)"):
        p, history = fit(objective, params, optax.sgd(0.1), steps=20, key=KEY, chunk_size=3,
                         progress=False)
    assert history["stopped"] == {"step": 4, "reason": "non-finite gradient", "leaves": ["['b']"]}
    assert history["objective"].shape == (4,) and np.all(np.isfinite(history["objective"]))
    p4, _ = fit(objective, params, optax.sgd(0.1), steps=4, key=KEY, progress=False)
    assert float(p["a"]) == float(p4["a"]) and float(p["b"]) == float(p4["b"])
    assert np.isfinite(float(p["a"])) and float(p["a"]) > 1.5


def test_non_finite_objective_is_reported():
    def objective(key, p):
        return jnp.where(p["a"] > 1.0, jnp.nan, 0.0) * p["b"] - (p["a"] - 3.0) ** 2

    with pytest.warns(NonFiniteWarning, match="non-finite objective"):
        _, history = fit(objective, {"a": 0.0, "b": 1.0}, optax.sgd(0.1), steps=50, key=KEY,
                         progress=False)
    assert history["stopped"]["reason"] == "non-finite objective and gradient"
    assert history["stopped"]["leaves"] == ["['b']"]


def _resume_kw(tmp_path):
    return dict(key=KEY, data=regression_data(n=50), batch_size=8, num_samples=2,
                chunk_size=100, progress=False, checkpoint_dir=str(tmp_path / "ckpt"))


def test_resume_matches_uninterrupted_run(tmp_path):
    params = {"w": jnp.zeros(2), "b": 0.0}
    kw = _resume_kw(tmp_path)
    straight, h_straight = fit(noisy_regression, params, optax.adam(0.03), steps=300,
                               **{**kw, "checkpoint_dir": None})
    half, h_half = fit(noisy_regression, params, optax.adam(0.03), steps=150, **kw)
    assert h_half["objective"].shape == (150,)
    resumed, h_resumed = fit(noisy_regression, params, optax.adam(0.03), steps=300, **kw)
    for k in params:
        np.testing.assert_array_equal(resumed[k], straight[k])
    np.testing.assert_array_equal(h_resumed["objective"], h_straight["objective"])
    np.testing.assert_array_equal(h_resumed["step"], np.arange(300))
    # resuming a finished run trains no further
    again, h_again = fit(noisy_regression, params, optax.adam(0.03), steps=300, **kw)
    np.testing.assert_array_equal(again["w"], straight["w"])
    assert h_again["objective"].shape == (300,)


def test_checkpoint_files_are_pickle_free_and_checked_on_resume(tmp_path):
    kw = dict(key=KEY, progress=False, checkpoint_dir=str(tmp_path), chunk_size=10,
              checkpoint_every=20)
    params = {"a": 0.0, "b": jnp.zeros(2)}
    objective = lambda key, p: -((p["a"] - 1.0) ** 2) - jnp.sum(p["b"] ** 2)
    p, _ = fit(objective, params, optax.adam(0.1), steps=45, **kw)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == ["checkpoint.json", "state-000000045.npz"]  # no temp files, old ones gone
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["step"] == 45 and len(manifest["history"]["objective"]) == 45
    with np.load(tmp_path / manifest["state_file"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    # 2 params leaves + adam's count, mu (2 leaves), nu (2 leaves)
    assert sorted(arrays) == [f"leaf_{i}" for i in range(7)]
    assert all(a.dtype != object for a in arrays.values())
    np.testing.assert_array_equal(arrays["leaf_1"], p["b"])

    with pytest.raises(ValueError, match=r"shape \[2\] in the checkpoint but \[3\] now"):
        fit(objective, {"a": 0.0, "b": jnp.zeros(3)}, optax.adam(0.1), steps=60, **kw)
    with pytest.raises(ValueError, match="holds 2 params leaves but the current params have 3"):
        fit(objective, {"a": 0.0, "b": jnp.zeros(2), "c": 1.0}, optax.adam(0.1), steps=60, **kw)
    # resume=False starts over and overwrites
    _, h = fit(objective, {"a": 0.0, "b": jnp.zeros(3)}, optax.adam(0.1), steps=5,
               **{**kw, "resume": False})
    assert h["objective"].shape == (5,)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 5


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("not a function", {"a": 0.0}), {}, TypeError, "must be a function"),
        ((quadratic, {"a": 0.0}), {"steps": 0}, ValueError, "`steps` must be a positive int"),
        ((quadratic, {"a": 0.0}), {"steps": 10.0}, ValueError, "`steps` must be a positive int"),
        ((quadratic, {"a": 0.0}), {"data": jnp.zeros((5, 2)), "batch_size": 6}, ValueError,
         r"batch_size=6` is larger than the data set \(5 examples\)"),
        ((quadratic, {"a": 0.0}), {"data": {"x": jnp.zeros(5), "y": jnp.zeros(4)}}, ValueError,
         "same leading size"),
        ((quadratic, {"n": 3, "flag": True}), {}, ValueError, "no floating-point arrays"),
        ((quadratic, {"a": 0.0}), {"key": 0}, TypeError, r"jax\.random\.key\(0\)"),
        ((lambda k, p: p["a"] * jnp.ones(2), {"a": 0.0}), {}, TypeError, "real scalar"),
    ],
)
def test_validation_errors(args, kwargs, error, match):
    kwargs = {"steps": 10, "key": KEY, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        fit(*args, optax.adam(0.1), **kwargs)


_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh
    from genvi.vi.fit import fit

    assert len(jax.devices()) == 4, jax.devices()
    x = jax.random.normal(jax.random.key(1), (64, 3))
    data = {"x": x, "y": x @ jnp.array([1.0, -2.0, 0.5]) + 0.3}

    def objective(key, p, batch):
        noise = 0.01 * jax.random.normal(key, batch["y"].shape)
        return -jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"] + noise) ** 2)

    params = {"w": jnp.zeros(3), "b": 0.0}
    kw = dict(steps=120, key=jax.random.key(0), data=data, batch_size=16, chunk_size=50,
              num_samples=2, progress=False)
    p1, h1 = fit(objective, params, optax.adam(0.05), **kw)
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    p4, h4 = fit(objective, params, optax.adam(0.05), mesh=mesh, **kw)
    for k in p1:
        np.testing.assert_allclose(p4[k], p1[k], rtol=1e-5, atol=1e-5)
        assert len(p4[k].sharding.device_set) == 4, p4[k].sharding
    np.testing.assert_allclose(h4["objective"], h1["objective"], rtol=1e-4, atol=1e-5)

    # without data the num_samples axis is split across the devices
    obj2 = lambda key, p: -((p["a"] + jax.random.normal(key) - 3.0) ** 2)
    kw2 = dict(steps=60, key=jax.random.key(2), num_samples=8, progress=False)
    q1, g1 = fit(obj2, {"a": 0.0}, optax.adam(0.1), **kw2)
    q4, g4 = fit(obj2, {"a": 0.0}, optax.adam(0.1), devices=jax.devices(), **kw2)
    np.testing.assert_allclose(q4["a"], q1["a"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g4["objective"], g1["objective"], rtol=1e-4, atol=1e-5)

    try:
        fit(objective, params, optax.adam(0.05), devices=jax.devices(), **{**kw, "batch_size": 6})
    except ValueError as e:
        assert "divisible by the number of devices (4)" in str(e), e
    else:
        raise AssertionError("expected a ValueError for batch_size=6 on 4 devices")
    print("MULTI-DEVICE OK")
    """
)


def test_four_devices_match_one_device(tmp_path):
    script = tmp_path / "multi_device.py"
    script.write_text(_MULTI_DEVICE_SCRIPT)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MULTI-DEVICE OK" in result.stdout


def test_no_warning_on_a_healthy_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(quadratic, {"a": 0.0}, optax.adam(0.1), steps=20, key=KEY, progress=False)
