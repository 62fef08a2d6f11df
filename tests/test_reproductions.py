"""Every reproduction's --quick path runs and writes a well-formed results.json."""

import json

import pytest

from paper_reproductions.__main__ import SLUGS, main

REQUIRED = {"slug", "paper", "claims", "verdict", "config", "versions", "runtime_s"}


@pytest.mark.parametrize("slug", SLUGS)
def test_quick_run_writes_results(slug, tmp_path):
    assert main([slug, "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert REQUIRED <= set(result)
    assert result["slug"] == slug
    assert result["verdict"] in ("reproduced", "partially reproduced", "not reproduced")
    for claim in result["claims"]:
        assert {"claim", "criterion", "measured", "verdict"} <= set(claim)
    # the overall verdict follows from the per-claim verdicts
    ok = [c["verdict"] == "reproduced" for c in result["claims"]]
    expected = "reproduced" if all(ok) else "partially reproduced" if any(ok) else "not reproduced"
    assert result["verdict"] == expected
