#!/usr/bin/env python3
"""CWRU bearing fault detector: IsolationForest on the normal frames only, exported to ONNX.

    models/train/.venv/bin/python models/train/cwru.py [--data DIR] [--features CSV]

Features: `vigil features cwru` (profile models/profiles/cwru.toml: 1024-sample frames,
32 log10 FFT band energies from the Rust transform chain). Split (contiguous): the first 75 %
of the normal recording's frames train the forest and fix the threshold; the last 25 % are
held out for the false-positive rate; every frame of every fault file measures detection.
Writes models/cwru.onnx (input `features` float32 [N,32] -> output `score` float32 [N,1],
higher = more anomalous) and prints the figures for the model card.
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
from onnx import helper, numpy_helper, TensorProto
from skl2onnx import to_onnx
from sklearn.ensemble import IsolationForest

sys.path.insert(0, str(Path(__file__).parent))
import vigil_features as vf  # noqa: E402

SEED = 20240607
TRAIN_FRACTION = 0.75
MARGIN = 0.02  # threshold = max training score + margin (training frames only)
OUT = vf.MODELS_DIR / "cwru.onnx"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=vf.DATASETS / "cwru")
    ap.add_argument("--features", type=Path, help="features CSV already exported")
    a = ap.parse_args()
    path = a.features or vf.export("cwru", a.data, Path(tempfile.mkdtemp()) / "cwru.csv")
    _, group, label, X = vf.read(path)
    normal = X[label == "normal"]
    k = int(len(normal) * TRAIN_FRACTION)
    train, held = normal[:k], normal[k:]
    fault = X[label == "fault"]
    iso = IsolationForest(n_estimators=200, max_samples="auto", random_state=SEED).fit(train)
    score = lambda m: -iso.score_samples(m)  # noqa: E731  higher = more anomalous
    threshold = float(score(train).max() + MARGIN)

    onx = to_onnx(iso, train[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    g = onx.graph
    g.input[0].name, old_in = "features", g.input[0].name
    for n in g.node:
        n.input[:] = ["features" if i == old_in else i for i in n.input]
    scores = [o.name for o in g.output if o.name != "label"][0]
    # decision_function = score_samples - offset_  =>  -score_samples = -scores - offset_
    g.initializer.append(numpy_helper.from_array(np.array([[iso.offset_]], np.float32), "offset"))
    g.node.append(helper.make_node("Neg", [scores], ["neg_scores"]))
    g.node.append(helper.make_node("Sub", ["neg_scores", "offset"], ["score"]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]))
    onnx.checker.check_model(onx)
    OUT.write_bytes(onx.SerializeToString())

    sess = ort.InferenceSession(str(OUT))
    run = lambda m: sess.run(["score"], {"features": m.astype(np.float32)})[0][:, 0]  # noqa: E731
    assert np.allclose(run(X), score(X), atol=1e-4), "onnx differs from sklearn"
    per_file = {g_: float((run(X[group == g_]) > threshold).mean()) for g_ in np.unique(group[label == "fault"])}
    figures = {
        "train_normal_frames": int(len(train)),
        "heldout_normal_frames": int(len(held)),
        "fault_frames": int(len(fault)),
        "threshold": round(threshold, 4),
        "train_max_score": float(score(train).max()),
        "heldout_max_score": float(run(held).max()),
        "fault_min_score": float(run(fault).min()),
        "detection_rate": float((run(fault) > threshold).mean()),
        "false_positive_rate": float((run(held) > threshold).mean()),
        "per_fault_file_detection": per_file,
        "sha256": vf.sha256(OUT),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
