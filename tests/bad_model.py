"""A deliberately bad venue model for the canary tests: the shipped model
with its cost column negated, so the venue it expects to be dearest ranks
first. Same contract (features, input, output), its own version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default" / "model.onnx"


def inverted_model(dst_dir: Path, version: str = "bad-inverted-1") -> Path:
    m = onnx.load(str(DEFAULT))
    g = m.graph
    out = g.output[0].name
    for node in g.node:
        node.output[:] = [f"{out}_raw" if o == out else o for o in node.output]
    g.initializer.append(numpy_helper.from_array(np.array([[-1.0, 1.0, 1.0]], np.float32), "invert_cost"))
    g.node.append(helper.make_node("Mul", [f"{out}_raw", "invert_cost"], [out], name="invert_cost_mul"))
    onnx.checker.check_model(m)
    dst_dir.mkdir(parents=True, exist_ok=True)
    path = dst_dir / "model.onnx"
    data = m.SerializeToString()
    path.write_bytes(data)
    man = json.loads(DEFAULT.with_suffix(".json").read_text())
    man.update(version=version, sha256=hashlib.sha256(data).hexdigest(), validation={}, parent=man["version"])
    path.with_suffix(".json").write_text(json.dumps(man, indent=2))
    return path
