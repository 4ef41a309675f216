#!/usr/bin/env python3
"""Hydraulic rig health: valve condition, internal pump leakage and accumulator pressure from the
eight 1 Hz channels of one 60 s load cycle (TS1-TS4, CE, CP, SE, VS1), one ONNX model per target.

    models/train/.venv/bin/python models/train/hydraulic_health.py [--data DIR] [--targets valve,pump,accumulator]

Input: the raw window exactly as the pipeline assembles it, exported by `vigil features hydraulic
--target T` with the profile models/profiles/hydraulic-T.toml (no transforms: 60 rows x 8 channels,
row-major = 480 numbers per cycle), so training and serving see the same numbers.

Model: linear discriminant analysis on a fixed linear feature map of the window (the SE efficiency
factor at its 31 distinct sample times - SE is updated every 2 s - plus the mean of TS1 over the
cycle). The load cycle's switching transients in SE carry the valve lag (t = 9 s), the leakage
(plateau level) and the accumulator (transients at t = 19/29/39/49 s, relative to the plateau);
the TS1 mean lets the linear model correct those transients for oil temperature, which the cooler
condition moves by ~20 degC. LDA is linear, so feature map + LDA fold into one matrix: the ONNX
graph is window -> Sub(mean) -> Reshape[N,480] -> MatMul -> Add -> Softmax (a few kB, loads in
milliseconds; no tree ensemble to optimise at cold start).

Split: contiguous blocks, never random rows. Validation = the last 20 % of the rows (rows
1415-1768 of the 1769; all classes of each target occur there); the shipped models are trained on
rows 0-1414 only. Also reported: 5 contiguous folds (rows k*N//5 .. (k+1)*N//5), each trained on
the other four folds.

Writes models/hydraulic-{valve,pump,accumulator}.onnx and models/hydraulic-health.md.
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

sys.path.insert(0, str(Path(__file__).parent))
import vigil_features as vf  # noqa: E402

SEED = 20150511  # LDA (svd solver) is deterministic; the seed is set for numpy anyway.
VAL_FRACTION = 0.2
FOLDS = 5
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
# Accumulator only: train on cycles whose SE plateau (t = 21..28 s) is above this. In part of the
# 3 % cooler block SE collapses to ~11 % and its transients vanish (196 cycles, rows 271-557);
# those cycles carry no accumulator information in SE and pull the linear fit off. The filter
# looks at the input only (never the label), and evaluation always covers every row.
SE_PLATEAU_MIN = {"accumulator": 30.0}


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


def val_mask(n: int, k: int | None = None) -> np.ndarray:
    v = np.zeros(n, bool)
    if k is None:
        v[int(n * (1 - VAL_FRACTION)):] = True
    else:
        v[k * n // FOLDS:(k + 1) * n // FOLDS] = True
    return v


def fit(target: str, raw: np.ndarray, y: np.ndarray, train: np.ndarray):
    """LDA on the feature map, folded into (mean[480], W[480,K], b[K]) in profile label order."""
    rows = train.copy()
    if target in SE_PLATEAU_MIN:
        rows &= se_plateau(raw) > SE_PLATEAU_MIN[target]
    M = feature_map()
    lda = LinearDiscriminantAnalysis().fit(raw[rows].astype(np.float64) @ M, y[rows])
    order = [list(lda.classes_).index(c) for c in TARGETS[target]]
    W = M @ lda.coef_.T[:, order]
    b = lda.intercept_[order]
    mu = raw[rows].astype(np.float64).mean(0)
    return lda, mu, W, b + mu @ W


def predict_proba(model, raw: np.ndarray) -> np.ndarray:
    _, mu, W, b = model
    z = (raw.astype(np.float64) - mu) @ W + b
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
    """Accuracy of a 300-tree random forest per feature set: last 20 % and contiguous 5-fold mean."""
    out = {}
    for name, features in FOREST_FEATURES.items():
        x = features(raw)
        accuracy = []
        for k in [None, *range(FOLDS)]:
            v = val_mask(len(y), k)
            forest = RandomForestClassifier(n_estimators=300, random_state=SEED, n_jobs=2).fit(x[~v], y[~v])
            accuracy.append(float((forest.predict(x[v]) == y[v]).mean()))
        out[name] = {"last20pct": accuracy[0], "contiguous_5fold_mean": float(np.mean(accuracy[1:]))}
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=vf.DATASETS / "hydraulic")
    ap.add_argument("--targets", default="valve,pump,accumulator")
    a = ap.parse_args()
    np.random.seed(SEED)
    tmp = Path(tempfile.mkdtemp())
    report = {}
    for target in a.targets.split(","):
        labels = TARGETS[target]
        path = vf.export("hydraulic", a.data, tmp / f"{target}.csv", ["--target", target])
        index, _, y, raw = vf.read(path)
        assert raw.shape[1] == T * C, raw.shape
        assert (index == np.arange(len(index))).all()
        n = len(y)
        t0 = time.time()
        folds = []
        for k in range(FOLDS):
            v = val_mask(n, k)
            p = np.array(labels)[predict_proba(fit(target, raw, y, ~v), raw[v]).argmax(1)]
            folds.append(figures(labels, y[v], p))
        v = val_mask(n)
        model = fit(target, raw, y, ~v)
        fit_s = time.time() - t0
        out = vf.MODELS_DIR / f"hydraulic-{target}.onnx"
        export_onnx(target, model, out)
        sess = ort.InferenceSession(str(out))
        prob = sess.run(["probabilities"], {"window": raw.reshape(n, T, C)})[0]
        ref = predict_proba(model, raw)
        lda_ref = model[0].predict_proba(raw.astype(np.float64) @ feature_map())
        lda_ref = lda_ref[:, [list(model[0].classes_).index(c) for c in labels]]
        assert np.allclose(ref, lda_ref, atol=1e-6)
        pred = np.array(labels)[prob.argmax(1)]
        same = bool((prob.argmax(1) == lda_ref.argmax(1)).all())
        report[target] = {
            "labels": labels,
            "n": n,
            "validation_rows": [int(np.flatnonzero(v)[0]), int(np.flatnonzero(v)[-1])],
            "validation_last20pct": figures(labels, y[v], pred[v]),
            "confusion_last20pct": confusion(labels, y[v], pred[v]).tolist(),
            "train": figures(labels, y[~v], pred[~v]),
            "all_rows": figures(labels, y, pred),
            "confusion_all": confusion(labels, y, pred).tolist(),
            "contiguous_5fold": folds,
            "contiguous_5fold_mean_accuracy": float(np.mean([f["accuracy"] for f in folds])),
            "contiguous_5fold_pooled_accuracy": float(sum(f["accuracy"] * f["n"] for f in folds) / n),
            "train_rows_used": int(((~v) & (se_plateau(raw) > SE_PLATEAU_MIN.get(target, -1e9))).sum()),
            "val_blocks": [(str(c), s, e) for c, s, e in blocks(y, v)],
            "max_abs_dp_ort_vs_sklearn": float(np.abs(prob - lda_ref).max()),
            "same_argmax": same,
            "bytes": out.stat().st_size,
            "sha256": vf.sha256(out),
            "fit_seconds": round(fit_s, 2),
            "reference_forests": reference_forests(raw, y),
            # valve only: the share of the one class these channels cannot tell apart (see the card).
            "share_of_90_last20pct": float((y[v] == "90").mean()) if target == "valve" else None,
        }
        print(json.dumps({target: {k: report[target][k] for k in ("validation_last20pct", "contiguous_5fold_mean_accuracy", "sha256")}}), flush=True)
    if set(report) == set(TARGETS):
        write_card(report)
    print(json.dumps(report, indent=1))


def write_card(r: dict) -> None:
    units = {"valve": " %", "pump": "", "accumulator": " bar"}
    lines = [
        "# hydraulic-{valve,pump,accumulator}.onnx — hydraulic health from the 1 Hz channels",
        "",
        "Three small linear classifiers (linear discriminant analysis) for the UCI/ZeMA hydraulic test rig,",
        "one per component, from one 60 s load cycle of the eight 1 Hz channels TS1–TS4, CE, CP, SE, VS1:",
        "",
    ]
    for t in TARGETS:
        lines.append(f"- `hydraulic-{t}.onnx` (profile `hydraulic-{t}`): {MEANING[t]}.")
    lines += [
        "",
        "The cooler condition has its own model (`hydraulic-cooler.onnx`, `models/hydraulic-cooler.md`).",
        "This file is generated by `models/train/hydraulic_health.py`; do not edit the numbers by hand, retrain instead.",
        "",
        "## Data and licence",
        "",
        "UCI Machine Learning Repository, \"Condition monitoring of hydraulic systems\", created by ZeMA gGmbH",
        "(Saarbrücken). N. Helwig, E. Pignanelli, A. Schütze: \"Condition Monitoring of a Complex Hydraulic",
        "System Using Multivariate Statistics\", Proc. I2MTC 2015, doi:10.1109/I2MTC.2015.7151267. Licence: CC BY 4.0.",
        "Trained on the project's copy in `../shared/datasets/hydraulic/` (1769 cycles; part of the original 2205",
        "is kept aside by the project for independent testing and was not seen here). Files: `TS1..TS4.txt`, `CE.txt`,",
        "`CP.txt`, `SE.txt`, `VS1.txt` (60 columns per cycle) and columns 1–3 of `profile.txt`. Rows are 0-based.",
        "",
        "## Contract (the Rust side depends on it)",
        "",
        "| | name | type | shape | meaning |",
        "|---|---|---|---|---|",
        "| input | `window` | float32 | `[batch, 60, 8]` | raw values, time-major: row t = TS1, TS2, TS3, TS4 (°C), CE (%), CP (kW), SE (%), VS1 (mm/s) at second t |",
        "| output | `probabilities` | float32 | `[batch, K]` | softmax, class order = the profile's `labels` |",
        "",
        "Class order: valve **[100, 90, 80, 73]**, pump **[0, 1, 2]**, accumulator **[130, 115, 100, 90]**.",
        "Graph: `window` − training mean → Reshape `[batch, 480]` → MatMul `[480, K]` → Add → Softmax (opset 17, IR 8);",
        "metadata `classes`, `input_channels`, `input_units`, `target`. No transforms in the profiles: the pipeline's window",
        "goes in as is. Training reads the windows through `vigil features hydraulic --target T` (the same assembly",
        "as the pipeline), so there is no train/serve skew.",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    for t in TARGETS:
        lines.append(f"| `models/hydraulic-{t}.onnx` | {r[t]['bytes']} | `{r[t]['sha256']}` |")
    lines += [
        "",
        "## Features and model",
        "",
        "What the 1 Hz channels show (looked at per cooler block before choosing): the efficiency factor SE",
        "follows the load cycle, with switching transients at t = 9, 19, 29, 39, 49 s and plateaus between them.",
        "The valve lag shows as the dip at t = 9 s (deep for 73 %, clear for 80 %, nearly none for 90 % and 100 %); the",
        "pump leakage as the plateau level (≈ 69 / 67 / 65 % for leakage 0 / 1 / 2); the accumulator pressure as the",
        "height of the transients at 19/29/39/49 s relative to the plateau, monotone in the pressure within each",
        "cooler block but shifted by about one class step between cooler blocks: the temperature of the oil (set by the",
        "cooler) changes the transients too. The temperatures themselves mostly encode the cooler block and the time",
        "of the experiment, so a model fed raw temperatures learns the block, not the component.",
        "",
        "Features (a fixed linear map of the window): SE at its 31 distinct sample times (SE is held for 2 s) and",
        "the mean of TS1 over the cycle, so a linear model can correct the transients for oil temperature. Model:",
        f"scikit-learn `LinearDiscriminantAnalysis` (svd solver) on those 32 features; feature map and LDA fold into one",
        "480 × K matrix. Forests and gradient boosting on the same or richer features (means, slopes, per-second",
        "values of all channels) did worse on the validation block in exploration, above all for the accumulator (21–42 %):",
        "trees cannot carry the temperature correction into the cooler-100 % block where the validation rows are.",
        "",
        "Accumulator only: training uses the cycles whose SE plateau (mean of t = 21–28 s) is above "
        f"{SE_PLATEAU_MIN['accumulator']:g} %. In part of the 3 % cooler block (rows 271–557, 196 cycles) SE collapses to ≈ 11 % and",
        "its transients vanish; they carry no accumulator information and bend the linear fit. The filter looks at the",
        "input, never the label; every figure below is over all rows of the evaluated block.",
        "",
        "## Split (contiguous blocks, never random rows)",
        "",
        "Neighbouring cycles are near copies, so validation is a contiguous block: the **last 20 % of the rows, 1415–1768",
        "(354 cycles)**; the shipped models are trained on rows 0–1414 only. Every class of every target occurs in that",
        "block (runs, inclusive rows):",
        "",
    ]
    for t in TARGETS:
        runs = ", ".join(f"{c}: {s}–{e}" for c, s, e in r[t]["val_blocks"])
        lines.append(f"- {t}: {runs}" if len(runs) < 300 else f"- {t}: {len(r[t]['val_blocks'])} runs, e.g. " + ", ".join(f"{c}: {s}–{e}" for c, s, e in r[t]["val_blocks"][:8]) + ", …")
    lines += [
        "",
        "Caveat: the whole validation block is in the 100 % cooler condition (rows 1176–1768), so it tests the",
        "models at one oil temperature level. Hence also a **contiguous 5-fold** figure: rows split into 5 blocks",
        "(0–352, 353–706, 707–1060, 1061–1414, 1415–1768), each predicted by a model trained on the other four.",
        "Fold 5 is the validation block. Fold 1 and most of fold 2 lie in the 3 % cooler block (oil at 52–60 °C),",
        "which the other folds cover only partly; those are the hard ones.",
        "",
        "## Results",
        "",
        "Reference to beat (issue: a plain feature forest on a contiguous split): 75 % valve, 99 % pump, 77 % accumulator.",
        "Those figures depend on the split, so the script also trains plain forests (scikit-learn",
        "`RandomForestClassifier`, 300 trees) on exactly our splits, on two feature sets: per-channel statistics",
        "(mean, std, min, max, median, end − start of each of the 8 channels) and those plus SE at its 31 sample times.",
        "",
        "| target | last 20 % (n = 354) | per class | 5-fold mean | folds 1–5 |",
        "|---|---:|---|---:|---|",
    ]
    for t in TARGETS:
        v = r[t]["validation_last20pct"]
        pc = ", ".join(f"{c}{units[t]}: {pct(x)}" for c, x in v["per_class"].items())
        fo = " / ".join(f"{100 * f['accuracy']:.1f}" for f in r[t]["contiguous_5fold"])
        lines.append(f"| {t} | **{pct(v['accuracy'])}** | {pc} | {pct(r[t]['contiguous_5fold_mean_accuracy'])} | {fo} |")
    names = list(FOREST_FEATURES)
    lines += [
        "",
        "Plain forests on the same splits (last 20 % / 5-fold mean) against the shipped model:",
        "",
        "| target | shipped LDA | " + " | ".join(f"forest on {n}" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for t in TARGETS:
        f = r[t]["reference_forests"]
        cells = " | ".join(f"{pct(f[n]['last20pct'])} / {pct(f[n]['contiguous_5fold_mean'])}" for n in names)
        lines.append(f"| {t} | **{pct(r[t]['validation_last20pct']['accuracy'])} / "
                     f"{pct(r[t]['contiguous_5fold_mean_accuracy'])}** | {cells} |")
    lines += [
        "",
        f"Valve ceiling: 90 % makes up {pct(r['valve']['share_of_90_last20pct'])} of the validation block, so a model that",
        "recognises 100 %, 80 % and 73 % perfectly and calls every 90 % cycle 100 % scores",
        f"{pct(1 - r['valve']['share_of_90_last20pct'])}; see \"What is weak\".",
    ]
    for t in TARGETS:
        lines += [
            "",
            f"### {t}",
            "",
            f"Validation (rows 1415–1768, onnxruntime on the exported file): accuracy {pct(r[t]['validation_last20pct']['accuracy'])}.",
            "",
            table(TARGETS[t], np.array(r[t]["confusion_last20pct"]), units[t]),
            "",
            "Contiguous 5-fold, per fold (n, accuracy, per class):",
            "",
        ]
        for k, f in enumerate(r[t]["contiguous_5fold"]):
            pc = ", ".join(f"{c}: {pct(x)}" for c, x in f["per_class"].items() if x is not None)
            lines.append(f"- fold {k + 1}: n = {f['n']}, {pct(f['accuracy'])} ({pc})")
        a = r[t]["all_rows"]
        lines += [
            "",
            f"All 1769 cycles with the shipped model (training rows included; what `vigil eval` over the whole directory sees): "
            f"{pct(a['accuracy'])} (" + ", ".join(f"{c}: {pct(x)}" for c, x in a["per_class"].items()) + ").",
            f"Training rows used: {r[t]['train_rows_used']} of 1415. onnxruntime vs scikit-learn: max |Δp| = "
            f"{r[t]['max_abs_dp_ort_vs_sklearn']:.2e}, same arg-max everywhere: {r[t]['same_argmax']}.",
        ]
    lines += [
        "",
        "## Load time (ONNX Runtime from Rust)",
        "",
        "Session creation per model, measured by the test `health_models_load_fast` in",
        "`crates/eval/tests/tasks_hydraulic.rs` (`cargo test [--release] -p vigil-eval --test tasks_hydraulic",
        f"health_models_load_fast -- --nocapture`), onnxruntime 1.31.1, x86_64, 2 shared cores: {LOAD_TIMES}",
        "The graphs are five nodes; there is no tree ensemble for graph optimisation to chew on at cold start.",
        "",
        "## What is weak",
        "",
        "- **Valve 90 % vs 100 %** is not separable from these channels: the small lag barely moves the 1 Hz",
        "  SE dip at t = 9 s (AUC of a dedicated 90-vs-100 classifier 0.37–0.82 over the folds), and the direction of the",
        "  difference flips with the accumulator pressure. Nearly every 90 % cycle is called 100 %; 73 % and 80 % are",
        "  recognised, which puts the model at the ceiling above: 2 points over the issue's 75 % (measured on another",
        "  split), 11 (last 20 %) and 7 (5-fold) over the best plain forest on our split. Twelve other approaches (boosting,",
        "  1D CNNs, two-stage models, joint classes, QDA; `models/hydraulic-valve-notes.md`) and smoothing the",
        "  posteriors over a device's consecutive cycles (which loses 3–11 points at the changes) did not get past it.",
        "  The small lag most likely shows in the 10/100 Hz pressure and flow channels, which this dataset copy lacks.",
        "- **Accumulator** depends on correcting the transients for oil temperature; the correction is learned from",
        "  the 3 % / 20 % cooler blocks and the cooling-down rows after each cooler change. Within the validation block",
        "  115 bar is the weakest class. Folds in the 3 % cooler block are much worse, partly because SE collapses there.",
        "- Pump leakage is easy (the SE plateau); the folds in the 3 % cooler block, where SE is erratic, lose about 3 %.",
        "",
        "## Reproduce",
        "",
        "From the repository root, with the venv of `models/train/README.md` (`requirements.txt` +",
        "`requirements-sklearn.txt`):",
        "",
        "```",
        "cargo build -p vigil-cli --bin vigil",
        "VIGIL_BIN=target/debug/vigil models/train/.venv/bin/python models/train/hydraulic_health.py",
        "```",
        "",
        "It rewrites the three .onnx files and this card. Fitting all folds takes about "
        f"{sum(r[t]['fit_seconds'] for t in TARGETS):.0f} s; LDA (svd solver) is deterministic: reruns on one machine reproduce the files byte for byte; another CPU",
        "or BLAS can change the last bits of the float32 weights (same predictions, different sha256).",
        f"Versions: Python {platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}.",
        "",
        "Check with the product (last line of each: JSON):",
        "",
        "```",
        "for t in valve pump accumulator; do target/debug/vigil eval hydraulic --target $t --data ../shared/datasets/hydraulic | tail -n1; done",
        "```",
        "",
    ]
    (vf.MODELS_DIR / "hydraulic-health.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
