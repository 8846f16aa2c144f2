"""summary.json is strict JSON: non-finite numbers become null at any depth (JSON has no NaN or Infinity)."""

import json
import math

import numpy as np

from evaluation.report import finite_or_null, write_json


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_finite_or_null_replaces_non_finite_floats_at_any_depth():
    summary = {"auc@5": float("nan"), "loss": float("inf"), "pairs": 3, "name": "x", "ok": True, "none": None,
               "nested": {"a": [1.5, float("-inf"), (np.float32("nan"), np.float64(2.0))]}}
    cleaned = finite_or_null(summary)
    assert cleaned == {"auc@5": None, "loss": None, "pairs": 3, "name": "x", "ok": True, "none": None,
                       "nested": {"a": [1.5, None, [None, 2.0]]}}
    _strict_loads(json.dumps(cleaned, allow_nan=False))


def test_write_json_nested_lists_and_numpy(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"rows": {"loftr": {"auc@10": float("nan")}}, "curve": [float("inf"), 1.0],
                      "np": np.float32(np.inf)})
    assert _strict_loads(path.read_text()) == {"rows": {"loftr": {"auc@10": None}}, "curve": [None, 1.0],
                                               "np": None}


def test_finite_or_null_keeps_finite_values_exactly():
    assert finite_or_null({"x": 0.1, "y": [math.pi]}) == {"x": 0.1, "y": [math.pi]}
