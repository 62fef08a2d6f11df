"""Smoke test of benchmarks/adev_overhead.py: runs in-process at a tiny size."""

import importlib
import json
import pathlib
import sys

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
adev_overhead = importlib.import_module("benchmarks.adev_overhead")


def test_adev_overhead_quick(tmp_path, capsys):
    out = tmp_path / "sub" / "adev_overhead.json"
    result = adev_overhead.main([
        "--quick", "--sizes", "8", "--reps", "3", "--warmup", "1", "--compile-reps", "1",
        "--no-vi", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert "targets:" in printed and "batch" in printed

    saved = json.loads(out.read_text())
    assert set(saved) == {"config", "targets", "results", "summary"}
    assert saved["config"]["sizes"] == [8] and saved["config"]["reps"] == 3
    assert set(saved["summary"]) == {"runtime", "compile", "gradients"}
    (row,) = saved["results"]
    assert row["batch_size"] == 8
    for side in ("genvi", "hand"):
        assert row["runtime_ms"][side]["n"] == 3
        assert row["runtime_ms"][side]["median"] > 0
        assert row["compile"][side]["total_s"]["median"] > 0
        assert len(row["runtime_raw_ms"][side]) == 3
    for k in ("median_of_pair_ratios", "ratio_of_medians", "compile_ratio"):
        assert row["ratio"]["genvi"][k] > 0
    assert set(row["pass"]) == {"runtime", "compile", "gradients"}

    # REPARAM with the same noise: the genvi and hand-written gradients agree.
    check = row["grad_check"]["genvi_vs_hand"]
    assert check["allclose"], check
    assert row["pass"]["gradients"] and saved["summary"]["gradients"]
    assert result["results"][0]["grad_check"]["genvi_vs_hand"]["max_abs_diff"] == check["max_abs_diff"]
