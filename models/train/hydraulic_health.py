#!/usr/bin/env python3
"""Hydraulic rig health: valve condition, internal pump leakage and accumulator pressure from the
eight 1 Hz channels of one 60 s load cycle (TS1-TS4, CE, CP, SE, VS1), one ONNX model per target.

    models/train/.venv/bin/python models/train/hydraulic_health.py [--data DIR] [--targets valve,pump,accumulator]

Input: the raw window exactly as the pipeline assembles it, exported by `vigil features hydraulic
--target T` with the profile models/profiles/hydraulic-T.toml (no transforms: 60 rows x 8 channels,
row-major = 480 numbers per cycle), so training and serving see the same numbers.

Model: a linear classifier (LDA for valve and pump, class-balanced logistic regression for the
accumulator; CLASSIFIER) on a fixed linear feature map of the window (the SE efficiency
factor at its 31 distinct sample times - SE is updated every 2 s - plus the mean of TS1 over the
cycle). The load cycle's switching transients in SE carry the valve lag (t = 9 s), the leakage
(plateau level) and the accumulator (transients at t = 19/29/39/49 s, relative to the plateau);
the TS1 mean lets the linear model correct those transients for oil temperature, which the cooler
condition moves by ~20 degC. Both classifiers are linear, so feature map + classifier fold into one matrix: the ONNX
graph is window -> Sub(mean) -> Reshape[N,480] -> MatMul -> Add -> Softmax (a few kB, loads in
milliseconds; no tree ensemble to optimise at cold start).

Evaluation (issue 13): contiguous 5-fold by blocks of each class of the target (fold k = the
k-th fifth of each class's cycles, in time order), each fold predicted by a model fitted on the
other four; the worst fold is reported first. One ONNX model per fold is written to
models/folds/ so `vigil eval hydraulic --target T` reproduces the fold figures through the
pipeline. The shipped models are fitted on all cycles.

Calibration: the logits are divided by a temperature fitted on the out-of-fold logits (negative
log-likelihood for LDA, Brier score for the logistic regression: CALIBRATION_LOSS); it folds into the graph's weights.
Reliability is measured on out-of-fold predictions (the temperature for fold k is fitted on the
other folds only): expected calibration error and a reliability table. The profiles'
`min_confidence` turns a top probability below it into the verdict `uncertain` (no alert,
counted); the card reports accuracy at each coverage level.

Writes models/hydraulic-{valve,pump,accumulator}.onnx, models/folds/hydraulic-T-fold{1..5}.onnx,
models/hydraulic-health.md and models/fixtures/hydraulic-health-windows.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
import vigil_features as vf  # noqa: E402

SEED = 20150511  # LDA (svd solver) is deterministic; the seed is set for numpy anyway.
FOLDS = 5
FOLD_DIR = Path(__file__).resolve().parents[1] / "folds"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hydraulic-health-windows.json"
THRESHOLDS = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
# min_confidence of each profile (models/profiles/hydraulic-T.toml) is chosen from the coverage
# table (out of fold): the lowest threshold whose pooled accuracy on covered cycles reaches the
# target's goal (the accumulator's bar, 90 %; 95 % for the valve); the pump needs none.
ACCURACY_GOAL = {"valve": 0.95, "pump": None, "accumulator": 0.90}
T, C = 60, 8
CHANNELS = ["TS1", "TS2", "TS3", "TS4", "CE", "CP", "SE", "VS1"]
SE, TS1 = CHANNELS.index("SE"), CHANNELS.index("TS1")
# SE holds each value for two samples (t = 1,2 / 3,4 / ...): its distinct sample times.
SE_TIMES = [0] + list(range(1, T, 2))
# Profile label order (= ONNX output order) per target.
TARGETS = {
    "valve": ["100", "90", "80", "73"],
    "pump": ["0", "1", "2"],
    "accumulator": ["130", "115", "100", "90"],
}
MEANING = {
    "valve": "valve condition % (100 optimal, 90 small lag, 80 severe lag, 73 close to total failure)",
    "pump": "internal pump leakage (0 none, 1 weak, 2 severe)",
    "accumulator": "accumulator pressure, bar (130 optimal, 115 slightly reduced, 100 severely reduced, 90 close to total failure)",
}
# Measured by hand with the Rust test (see the card); updated when the graphs change.
LOAD_TIMES = ("debug build: the first load in a process 35 ms (it includes loading libonnxruntime and "
              "creating the ORT environment), then 0.8-1.1 ms per model; release build: first 46-48 ms, then "
              "0.5-0.8 ms per model.")
# Training rows filter by SE plateau (t = 21..28 s), per target. The previous accumulator model
# trained only on cycles with a plateau above 30 % (SE collapses in part of the 3 % cooler block);
# under the class-block folds that filter is worse (worst fold 62.5 % vs 70.2 %), so it is off.
SE_PLATEAU_MIN: dict[str, float] = {}
# Classifier on the feature map, per target, chosen by the worst fold (search in the card):
# "lda" = LinearDiscriminantAnalysis (svd); "logreg" = multinomial logistic regression on
# standardised features, weak L2 (C = LOGREG_C) and class-balanced weights. Both are linear in the
# window, so the ONNX graph is the same. The accumulator's classes come in long runs per cooler
# block whose transients differ in shape (the first 130 bar block, the SE collapse in the 3 %
# cooler block): LDA's pooled covariance is dominated by those runs, the discriminative fit is not.
CLASSIFIER = {"valve": "lda", "pump": "lda", "accumulator": "logreg"}
LOGREG_C = 300.0


def feature_map() -> np.ndarray:
    """480 x d matrix: window (flattened row-major, t * 8 + c) -> features."""
    cols = []
    for t in SE_TIMES:
        m = np.zeros(T * C)
        m[t * C + SE] = 1.0
        cols.append(m)
    m = np.zeros(T * C)
    m[np.arange(T) * C + TS1] = 1.0 / T
    cols.append(m)
    return np.stack(cols, 1)


def se_plateau(raw: np.ndarray) -> np.ndarray:
    return raw.reshape(-1, T, C)[:, 21:29, SE].mean(1)


def fold_mask(y: np.ndarray, k: int) -> np.ndarray:
    """Contiguous fold k: the k-th of FOLDS equal blocks of each class's cycles (time order)."""
    v = np.zeros(len(y), bool)
    for c in np.unique(y):
        i = np.flatnonzero(y == c)
        v[i[k * len(i) // FOLDS:(k + 1) * len(i) // FOLDS]] = True
    return v


def fit(target: str, raw: np.ndarray, y: np.ndarray, train: np.ndarray):
    """The target's classifier on the feature map, folded into (mean[480], W[480,K], b[K]) in
    profile label order: logits = (window - mean) @ W + b."""
    rows = train.copy()
    if target in SE_PLATEAU_MIN:
        rows &= se_plateau(raw) > SE_PLATEAU_MIN[target]
    M = feature_map()
    x = raw[rows].astype(np.float64)
    mu = x.mean(0)
    f = x @ M
    if CLASSIFIER[target] == "lda":
        clf = LinearDiscriminantAnalysis().fit(f, y[rows])
        order = [list(clf.classes_).index(c) for c in TARGETS[target]]
        W = M @ clf.coef_.T[:, order]
        return clf, mu, W, clf.intercept_[order] + mu @ W
    # Standardised features: z = (f - mean f) / sd f, and mean f = mu @ M, so the scaling folds
    # into W and the centring into the graph's Sub(mean).
    sd = f.std(0)
    sd[sd == 0] = 1.0
    clf = LogisticRegression(C=LOGREG_C, class_weight="balanced", max_iter=20000).fit((f - f.mean(0)) / sd, y[rows])
    order = [list(clf.classes_).index(c) for c in TARGETS[target]]
    W = M @ (clf.coef_.T[:, order] / sd[:, None])
    return clf, mu, W, clf.intercept_[order]


def logits(model, raw: np.ndarray) -> np.ndarray:
    _, mu, W, b = model
    return (raw.astype(np.float64) - mu) @ W + b


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def temperature(z: np.ndarray, yi: np.ndarray, loss: str = "nll") -> float:
    """Temperature minimising the loss of softmax(z / T) (grid, then refine): the negative
    log-likelihood, or the Brier score ("brier"), which a few confidently wrong cycles cannot
    dominate (the weakly regularised logistic regression has logits in the hundreds on them)."""
    def nll(t):
        p = softmax(z / t)
        if loss == "brier":
            return ((p - np.eye(z.shape[1])[yi]) ** 2).sum(1).mean()
        return -np.log(p[np.arange(len(yi)), yi] + 1e-12).mean()
    grid = np.exp(np.linspace(np.log(0.2), np.log(50), 200))
    t = grid[np.argmin([nll(g) for g in grid])]
    fine = np.linspace(t * 0.95, t * 1.05, 41)
    return float(fine[np.argmin([nll(g) for g in fine])])


# Calibration loss per classifier: LDA keeps the likelihood fit its models shipped with.
CALIBRATION_LOSS = {"lda": "nll", "logreg": "brier"}


def calibrated(model, t: float):
    lda, mu, W, b = model
    return lda, mu, W / t, b / t


def ece(p: np.ndarray, yi: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of the top probability, and the reliability table."""
    top, hit = p.max(1), p.argmax(1) == yi
    rows, total = [], 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (top > lo) & (top <= hi)
        if m.any():
            rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()), "confidence": float(top[m].mean()),
                         "accuracy": float(hit[m].mean())})
            total += m.sum() / len(top) * abs(top[m].mean() - hit[m].mean())
    return float(total), rows


def coverage(p: np.ndarray, yi: np.ndarray, fold: np.ndarray) -> list[dict]:
    """Per threshold: share of cycles with a verdict, accuracy on those (pooled and worst fold)."""
    out = []
    for th in THRESHOLDS:
        keep = p.max(1) >= th
        hit = p.argmax(1) == yi
        per_fold = [float(hit[keep & (fold == k)].mean()) if (keep & (fold == k)).any() else None for k in range(FOLDS)]
        out.append({"threshold": th, "coverage": float(keep.mean()),
                    "accuracy": float(hit[keep].mean()) if keep.any() else None,
                    "worst_fold_accuracy": min((a for a in per_fold if a is not None), default=None),
                    "worst_fold_coverage": float(min((keep[fold == k].mean() for k in range(FOLDS))))})
    return out


def predict_proba(model, raw: np.ndarray) -> np.ndarray:
    z = logits(model, raw)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def channel_statistics(raw: np.ndarray) -> np.ndarray:
    """Per-channel mean, std, min, max, median and end - start over the cycle: 6 x 8 features."""
    w = raw.reshape(-1, T, C).astype(np.float64)
    return np.concatenate([w.mean(1), w.std(1), w.min(1), w.max(1), np.median(w, 1), w[:, -1] - w[:, 0]], 1)


# The yardstick is "a plain feature forest on a contiguous split"; its figures depend on the
# split, so the same forests are measured here on exactly our splits. Two feature sets: the usual
# per-channel statistics, and those plus SE at its sample times (what our model reads), so the
# comparison is not against a straw man.
FOREST_FEATURES = {
    "channel statistics": channel_statistics,
    "channel statistics + SE at its 31 sample times": lambda raw: np.concatenate(
        [channel_statistics(raw), raw.reshape(-1, T, C)[:, SE_TIMES, SE]], 1),
}


def reference_forests(raw: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy of a 300-tree random forest per feature set: worst and mean of the folds."""
    out = {}
    for name, features in FOREST_FEATURES.items():
        x = features(raw)
        accuracy = []
        for k in range(FOLDS):
            v = fold_mask(y, k)
            forest = RandomForestClassifier(n_estimators=300, random_state=SEED, n_jobs=2).fit(x[~v], y[~v])
            accuracy.append(float((forest.predict(x[v]) == y[v]).mean()))
        out[name] = {"worst": min(accuracy), "mean": float(np.mean(accuracy))}
    return out


def figures(labels: list[str], y: np.ndarray, p: np.ndarray) -> dict:
    return {
        "n": int(len(y)),
        "accuracy": float((p == y).mean()),
        "per_class": {c: float((p[y == c] == c).mean()) if (y == c).any() else None for c in labels},
    }


def confusion(labels: list[str], y: np.ndarray, p: np.ndarray) -> np.ndarray:
    m = np.zeros((len(labels), len(labels)), int)
    for t, q in zip(y, p):
        m[labels.index(t), labels.index(q)] += 1
    return m


def export_onnx(target: str, model, path: Path) -> None:
    _, mu, W, b = model
    labels = TARGETS[target]
    k = len(labels)
    inits = [
        numpy_helper.from_array(mu.reshape(T, C).astype(np.float32), "mean"),
        numpy_helper.from_array(np.array([-1, T * C], np.int64), "flat_shape"),
        numpy_helper.from_array(W.astype(np.float32), "weights"),
        numpy_helper.from_array(b.astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["window", "mean"], ["centred"], name="centre"),
        helper.make_node("Reshape", ["centred", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "weights"], ["scores"], name="discriminant"),
        helper.make_node("Add", ["scores", "bias"], ["logits"], name="bias"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        f"hydraulic_{target}",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", T, C])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", k])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vigil hydraulic_health.py")
    m.ir_version = 8
    for key, value in {
        "classes": ",".join(labels),
        "input_channels": ",".join(CHANNELS),
        "input_units": "degC,degC,degC,degC,%,kW,%,mm/s",
        "target": target,
    }.items():
        m.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())


def table(labels: list[str], m: np.ndarray, unit: str) -> str:
    head = "| true \\ predicted | " + " | ".join(f"{c}{unit}" for c in labels) + " |"
    sep = "|---|" + "---:|" * len(labels)
    rows = [f"| **{c}{unit}** | " + " | ".join(str(v) for v in m[i]) + " |" for i, c in enumerate(labels)]
    return "\n".join([head, sep, *rows])


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def blocks(y: np.ndarray, rows: np.ndarray) -> str:
    """Contiguous runs of each class within `rows`, as 'label: a-b (n)' text."""
    out = []
    idx = np.flatnonzero(rows)
    start = idx[0]
    for i in range(1, len(idx) + 1):
        if i == len(idx) or y[idx[i]] != y[idx[i - 1]] or idx[i] != idx[i - 1] + 1:
            out.append((y[start], int(start), int(idx[i - 1])))
            if i < len(idx):
                start = idx[i]
    return out


def fixture(target: str, raw: np.ndarray, y: np.ndarray, prob: np.ndarray, path: Path) -> None:
    """2 cycles per class (first and last of the class) with onnxruntime's probabilities."""
    labels = TARGETS[target]
    rows = []
    for c in labels:
        i = np.flatnonzero(y == c)
        rows += [int(i[len(i) // 3]), int(i[2 * len(i) // 3])]
    path.write_text(json.dumps({
        "model": f"hydraulic-{target}.onnx", "classes": labels, "input": "window", "output": "probabilities",
        "shape": [T, C],
        "windows": [{"index": r, "label": str(y[r]), "input": [float(v) for v in raw[r]],
                     "probabilities": [float(p) for p in prob[r]]} for r in rows],
    }) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=vf.DATASETS / "hydraulic")
    ap.add_argument("--targets", default="valve,pump,accumulator")
    a = ap.parse_args()
    np.random.seed(SEED)
    tmp = Path(tempfile.mkdtemp())
    FOLD_DIR.mkdir(exist_ok=True)
    report = {}
    for target in a.targets.split(","):
        labels = TARGETS[target]
        path = vf.export("hydraulic", a.data, tmp / f"{target}.csv", ["--target", target])
        index, _, y, raw = vf.read(path)
        assert raw.shape[1] == T * C, raw.shape
        assert (index == np.arange(len(index))).all()
        n = len(y)
        yi = np.array([labels.index(c) for c in y])
        t0 = time.time()
        fold_of = np.zeros(n, int)
        oof = np.zeros((n, len(labels)))
        fold_models = []
        for k in range(FOLDS):
            v = fold_mask(y, k)
            fold_of[v] = k
            m = fit(target, raw, y, ~v)
            fold_models.append(m)
            oof[v] = logits(m, raw[v])
        # Cross-fitted temperature: fold k's is fitted on the other folds' out-of-fold logits.
        loss = CALIBRATION_LOSS[CLASSIFIER[target]]
        temps = [temperature(oof[fold_of != k], yi[fold_of != k], loss) for k in range(FOLDS)]
        p_raw = softmax(oof)
        p_cal = np.zeros_like(p_raw)
        folds = []
        for k in range(FOLDS):
            v = fold_of == k
            p_cal[v] = softmax(oof[v] / temps[k])
            folds.append(figures(labels, y[v], np.array(labels)[oof[v].argmax(1)]))
            fpath = FOLD_DIR / f"hydraulic-{target}-fold{k + 1}.onnx"
            export_onnx(target, calibrated(fold_models[k], temps[k]), fpath)
            pk = ort.InferenceSession(str(fpath)).run(["probabilities"], {"window": raw[v].reshape(-1, T, C)})[0]
            assert np.abs(pk - p_cal[v]).max() < 1e-3, (target, k)
        t_all = temperature(oof, yi, loss)
        model = calibrated(fit(target, raw, y, np.ones(n, bool)), t_all)
        fit_s = time.time() - t0
        out = vf.MODELS_DIR / f"hydraulic-{target}.onnx"
        export_onnx(target, model, out)
        prob = ort.InferenceSession(str(out)).run(["probabilities"], {"window": raw.reshape(n, T, C)})[0]
        ref = predict_proba(model, raw)
        fixture(target, raw, y, prob, vf.MODELS_DIR / "fixtures" / f"hydraulic-{target}-windows.json")
        ece_raw, _ = ece(p_raw, yi)
        ece_cal, reliability = ece(p_cal, yi)
        cov = coverage(p_cal, yi, fold_of)
        goal = ACCURACY_GOAL[target]
        chosen = None if goal is None else next(
            (c["threshold"] for c in cov if c["accuracy"] is not None and c["accuracy"] >= goal), None)
        report[target] = {
            "labels": labels,
            "n": n,
            "folds": folds,
            "worst_fold": {"accuracy": min(f["accuracy"] for f in folds),
                           "class": min(x for f in folds for x in f["per_class"].values() if x is not None)},
            "mean_accuracy": float(np.mean([f["accuracy"] for f in folds])),
            "pooled": figures(labels, y, np.array(labels)[oof.argmax(1)]),
            "confusion_pooled": confusion(labels, y, np.array(labels)[oof.argmax(1)]).tolist(),
            "temperatures_per_fold": temps,
            "temperature": t_all,
            "ece_uncalibrated": ece_raw,
            "ece_calibrated": ece_cal,
            "reliability": reliability,
            "coverage": cov,
            "min_confidence": chosen,
            "max_abs_dp_ort_vs_numpy": float(np.abs(prob - ref).max()),
            "same_argmax": bool((prob.argmax(1) == ref.argmax(1)).all()),
            "bytes": out.stat().st_size,
            "sha256": vf.sha256(out),
            "fit_seconds": round(fit_s, 2),
            "reference_forests": reference_forests(raw, y),
        }
        print(json.dumps({target: {k: report[target][k] for k in ("worst_fold", "mean_accuracy", "ece_uncalibrated", "ece_calibrated", "coverage", "sha256")}}), flush=True)
    if set(report) == set(TARGETS):
        write_card(report)
    print(json.dumps(report, indent=1))


# The independent evaluation (issue 13) of the previous models on cycles the project never saw.
UNSEEN = {"valve": "78 % (class 90: 20 %)", "pump": "100 %", "accumulator": "85 % (class 100: 33 %)"}


def write_card(r: dict) -> None:
    units = {"valve": " %", "pump": "", "accumulator": " bar"}
    L = [
        "# hydraulic-{valve,pump,accumulator}.onnx — hydraulic health from the 1 Hz channels",
        "",
        "Generated by `models/train/hydraulic_health.py`; retrain instead of editing the numbers.",
        "Three linear classifiers for the UCI/ZeMA hydraulic rig, one per component (LDA for valve and pump, class-balanced",
        "logistic regression for the accumulator), from one 60 s load cycle",
        "of the eight 1 Hz channels TS1–TS4, CE, CP, SE, VS1; probabilities calibrated by a temperature.",
        "",
    ]
    for t in TARGETS:
        L.append(f"- `hydraulic-{t}.onnx` (profile `hydraulic-{t}`): {MEANING[t]}.")
    L += [
        "",
        "## Results first: contiguous 5-fold by blocks of each class (`vigil eval hydraulic --target T`)",
        "",
        "Fold k holds the k-th fifth of each class's cycles (in time order), predicted by a model fitted on the other",
        "four. Bars (issue 13): accumulator ≥ 90 % overall and every class ≥ 80 % in the worst fold.",
        "",
        "| target | worst fold | worst class in any fold | mean of folds | previous model, unseen cycles (independent) | plain forest, worst / mean |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for t in TARGETS:
        f = r[t]["reference_forests"]
        best = max(f.values(), key=lambda x: x["worst"])
        L.append(f"| {t} | **{pct(r[t]['worst_fold']['accuracy'])}** | {pct(r[t]['worst_fold']['class'])} | "
                 f"{pct(r[t]['mean_accuracy'])} | {UNSEEN[t]} | {pct(best['worst'])} / {pct(best['mean'])} |")
    L += [
        "",
        "Plain forest = scikit-learn `RandomForestClassifier` (300 trees) on per-channel statistics (+ SE at its 31",
        "sample times), on the same folds; the better of the two feature sets is shown.",
        "",
    ]
    for t in TARGETS:
        L += [f"### {t}", "", "| fold | n | accuracy | per class |", "|---:|---:|---:|---|"]
        for k, f in enumerate(r[t]["folds"]):
            pc = ", ".join(f"{c}{units[t]}: {pct(x)}" for c, x in f["per_class"].items() if x is not None)
            L.append(f"| {k + 1} | {f['n']} | {pct(f['accuracy'])} | {pc} |")
        L += ["", "Pooled out-of-fold confusion (rows truth, columns predicted):", "",
              table(TARGETS[t], np.array(r[t]["confusion_pooled"]), units[t]), ""]
    L += [
        "## Calibration, `uncertain` and coverage",
        "",
        "The logits are divided by a temperature fitted on out-of-fold logits (negative log-likelihood for the LDA models,",
        "whose posteriors are over-confident; Brier score for the accumulator's logistic regression, whose few confidently",
        "wrong cycles have logits in the hundreds and would dominate a likelihood fit); in the fold figures below, fold k's",
        "temperature is fitted on the other folds only.",
        "Expected calibration error (ECE, 10 bins of the top probability), out of fold:",
        "",
        "| target | temperature | ECE before | ECE after |",
        "|---|---:|---:|---:|",
    ]
    for t in TARGETS:
        L.append(f"| {t} | {r[t]['temperature']:.2f} | {r[t]['ece_uncalibrated']:.3f} | {r[t]['ece_calibrated']:.3f} |")
    L += ["", "Reliability (calibrated, out of fold): mean top probability vs accuracy per bin.", ""]
    for t in TARGETS:
        cells = "; ".join(f"{b['bin']}: n = {b['n']}, {b['confidence']:.2f} → {b['accuracy']:.2f}" for b in r[t]["reliability"])
        L.append(f"- {t}: {cells}")
    L += [
        "",
        "A profile's `min_confidence` turns a window whose top probability is below it into the verdict `uncertain`:",
        "no alert is raised or cleared, and it is counted. Accuracy on the cycles that keep a verdict, by threshold",
        "(out of fold, calibrated; pooled over folds, and the worst fold):",
        "",
        "| target | threshold | coverage | accuracy on covered | worst fold: accuracy | worst fold: coverage |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in TARGETS:
        for c in r[t]["coverage"]:
            L.append(f"| {t} | {c['threshold']:.2f} | {pct(c['coverage'])} | {pct(c['accuracy'])} | "
                     f"{pct(c['worst_fold_accuracy'])} | {pct(c['worst_fold_coverage'])} |")
    L += [
        "",
        "Shipped thresholds (`min_confidence` in `models/profiles/hydraulic-T.toml`): the lowest threshold of the table",
        "whose pooled accuracy on covered cycles reaches the goal (accumulator 90 %, its bar; valve 95 %; pump none):",
        ", ".join(f"{t} {r[t]['min_confidence']}" for t in TARGETS) + " (None = every window gets a verdict).",
        "",
        "## Contract (the Rust side depends on it)",
        "",
        "| | name | type | shape | meaning |",
        "|---|---|---|---|---|",
        "| input | `window` | float32 | `[batch, 60, 8]` | raw values, time-major: row t = TS1, TS2, TS3, TS4 (°C), CE (%), CP (kW), SE (%), VS1 (mm/s) at second t |",
        "| output | `probabilities` | float32 | `[batch, K]` | softmax, class order = the profile's `labels` |",
        "",
        "Class order: valve **[100, 90, 80, 73]**, pump **[0, 1, 2]**, accumulator **[130, 115, 100, 90]**.",
        "Graph: `window` − mean → Reshape `[batch, 480]` → MatMul `[480, K]` → Add → Softmax (opset 17, IR 8); the",
        "temperature is folded into the weights. No transforms in the profiles. Training reads the windows through",
        "`vigil features hydraulic --target T` (the pipeline's own assembly): no train/serve skew. Fold models:",
        "`models/folds/hydraulic-T-fold{1..5}.onnx`; Rust parity fixtures: `models/fixtures/hydraulic-T-windows.json`.",
        "",
        "| file | bytes | sha256 | onnxruntime vs numpy, max abs Δp |",
        "|---|---:|---|---:|",
    ]
    for t in TARGETS:
        L.append(f"| `models/hydraulic-{t}.onnx` | {r[t]['bytes']} | `{r[t]['sha256']}` | {r[t]['max_abs_dp_ort_vs_numpy']:.1e} |")
    L += [
        "",
        "## Features and model",
        "",
        "SE (efficiency factor) at its 31 distinct sample times (SE is held for 2 s) and the mean of TS1 over the cycle.",
        "Valve and pump: scikit-learn `LinearDiscriminantAnalysis` (svd solver) on those 32 features. Accumulator:",
        f"multinomial `LogisticRegression` on the standardised features, C = {LOGREG_C:g} (weak L2), class-balanced weights.",
        "Either is folded with the feature map (and the standardisation) into one 480 × K matrix. The valve lag shows as",
        "the SE dip at t = 9 s, the pump leakage as the plateau level, the accumulator pressure in the load-step",
        "transients at t = 9/19/29/39/49 s, shifted by oil temperature (the cooler block), which the TS1 mean corrects.",
        "",
        "What moves with accumulator pressure (1 Hz channels, measured on the data): within one cell of",
        "cooler × valve × pump, SE at t = 29 s (the third load step's dip) rises by 0.4–1.4 points per class step with a",
        "spread of 0.1–0.3 (20 % cooler, valve 100 %, no leakage: 57.0 / 57.7 / 58.5 / 59.2 for 130 / 115 / 100 / 90 bar);",
        "pump leakage lowers it by 2–4 points per step, the valve hardly moves it, the cooler by ≤ 0.5, but in the 3 % cooler",
        "block 115 and 100 bar merge (57.4 / 57.6). The t = 39 s overshoot falls with pressure (81.3 / 80.4 / 79.9 / 79.3)",
        "and by 1.5–2 points from the 20 % to the 100 % cooler. The first 130 bar run (rows 0–260, 3 % cooler, hot oil)",
        "has other transients at t = 19 and 49 s (SE 66–69 at t = 19 s instead of 55) than the 130 bar runs of the other",
        "cooler blocks. From t = 20 to 49 s SE collapses to 10–11 % in 206 cycles of the 3 % cooler block (rows 175–557),",
        "157 of them in fold 1. TS, CE, CP and VS1 carry the cooler and pump, not the accumulator (alone: worst fold ≤ 33 %).",
        "",
        "## Search (same folds)",
        "",
        "Accumulator, worst fold / mean (worst class in any fold), each on the same five folds:",
        "",
        f"- shipped: class-balanced logistic regression, C = {LOGREG_C:g}: "
        f"{pct(r['accumulator']['worst_fold']['accuracy'])} / {pct(r['accumulator']['mean_accuracy'])} "
        f"({pct(r['accumulator']['worst_fold']['class'])}); C = 1000: 78.7 / 87.2 %",
        "  (49.5 %); C = 3000: 77.3 / 87.0 %; without class weights (SE from t = 9 s) C = 1 / 10 / 100 / 1000: 56.7 / 65.4 /",
        "  78.4 / 77.6 % worst. Nested check of that choice (for each held-out fold, C from 10 / 100 / 300 / 1000 / 3000",
        "  chosen by the worst of the other four folds): worst 79.3 %, mean 88.2 %, so choosing C does not inflate the figure.",
        "- the previous model, LDA on the same 32 features: 70.2 / 83.2 % (20.9 %); its SE-plateau training filter 62.5 / 80.7 %;",
        "  LDA with shrinkage 33–53 % worst; QDA 35 %; degree-2 logistic 45 %; LDA over joint valve × accumulator or",
        "  valve × pump × accumulator classes 48–69 %; greedy forward selection for LDA over 70 candidates (SE times,",
        "  channel means, slopes, VS1/CP bins) 72.4 / 83.4 % (49.5 %); with dip depths, ratios and dip × temperature 61.8 %.",
        "- linear SVM (C = 100 / 1000) 77.8 / 87.8 % (58.2 %) and 79.0 / 88.4 % (56.0 %): no probabilities, not better worst.",
        "- more features for the logistic regression (C = 1000, no class weights): + TS1–TS4 means 78.1 / 84.7 % (15.4 %); + all channel",
        "  means 73.3 %; + CE mean 79.0 / 85.0 % (39.6 %); + VS1 in 12 bins 73.3 %; + temperature slopes 68.2 %; SE at all",
        "  60 s 78.1 / 86.9 %.",
        "- ordinal (three cumulative binary logistic models) 72–77 % worst; weights balancing each cooler × valve × pump ×",
        "  class cell 76.7–78.4 %; projecting out the within-class cooler directions (1–6 dims) 65.6–76.7 %.",
        "- conditioning on the other components: one model per cooler, pump or valve state, even given the TRUE state",
        "  (an upper bound for conditioning on the predicted state) 50.9 / 57.6 / 70.5 %; an additive Gaussian model",
        "  (class + valve + pump + cooler effects, marginalised over the nuisance) on the SE transients 53–73 %, 60–63 % with",
        "  the true nuisance states (the class effects do not carry over between cooler blocks).",
        "- a gate sending SE-collapsed cycles to a model of the uncollapsed samples: 70.5 % (collapsed cycles 45 %, against",
        "  61 % with the single model).",
        "- nonlinear: RBF SVM 34–57 %, MLP 45–57 %, histogram gradient boosting 49.2 / 71.2 %, ExtraTrees 40–59 %, gradient",
        "  boosting 43–55 %, random forest (table above).",
        "",
        "None reaches the bar. Valve: logistic regression 68.8–71.5 % worst / 74–78 % mean (LDA kept); pump: 94.6–95.5 %",
        "worst (LDA kept); the earlier valve studies are in `models/hydraulic-valve-notes.md` (old split).",
        "",
        "## What is weak",
        "",
        "- **Accumulator misses the bar** (≥ 90 % overall, every class ≥ 80 % in the worst fold). Each accumulator class",
        "  occurs in one long run per cooler block (100–260 cycles), so a held-out fold is mostly one class × cooler block",
        "  the model never saw, and the transients' class effects are not the same in every block (above). The failures:",
        "  fold 1 (3 % cooler, incl. 157 SE-collapsed cycles) 115 → 100 and 90 → 100 bar; fold 3: 130 bar in the 3 % cooler",
        "  block with valve/pump changes → 115/100; fold 5: 130 bar in the 100 % cooler block → 115. The `uncertain`",
        "  verdict trades coverage for accuracy (table above); the 10/100 Hz pressure channels (PS1–PS6), which this copy",
        "  lacks, are where the literature finds the accumulator.",
        "- **Valve 90 % vs 100 %** is not separable from these channels (`models/hydraulic-valve-notes.md`): calibrated",
        "  probabilities put those cycles near 0.5–0.7, and `min_confidence` makes them `uncertain` rather than wrong.",
        "",
        "## Reproduce",
        "",
        "```",
        "cargo build -p vigil-cli --bin vigil",
        "VIGIL_BIN=target/debug/vigil /path/to/venv/bin/python models/train/hydraulic_health.py",
        "for t in valve pump accumulator; do target/debug/vigil eval hydraulic --target $t --data ../shared/datasets/hydraulic | tail -n1; done",
        "```",
        "",
        f"Fitting takes about {sum(r[t]['fit_seconds'] for t in TARGETS):.0f} s (forests extra); LDA and lbfgs are deterministic.",
        f"Versions: Python {platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}.",
        "",
        "Data: UCI \"Condition monitoring of hydraulic systems\" (ZeMA gGmbH; Helwig, Pignanelli, Schütze, I2MTC 2015,",
        "doi:10.1109/I2MTC.2015.7151267), CC BY 4.0; the project's copy has 1769 of the 2205 cycles, the rest is kept",
        "aside for independent evaluation.",
        "",
    ]
    (vf.MODELS_DIR / "hydraulic-health.md").write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
