#!/usr/bin/env python3
"""Train the hydraulic cooler-condition 1D CNN and export it to ONNX.

Run from the repository root:

    models/train/.venv/bin/python models/train/hydraulic_cooler.py

Data: UCI "Condition monitoring of hydraulic systems" (ZeMA gGmbH, CC BY 4.0),
TS1..TS4 (temperature, degC, 1 Hz, 60 samples per 60 s load cycle) and
profile.txt (column 0 = cooler condition 3 / 20 / 100 %).

Outputs (all under models/):
  hydraulic-cooler.onnx                     the model (input `window` [batch,60,4] raw degC,
                                            output `probabilities` [batch,3], classes 3,20,100)
  hydraulic-cooler.md                       the model card (generated, numbers measured here)
  fixtures/hydraulic-cooler-windows.json    reference windows + onnxruntime probabilities
  samples/hydraulic/                        36-cycle demo excerpt (validation rows only)

The data helpers at the top import only numpy, so models/fixtures/make_fixtures.py
can reuse them without TensorFlow.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

SEED = 20150511  # fixed seed for python, numpy, tensorflow/keras
CLASSES = (3, 20, 100)  # output order of `probabilities`
CHANNELS = ("TS1", "TS2", "TS3", "TS4")
WINDOW = 60
VAL_FRACTION = 0.2  # last 20 % of each class's contiguous block is held out
OPSET = 17

MODELS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = MODELS_DIR.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "hydraulic"
ONNX_PATH = MODELS_DIR / "hydraulic-cooler.onnx"
CARD_PATH = MODELS_DIR / "hydraulic-cooler.md"

# Training settings (kept here so the model card can quote them).
SETTINGS = {
    "epochs_max": 80,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "early_stopping": "val_loss, patience 12, restore best weights",
    "augmentation": "train only, raw degC: Gaussian noise sd 0.05 per sample, "
    "per-window offset sd 0.3 per channel + sd 0.5 common to all channels",
    "dropout": 0.3,
    "optimizer": "Adam",
    "loss": "sparse categorical cross-entropy",
}


# --------------------------------------------------------------------------- data

def data_dir(arg: str | None = None) -> Path:
    d = Path(arg or os.environ.get("VIGIL_HYDRAULIC_DATA", DEFAULT_DATA))
    if not (d / "profile.txt").is_file():
        sys.exit(f"hydraulic data not found in {d} (set --data or VIGIL_HYDRAULIC_DATA)")
    return d


def read_lines(path: Path) -> list[str]:
    """Lines of a dataset file, verbatim, without the trailing newline."""
    with open(path, "r", encoding="ascii", newline="") as f:
        return f.read().splitlines()


def load(d: Path):
    """Returns (X [n,60,4] float64 degC, cooler [n] int, raw lines per file)."""
    raw = {name: read_lines(d / f"{name}.txt") for name in (*CHANNELS, "profile")}
    n = len(raw["profile"])
    for name, lines in raw.items():
        assert len(lines) == n, f"{name}.txt has {len(lines)} rows, profile.txt {n}"
    chans = []
    for name in CHANNELS:
        rows = [[float(t) for t in line.split("\t")] for line in raw[name]]
        a = np.asarray(rows, dtype=np.float64)
        assert a.shape == (n, WINDOW), (name, a.shape)
        chans.append(a)
    X = np.stack(chans, axis=-1)  # [n, 60, 4]: row t = TS1..TS4 at second t
    cooler = np.asarray([int(float(line.split("\t")[0])) for line in raw["profile"]])
    return X, cooler, raw


def blocks(cooler: np.ndarray):
    """Contiguous runs of the cooler condition: [(cls, start, end_exclusive)]."""
    out, start = [], 0
    for i in range(1, len(cooler) + 1):
        if i == len(cooler) or cooler[i] != cooler[start]:
            out.append((int(cooler[start]), start, i))
            start = i
    assert [b[0] for b in out] == list(CLASSES), f"unexpected block layout {out}"
    return out


def split(cooler: np.ndarray):
    """Train/validation by contiguous blocks: the last 20 % of each class block is validation.

    Returns (train_idx, val_idx, ranges) with ranges = {cls: {"train": (a, b), "val": (b, c)}}
    (0-based row indices, end exclusive).
    """
    train, val, ranges = [], [], {}
    for cls, a, c in blocks(cooler):
        n_val = int(round(VAL_FRACTION * (c - a)))
        b = c - n_val
        train.extend(range(a, b))
        val.extend(range(b, c))
        ranges[cls] = {"train": (a, b), "val": (b, c)}
    return np.asarray(train), np.asarray(val), ranges


def to_index(cooler: np.ndarray) -> np.ndarray:
    lut = {c: i for i, c in enumerate(CLASSES)}
    return np.asarray([lut[int(c)] for c in cooler], dtype=np.int64)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    m = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[t, p] += 1
    return m


def per_class_acc(m: np.ndarray) -> list[float]:
    return [float(m[i, i] / m[i].sum()) for i in range(len(CLASSES))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- onnx

def fix_onnx_names(path: Path) -> None:
    """Rename the graph I/O to the contract: input `window` [batch,60,4], output `probabilities`."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    # tf2onnx lists constants (e.g. the normalisation mean/variance) as graph inputs backed by
    # initializers; keep only the real input so the graph has exactly one.
    inits = {t.name for t in g.initializer}
    real = [vi for vi in g.input if vi.name not in inits]
    del g.input[:]
    g.input.extend(real)
    assert len(g.input) == 1 and len(g.output) == 1, (g.input, g.output)

    def rename(old: str, new: str) -> None:
        if old == new:
            return
        for node in g.node:
            node.input[:] = [new if x == old else x for x in node.input]
            node.output[:] = [new if x == old else x for x in node.output]
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.name == old:
                vi.name = new

    # tf2onnx numbers generated tensors/nodes (`__NNN` suffixes) in a run-dependent order; strip
    # the counters, de-duplicate by order of first appearance and sort the initializers the same
    # way, so that the same weights always give the same bytes.
    io = {g.input[0].name, g.output[0].name}
    order: list[str] = []
    for node in g.node:
        order.extend(node.input)
        order.extend(node.output)
    order.extend(t.name for t in g.initializer)
    tensor_map: dict[str, str] = {}
    taken: set[str] = set(io)

    def canonical(name: str, taken: set[str]) -> str:
        base = re.sub(r"(__\d+)+", "", name) or "t"
        cand, k = base, 1
        while cand in taken:
            cand, k = f"{base}_{k}", k + 1
        taken.add(cand)
        return cand

    for name in order:
        if name and name not in io and name not in tensor_map:
            tensor_map[name] = canonical(name, taken)
    for node in g.node:
        node.input[:] = [tensor_map.get(x, x) for x in node.input]
        node.output[:] = [tensor_map.get(x, x) for x in node.output]
    for t in g.initializer:
        t.name = tensor_map.get(t.name, t.name)
    for vi in g.value_info:
        vi.name = tensor_map.get(vi.name, vi.name)
    node_names: set[str] = set()
    for node in g.node:
        node.name = canonical(node.name or node.op_type, node_names)
    first_use = {n: i for i, n in reversed(list(enumerate(x for node in g.node for x in node.input)))}
    inits_sorted = sorted(g.initializer, key=lambda t: (first_use.get(t.name, len(first_use)), t.name))
    g.ClearField("initializer")
    g.initializer.extend(inits_sorted)

    rename(g.input[0].name, "window")
    rename(g.output[0].name, "probabilities")
    for vi in (g.input[0], g.output[0]):
        d0 = vi.type.tensor_type.shape.dim[0]
        d0.Clear()
        d0.dim_param = "batch"
    # Drop opset imports no node uses (tf2onnx adds ai.onnx.ml by default).
    used = {n.domain or "" for n in g.node}
    keep = [o for o in m.opset_import if (o.domain or "") in used or (o.domain or "") == ""]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    m.producer_name = "vigil models/train/hydraulic_cooler.py (keras + tf2onnx)"
    m.doc_string = (
        "Hydraulic cooler condition classifier. Input `window`: float32 [batch,60,4], raw degC, "
        "row t = TS1,TS2,TS3,TS4 at second t of a 60 s cycle. Output `probabilities`: float32 "
        "[batch,3], softmax over cooler condition classes [3, 20, 100] %."
    )
    del m.metadata_props[:]
    for k, v in {"classes": "3,20,100", "input_channels": ",".join(CHANNELS),
                 "input_units": "degC", "dataset": "UCI Condition monitoring of hydraulic systems (ZeMA gGmbH, CC BY 4.0)"}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def check_contract(path: Path) -> dict:
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    assert opset["ai.onnx"] <= 21, opset
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (i,), (o,) = s.get_inputs(), s.get_outputs()
    assert i.name == "window" and i.type == "tensor(float)", (i.name, i.type)
    assert list(i.shape) == ["batch", WINDOW, 4], i.shape
    assert o.name == "probabilities" and o.type == "tensor(float)", (o.name, o.type)
    assert list(o.shape) == ["batch", 3], o.shape
    return {"input": (i.name, i.shape, i.type), "output": (o.name, o.shape, o.type), "opset": opset,
            "ir_version": m.ir_version, "ort": ort.__version__}


def ort_predict(path: Path, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(["probabilities"], {"window": X.astype(np.float32)})[0]


# --------------------------------------------------------------------------- model

def build_model(mean: np.ndarray, std: np.ndarray):
    import keras
    from keras import layers, ops

    @keras.saving.register_keras_serializable(package="vigil")
    class SensorJitter(layers.Layer):
        """Training-only augmentation in raw degC; identity at inference (and in the export)."""

        def __init__(self, noise, channel_offset, common_offset, seed, **kw):
            super().__init__(**kw)
            self.noise, self.channel_offset, self.common_offset = noise, channel_offset, common_offset
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=False):
            if not training:
                return x
            b = ops.shape(x)[0]
            x = x + keras.random.normal(ops.shape(x), stddev=self.noise, seed=self.seed_gen)
            x = x + keras.random.normal((b, 1, x.shape[-1]), stddev=self.channel_offset, seed=self.seed_gen)
            return x + keras.random.normal((b, 1, 1), stddev=self.common_offset, seed=self.seed_gen)

    @keras.saving.register_keras_serializable(package="vigil")
    class Standardize(layers.Layer):
        """(x - mean) / std per channel, with mean and 1/std held as frozen weights.

        Keras' own Normalization(mean=..., variance=...) keeps them as captured tensors, which
        tf2onnx turns into extra graph *inputs*; frozen weights become initializers instead.
        """

        def __init__(self, mean, std, **kw):
            super().__init__(**kw)
            self._mean = np.asarray(mean, dtype=np.float32)
            self._inv_std = (1.0 / np.asarray(std, dtype=np.float64)).astype(np.float32)
            self.trainable = False

        def build(self, input_shape):
            n = input_shape[-1]
            self.mean = self.add_weight(shape=(n,), initializer=keras.initializers.Constant(self._mean),
                                        trainable=False, name="mean")
            self.inv_std = self.add_weight(shape=(n,), initializer=keras.initializers.Constant(self._inv_std),
                                           trainable=False, name="inv_std")

        def call(self, x):
            return (x - self.mean) * self.inv_std

    inp = keras.Input(shape=(WINDOW, len(CHANNELS)), name="window", dtype="float32")
    x = SensorJitter(0.05, 0.3, 0.5, SEED, name="jitter")(inp)
    # Per-channel normalisation baked into the graph: the Rust side feeds raw degC.
    x = Standardize(mean, std, name="normalise")(x)
    x = layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(SETTINGS["dropout"], seed=SEED)(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(SETTINGS["dropout"], seed=SEED + 1)(x)
    out = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="hydraulic_cooler_cnn")


# --------------------------------------------------------------------------- card

def fmt_cm(m: np.ndarray) -> str:
    head = "| true \\ predicted | " + " | ".join(f"{c} %" for c in CLASSES) + " |"
    sep = "|---|" + "---:|" * len(CLASSES)
    rows = [f"| **{c} %** | " + " | ".join(str(v) for v in m[i]) + " |" for i, c in enumerate(CLASSES)]
    return "\n".join([head, sep, *rows])


def write_card(r: dict) -> None:
    rng = r["ranges"]

    def rr(a_b):
        a, b = a_b
        return f"{a}–{b - 1} ({b - a})"

    split_rows = "\n".join(
        f"| {c} % | {rr(rng[c]['train'])} | {rr(rng[c]['val'])} |" for c in CLASSES
    )
    val_acc = " / ".join(f"{100 * a:.2f} %" for a in r["val_acc"])
    full_acc = " / ".join(f"{100 * a:.2f} %" for a in r["full_acc"])
    wrong = r["full_wrong"]
    wrong_txt = ", ".join(f"{i} (true {t}, predicted {p})" for i, t, p in wrong[:40])
    if len(wrong) > 40:
        wrong_txt += f", … ({len(wrong)} in all)"
    v = r["versions"]
    card = f"""# hydraulic-cooler.onnx — cooler condition from four temperatures

A small 1D CNN that classifies the cooler condition of a hydraulic test rig (3 % = close to total
failure, 20 % = reduced efficiency, 100 % = full efficiency) from one 60 s load cycle of the four
temperature sensors TS1–TS4. This file is generated by `models/train/hydraulic_cooler.py`; do not
edit the numbers by hand, retrain instead.

## Data and licence

UCI Machine Learning Repository, "Condition monitoring of hydraulic systems", created by ZeMA gGmbH
(Saarbrücken). N. Helwig, E. Pignanelli, A. Schütze: "Condition Monitoring of a Complex Hydraulic
System Using Multivariate Statistics", Proc. I2MTC 2015, Pisa, doi:10.1109/I2MTC.2015.7151267.
Licence: CC BY 4.0. Trained on the project's copy in `../shared/datasets/hydraulic/` ({r['n_rows']} cycles;
part of the original 2205 cycles is kept aside by the project for independent testing and was
not seen here). Files used: `TS1.txt`..`TS4.txt` (°C, 1 Hz, 60 columns per cycle) and column 0 of
`profile.txt`. Row numbers below are 0-based rows of that copy (line number − 1).

## Contract (the Rust side depends on it)

| | name | type | shape | meaning |
|---|---|---|---|---|
| input | `window` | float32 | `[batch, 60, 4]` (`batch` dynamic) | raw °C, time-major: row t = TS1, TS2, TS3, TS4 at second t |
| output | `probabilities` | float32 | `[batch, 3]` | softmax, class order **[3, 20, 100]** (cooler condition %) |

- Opset: ai.onnx {r['contract']['opset'].get('ai.onnx')} (IR version {r['contract']['ir_version']}); checked with onnxruntime {r['contract']['ort']}.
- Normalisation is inside the graph (a frozen `Standardize` layer → Sub, Mul by 1/std): per-channel mean/std from
  the training rows only: mean {np.round(r['mean'], 4).tolist()} °C, std {np.round(r['std'], 4).tolist()} °C.
- Graph metadata: `classes=3,20,100`, `input_channels=TS1,TS2,TS3,TS4`, `input_units=degC`.
- File: `models/hydraulic-cooler.onnx`, {r['size']} bytes, {r['params']} parameters,
  sha256 `{r['sha256']}`.

## Split (by contiguous blocks, not random rows)

The cooler condition is laid out in three contiguous blocks. Neighbouring cycles are near copies,
so the last 20 % of each block is held out as validation (rows inclusive, count in brackets):

| class | training rows | validation rows |
|---|---|---|
{split_rows}

Training: {r['n_train']} cycles, validation: {r['n_val']} cycles.

## Results

Validation accuracy per class (3 / 20 / 100): **{val_acc}** (overall {100 * r['val_overall']:.2f} %).

Validation confusion matrix (onnxruntime on the exported file):

{fmt_cm(r['val_cm'])}

All {r['n_rows']} cycles (training + validation, what `vigil eval` over the whole directory sees):
per class {full_acc}, overall {100 * r['full_overall']:.2f} %.

{fmt_cm(r['full_cm'])}

Misclassified rows over all cycles: {wrong_txt or 'none'}.
{r['wrong_note']}

Keras vs onnxruntime on all {r['n_rows']} cycles: max |Δp| = {r['max_diff']:.2e}, same argmax everywhere: {r['same_argmax']}.

Reference to beat (the original Keras 1D-CNN demo on TS1–TS4, cooler condition):
95 % / 80 % / 89 % per class (3 / 20 / 100). The validation split here is block-wise
(contiguous rows held out), which leaks less than a random split of near-copy neighbours.

## Model and training

- Architecture: raw °C → [training-only jitter] → Standardize (frozen mean/std) → Conv1D(32, k5, ReLU) →
  Conv1D(32, k5, ReLU) → MaxPool(2) → Conv1D(64, k3, ReLU) → Conv1D(64, k3, ReLU) →
  GlobalAveragePooling → Dropout(0.3) → Dense(32, ReLU) → Dropout(0.3) → Dense(3, softmax).
- {SETTINGS['optimizer']}, learning rate {SETTINGS['learning_rate']}, batch {SETTINGS['batch_size']},
  up to {SETTINGS['epochs_max']} epochs, early stopping on {SETTINGS['early_stopping']};
  stopped after {r['epochs_run']} epochs, best epoch {r['best_epoch']} (val_loss {r['best_val_loss']:.2e}).
- Loss: {SETTINGS['loss']}. Augmentation: {SETTINGS['augmentation']}.
- Seeds: {SEED} for Python, NumPy and TensorFlow/Keras (`keras.utils.set_random_seed`),
  `tf.config.experimental.enable_op_determinism()`.
- Training time: {r['train_seconds']:.0f} s on {r['cpu']} ({os.cpu_count()} cores).

Command (from the repository root, after setting up the venv as in `models/train/README.md`):

```
models/train/.venv/bin/python models/train/hydraulic_cooler.py
```

It rewrites this card, the .onnx file, `models/fixtures/hydraulic-cooler-windows.json` and
`models/samples/hydraulic/`.

Versions: Python {v['python']}, tensorflow-cpu {v['tensorflow']}, keras {v['keras']}, tf2onnx {v['tf2onnx']},
onnx {v['onnx']}, onnxruntime {v['onnxruntime']}, numpy {v['numpy']} (pinned in `models/train/requirements.txt`).
"""
    CARD_PATH.write_text(card, encoding="utf-8")


# --------------------------------------------------------------------------- main

def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="folder with TS1..TS4.txt and profile.txt")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("PYTHONHASHSEED") != str(SEED):
        # Hash randomisation changes tf2onnx's generated tensor names (not the weights); it can
        # only be fixed before the interpreter starts, so restart once with the seed set.
        os.environ["PYTHONHASHSEED"] = str(SEED)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    random.seed(SEED)
    np.random.seed(SEED)

    import tensorflow as tf
    import keras
    import onnx
    import onnxruntime
    import tf2onnx

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    d = data_dir(args.data)
    X, cooler, _ = load(d)
    y = to_index(cooler)
    tr, va, ranges = split(cooler)
    print(f"data {d}: {len(X)} cycles; train {len(tr)}, validation {len(va)}")
    for c in CLASSES:
        print(f"  class {c}: train rows {ranges[c]['train']}, val rows {ranges[c]['val']} (end exclusive)")

    flat = X[tr].reshape(-1, X.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    print("normalisation mean", mean.round(4), "std", std.round(4))

    model = build_model(mean, std)
    model.compile(optimizer=keras.optimizers.Adam(SETTINGS["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary(print_fn=lambda s, **k: print(s))

    Xtr, ytr = X[tr].astype(np.float32), y[tr]
    Xva, yva = X[va].astype(np.float32), y[va]
    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=12, restore_best_weights=True)
    t0 = time.time()
    hist = model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=SETTINGS["epochs_max"],
                     batch_size=SETTINGS["batch_size"], shuffle=True, callbacks=[es], verbose=2)
    train_seconds = time.time() - t0
    vl = hist.history["val_loss"]
    best_epoch = int(np.argmin(vl)) + 1
    print(f"training: {len(vl)} epochs in {train_seconds:.1f} s, best epoch {best_epoch}")

    p_keras = model.predict(X.astype(np.float32), batch_size=256, verbose=0)

    tmp = ONNX_PATH.with_suffix(".tmp.onnx")
    model.export(str(tmp), format="onnx", opset_version=OPSET, verbose=False)
    fix_onnx_names(tmp)
    os.replace(tmp, ONNX_PATH)
    contract = check_contract(ONNX_PATH)
    print("contract", contract)

    p = ort_predict(ONNX_PATH, X)
    max_diff = float(np.abs(p - p_keras).max())
    same_argmax = bool((p.argmax(1) == p_keras.argmax(1)).all())
    print(f"keras vs onnxruntime: max |dp| {max_diff:.2e}, same argmax {same_argmax}")
    assert max_diff < 1e-4 and same_argmax

    pred = p.argmax(1)
    val_cm, full_cm = confusion(y[va], pred[va]), confusion(y, pred)
    val_acc, full_acc = per_class_acc(val_cm), per_class_acc(full_cm)
    wrong = [(int(i), CLASSES[y[i]], CLASSES[pred[i]]) for i in np.where(pred != y)[0]]
    starts = {a: c for c, a, _ in blocks(cooler)}
    near_start = [i for i, _, _ in wrong if any(0 <= i - a < 60 for a in starts)]
    wrong_note = ""
    if wrong:
        wrong_note = (f"{len(near_start)} of the {len(wrong)} errors lie in the first 60 cycles of a cooler "
                      "block (blocks start at rows 0, 588, 1176): row 0 is the cold start of the rig, and after "
                      "a cooler change the oil temperature takes a while to move from the previous "
                      "condition's level to the new one, so those cycles still look like the old condition.")
    print("validation per-class accuracy", [round(100 * a, 2) for a in val_acc])
    print("validation confusion\n", val_cm)
    print("full-data per-class accuracy", [round(100 * a, 2) for a in full_acc])
    print("full confusion\n", full_cm)
    print("misclassified rows", wrong)
    if min(val_acc) < 0.995:
        print("WARNING: validation accuracy below the 99.5 % bar on some class")

    result = {
        "ranges": ranges, "n_rows": len(X), "n_train": len(tr), "n_val": len(va),
        "mean": mean, "std": std, "val_cm": val_cm, "full_cm": full_cm,
        "val_acc": val_acc, "full_acc": full_acc,
        "val_overall": float(np.trace(val_cm) / val_cm.sum()),
        "full_overall": float(np.trace(full_cm) / full_cm.sum()),
        "full_wrong": wrong, "wrong_note": wrong_note,
        "max_diff": max_diff, "same_argmax": same_argmax, "contract": contract,
        "size": ONNX_PATH.stat().st_size, "sha256": sha256(ONNX_PATH),
        "params": model.count_params(), "epochs_run": len(vl), "best_epoch": best_epoch,
        "best_val_loss": float(min(vl)), "train_seconds": train_seconds,
        "cpu": platform.processor() or platform.machine(),
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "numpy": np.__version__},
    }
    write_card(result)
    print(f"wrote {ONNX_PATH} ({result['size']} bytes, sha256 {result['sha256']}) and {CARD_PATH}")

    sys.path.insert(0, str(MODELS_DIR / "fixtures"))
    import make_fixtures

    make_fixtures.main(["--data", str(d)])


if __name__ == "__main__":
    main()
