//! Where the models, profiles and samples of this checkout are, and where ONNX Runtime is.

use std::path::{Path, PathBuf};

/// The models directory: `--models`, else `VIGIL_MODELS_DIR`, else `models/` of this checkout.
pub fn models_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("VIGIL_MODELS_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    repo_root().join("models")
}

/// The repository root (compile-time: the workspace the binary was built from).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// Points `ORT_DYLIB_PATH` at the library `make setup` installed, unless it is set already.
pub fn ensure_onnxruntime() {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        let candidate = repo_root().join(".tools/lib/libonnxruntime.so");
        if candidate.exists() {
            // Safe at this point: called at start-up before any thread reads the environment.
            std::env::set_var("ORT_DYLIB_PATH", candidate);
        }
    }
}
