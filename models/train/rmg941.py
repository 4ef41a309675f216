#!/usr/bin/env python3
"""rmg941 fan-state soft sensor: ExtraTrees on the Rust FFT-band features, exported to ONNX.

    models/train/.venv/bin/python models/train/rmg941.py [--data DIR] [--features CSV]

Features: `vigil features rmg941` (profile models/profiles/rmg941.toml: one 600×6 frame ->
16 log10 band energies per channel = 96 features, computed by the Rust transform chain).
The labels come in three contiguous blocks (1 stopped, 0 normal, 2 error). Validation split:
the last 20 % of each class's block (contiguous, never random rows). Also reported: 5
contiguous folds per class block. The shipped model is trained on the training part only, so
the validation figures of `vigil eval rmg941` are out of sample.
Writes models/rmg941.onnx (input `features` float32 [N,96] -> `probabilities` float32 [N,3],
classes 0,1,2).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import ExtraTreesClassifier

sys.path.insert(0, str(Path(__file__).parent))
import vigil_features as vf  # noqa: E402

SEED = 941
VAL_FRACTION = 0.2
OUT = vf.MODELS_DIR / "rmg941.onnx"


def model():
    return ExtraTreesClassifier(n_estimators=200, min_samples_leaf=1, random_state=SEED, n_jobs=1)


def val_mask(y: np.ndarray, k: int | None = None, folds: int = 5) -> np.ndarray:
    """Last VAL_FRACTION of each class's frames, or contiguous fold k of `folds`."""
    v = np.zeros(len(y), bool)
    for c in np.unique(y):
        i = np.flatnonzero(y == c)
        n = len(i)
        if k is None:
            v[i[int(n * (1 - VAL_FRACTION)):]] = True
        else:
            v[i[k * n // folds:(k + 1) * n // folds]] = True
    return v


def figures(y, p):
    return {
        "n": int(len(y)),
        "accuracy": float((p == y).mean()),
        "per_class": {str(c): float((p[y == c] == c).mean()) for c in range(3)},
        "error_recall": float((p[y == 2] == 2).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=vf.DATASETS / "rmg941")
    ap.add_argument("--features", type=Path)
    a = ap.parse_args()
    path = a.features or vf.export("rmg941", a.data, Path(tempfile.mkdtemp()) / "rmg941.csv")
    _, _, lab, X = vf.read(path)
    y = lab.astype(int)
    folds = []
    for k in range(5):
        v = val_mask(y, k)
        folds.append(figures(y[v], model().fit(X[~v], y[~v]).predict(X[v])))
    v = val_mask(y)
    clf = model().fit(X[~v], y[~v])
    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    g = onx.graph
    old_in = g.input[0].name
    g.input[0].name = "features"
    for n in g.node:
        n.input[:] = ["features" if i == old_in else i for i in n.input]
        n.output[:] = ["probabilities" if o == "probabilities" else o for o in n.output]
    assert any(o.name == "probabilities" for o in g.output), [o.name for o in g.output]
    onnx.checker.check_model(onx)
    OUT.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(OUT))
    prob = sess.run(["probabilities"], {"features": X})[0]
    assert np.allclose(prob, clf.predict_proba(X), atol=1e-5)
    print(json.dumps({
        "classes": clf.classes_.tolist(),
        "validation_last20pct": figures(y[v], prob[v].argmax(1)),
        "train": figures(y[~v], prob[~v].argmax(1)),
        "contiguous_5fold": folds,
        "sha256": vf.sha256(OUT),
    }, indent=1))


if __name__ == "__main__":
    main()
