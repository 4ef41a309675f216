"""Shared helpers: feature rows exported by `vigil features` (the Rust transform chain)."""
from __future__ import annotations

import csv
import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = MODELS_DIR.parent
DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def export(task: str, data: Path, out: Path, extra: list[str] | None = None) -> Path:
    """Runs `vigil features` (the binary given by $VIGIL_BIN, else `cargo run`)."""
    # --models: this checkout's profiles, whichever checkout the binary was built from.
    args = ["features", task, "--data", str(data), "--out", str(out), "--models", str(MODELS_DIR)] + (extra or [])
    binary = os.environ.get("VIGIL_BIN")
    cmd = [binary, *args] if binary else ["cargo", "run", "-q", "-p", "vigil-cli", "--", *args]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return out


def read(path: Path):
    """(index, group, label, X float32) from a features CSV."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    body = rows[1:]
    index = np.array([int(r[0]) for r in body])
    group = np.array([r[1] for r in body])
    label = np.array([r[2] for r in body])
    X = np.array([[float(v) for v in r[3:]] for r in body], dtype=np.float32)
    return index, group, label, X


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
