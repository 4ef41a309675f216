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
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

sys.path.insert(0, str(Path(__file__).parent))
import vigil_features as vf  # noqa: E402

SEED = 20240607
TRAIN_FRACTION = 0.75
MARGIN = 0.02  # threshold = max training score + margin (training frames only)
OUT = vf.MODELS_DIR / "cwru.onnx"


def compact_isolation_forest(iso: IsolationForest, n_features: int) -> onnx.ModelProto:
    """The forest as ONE TreeEnsembleRegressor plus two arithmetic nodes.

    skl2onnx writes ~6,000 nodes for 200 trees (a sub-graph per tree), which ONNX Runtime takes
    over ten seconds to load: too slow for a Lambda cold start. The score only needs, per leaf,
    the path length sklearn assigns to it (depth + c(samples in leaf) - 1), averaged over the
    trees; then -score_samples = 2 ** (-mean_path / c(max_samples)).
    """
    assert iso.max_features == 1.0, "trees must see every feature (no per-tree feature subset)"
    ids, tree_ids, feats, modes, values, trues, falses = [], [], [], [], [], [], []
    t_ids, t_nodes, t_tree, t_weights = [], [], [], []
    for t, est in enumerate(iso.estimators_):
        tree = est.tree_
        depth = np.zeros(tree.node_count, dtype=np.int64)  # root at depth 0 (edges)
        for node in range(tree.node_count):
            for child in (tree.children_left[node], tree.children_right[node]):
                if child >= 0:
                    depth[child] = depth[node] + 1
        for node in range(tree.node_count):
            ids.append(node)
            tree_ids.append(t)
            left, right = tree.children_left[node], tree.children_right[node]
            if left >= 0:
                feats.append(int(tree.feature[node]))
                modes.append("BRANCH_LEQ")  # sklearn goes left when x <= threshold
                values.append(float(tree.threshold[node]))
                trues.append(int(left))
                falses.append(int(right))
            else:
                feats.append(0)
                modes.append("LEAF")
                values.append(0.0)
                trues.append(0)
                falses.append(0)
                n_leaf = tree.n_node_samples[node]
                path = depth[node] + _average_path_length([n_leaf])[0]
                t_ids.append(t)
                t_nodes.append(node)
                t_tree.append(0)
                t_weights.append(float(path))
    forest = helper.make_node(
        "TreeEnsembleRegressor", ["features"], ["mean_path"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function="AVERAGE", post_transform="NONE",
        nodes_nodeids=ids, nodes_treeids=tree_ids, nodes_featureids=feats, nodes_modes=modes,
        nodes_values=values, nodes_truenodeids=trues, nodes_falsenodeids=falses,
        nodes_missing_value_tracks_true=[0] * len(ids), nodes_hitrates=[1.0] * len(ids),
        target_ids=t_tree, target_nodeids=t_nodes, target_treeids=t_ids, target_weights=t_weights,
    )
    scale = -np.log(2.0) / _average_path_length([iso.max_samples_])[0]
    graph = helper.make_graph(
        [forest,
         helper.make_node("Mul", ["mean_path", "scale"], ["log_score"]),
         helper.make_node("Exp", ["log_score"], ["score"])],
        "cwru_isolation_forest",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.array([[scale]], np.float32), "scale")],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="vigil models/train/cwru.py",
        ir_version=9,  # what onnxruntime 1.31 reads (onnx 1.23 would write 14)
    )


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

    onx = compact_isolation_forest(iso, train.shape[1])
    onnx.checker.check_model(onx)
    OUT.write_bytes(onx.SerializeToString())

    sess = ort.InferenceSession(str(OUT))
    run = lambda m: sess.run(["score"], {"features": m.astype(np.float32)})[0][:, 0]  # noqa: E731
    assert np.allclose(run(X), score(X), atol=1e-5), "onnx differs from sklearn"
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
