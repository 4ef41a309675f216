//! Contiguous k-fold by blocks of each class, for the model tasks (rmg941, hydraulic health).
//!
//! Fold k holds the k-th of `k` equal blocks of each class's windows, in time order. The training
//! scripts fit one model per fold without its windows and write it as
//! `models/folds/<profile>-fold<k>.onnx` (1-based); here fold k's windows go through the full
//! pipeline with fold k's model, so the per-fold figures of the model cards are reproduced by
//! the product. The verdicts carry the probabilities: accuracy is on the arg-max class; the
//! published label (which is `uncertain` below the profile's `min_confidence`) gives coverage.
//! The blocks are cut as the training scripts cut them (numpy slices, [`class_block_folds`]),
//! which can differ from [`super::contiguous_blocks`] by one window at a block edge: the fold
//! models were fitted without exactly these windows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};
use vigil_core::profile::{ProfileSet, ScorerSpec};
use vigil_core::scorer::{argmax_label, UNCERTAIN_LABEL};
use vigil_core::telemetry::Sample;
use vigil_core::CompiledProfile;

use crate::confusion::{ratio, Confusion};
use crate::tasks::Verdict;

/// Folds of the model tasks (issue 13: k ≥ 5): the protocol's k.
pub const FOLDS: usize = super::DEFAULT_K;

/// The fold (0-based) of each window: blocks of each class's windows, in time order.
pub fn class_block_folds(labels: &[String], folds: usize) -> Vec<usize> {
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_class.entry(l.as_str()).or_default().push(i);
    }
    let mut fold = vec![0; labels.len()];
    for idx in by_class.values() {
        // Block k = positions floor(k·n/folds) .. floor((k+1)·n/folds), as the training scripts
        // cut them (numpy slices): the fold models were fitted without exactly these windows.
        for k in 0..folds {
            for &i in &idx[k * idx.len() / folds..(k + 1) * idx.len() / folds] {
                fold[i] = k;
            }
        }
    }
    fold
}

/// Path of fold `k`'s model (0-based `k`), relative to the models directory.
pub fn fold_model(profile: &str, k: usize) -> String {
    format!("folds/{profile}-fold{}.onnx", k + 1)
}

/// Whether the models directory holds a fold model for every fold of `profile`.
pub fn has_fold_models(models: &Path, profile: &str) -> bool {
    (0..FOLDS).all(|k| models.join(fold_model(profile, k)).is_file())
}

/// `profile` compiled with fold `k`'s model instead of the shipped one (all else unchanged).
pub fn fold_profiles(
    models: &Path,
    profile: &str,
    k: usize,
) -> anyhow::Result<BTreeMap<String, CompiledProfile>> {
    vigil_datasets::models::ensure_onnxruntime();
    let set = ProfileSet::load_dir(&models.join("profiles"))?;
    let mut p = set
        .get(profile)
        .with_context(|| format!("no profile {profile:?} in the models directory"))?
        .clone();
    match &mut p.scorer {
        ScorerSpec::Onnx { model, .. } => *model = fold_model(profile, k),
        _ => anyhow::bail!("profile {profile:?} has no ONNX model to replace by fold models"),
    }
    let path: PathBuf = models.join(fold_model(profile, k));
    vigil_onnx::compile_profiles([p], models, None)
        .with_context(|| format!("loading the fold model {}", path.display()))
}

/// The samples of one dataset window renumbered as window `window` of a stream (seq from
/// `window × len`, time from seq at `rate_hz`), so a fold's windows replay as one device's stream.
pub fn as_window(mut samples: Vec<Sample>, window: usize, rate_hz: f64) -> Vec<Sample> {
    let len = samples.len();
    for (j, s) in samples.iter_mut().enumerate() {
        s.seq = (window * len + j) as u64;
        s.ts = (s.seq as f64 * 1000.0 / rate_hz) as u64;
    }
    samples
}

/// Figures of one set of windows: arg-max confusion, and how many got a verdict.
pub struct FoldFigures {
    pub confusion: Confusion,
    pub uncertain: u64,
    /// Correct among the windows that got a verdict.
    pub covered_correct: u64,
}

impl FoldFigures {
    pub fn new(labels: &[String]) -> Self {
        Self {
            confusion: Confusion::new(labels),
            uncertain: 0,
            covered_correct: 0,
        }
    }

    pub fn add(&mut self, truth: &str, verdict: &Verdict) {
        let labels = self.confusion.labels.clone();
        let top = argmax_label(&labels, &verdict.probabilities).unwrap_or(verdict.label.clone());
        self.confusion.add(truth, &top);
        if verdict.label == UNCERTAIN_LABEL {
            self.uncertain += 1;
        } else if verdict.label == truth {
            self.covered_correct += 1;
        }
    }

    pub fn coverage(&self) -> f64 {
        let n = self.confusion.total();
        ratio(n - self.uncertain, n)
    }

    pub fn covered_accuracy(&self) -> f64 {
        ratio(
            self.covered_correct,
            self.confusion.total() - self.uncertain,
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.confusion.total(),
            "accuracy": self.confusion.accuracy(),
            "per_class": self.confusion.per_class(),
            "uncertain": self.uncertain,
            "coverage": self.coverage(),
            "covered_accuracy": self.covered_accuracy(),
        })
    }
}

/// The JSON of a fold evaluation: pooled figures at the top (n, accuracy, per_class, coverage),
/// `folds` (one object per fold), `worst_fold` (least accuracy, least class recall, least
/// coverage over the folds) and `mean` (of the fold accuracies).
pub fn report(pooled: &FoldFigures, folds: &[FoldFigures]) -> Value {
    let mut out = pooled.json();
    let per_fold: Vec<Value> = folds.iter().map(FoldFigures::json).collect();
    let least = |f: &dyn Fn(&FoldFigures) -> f64| folds.iter().map(f).fold(f64::INFINITY, f64::min);
    let worst_class = least(&|f| {
        f.confusion
            .per_class()
            .values()
            .copied()
            .fold(f64::INFINITY, f64::min)
    });
    out["folds"] = Value::Array(per_fold);
    out["worst_fold"] = json!({
        "accuracy": least(&|f| f.confusion.accuracy()),
        "class": worst_class,
        "coverage": least(&|f| f.coverage()),
        "covered_accuracy": least(&|f| f.covered_accuracy()),
    });
    out["mean"] = json!({
        "accuracy": folds.iter().map(|f| f.confusion.accuracy()).sum::<f64>() / folds.len().max(1) as f64,
    });
    out
}

/// Prints one line per fold and the worst fold.
pub fn print(title: &str, folds: &[FoldFigures]) {
    for (k, f) in folds.iter().enumerate() {
        let per_class: Vec<String> = f
            .confusion
            .per_class()
            .iter()
            .map(|(c, a)| format!("{c}: {a:.4}"))
            .collect();
        println!(
            "{title} fold {}: {} windows, accuracy {:.4} ({}), uncertain {} (accuracy {:.4} on the {:.1} % with a verdict)",
            k + 1,
            f.confusion.total(),
            f.confusion.accuracy(),
            per_class.join(", "),
            f.uncertain,
            f.covered_accuracy(),
            100.0 * f.coverage(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_each_class_in_time_order() {
        let labels: Vec<String> = "aaaaabbbbbbbbbbaaaaa".chars().map(String::from).collect();
        let f = class_block_folds(&labels, 5);
        // 10 a's: two per fold, in order (first five at the start, last five at the end).
        assert_eq!(&f[..5], &[0, 0, 1, 1, 2]);
        assert_eq!(&f[15..], &[2, 3, 3, 4, 4]);
        // 10 b's: two per fold.
        assert_eq!(&f[5..15], &[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        // 7 windows: numpy's cut points 0, 1, 2, 4, 5, 7.
        let seven: Vec<String> = (0..7).map(|_| "c".to_string()).collect();
        assert_eq!(class_block_folds(&seven, 5), vec![0, 1, 2, 2, 3, 4, 4]);
    }

    #[test]
    fn uncertain_counts_against_coverage_not_accuracy() {
        let labels = vec!["x".to_string(), "y".to_string()];
        let mut f = FoldFigures::new(&labels);
        let v = |label: &str, p: [f32; 2]| Verdict {
            label: label.into(),
            probabilities: p.to_vec(),
        };
        f.add("x", &v("x", [0.9, 0.1]));
        f.add("x", &v(UNCERTAIN_LABEL, [0.6, 0.4]));
        f.add("y", &v(UNCERTAIN_LABEL, [0.55, 0.45]));
        f.add("y", &v("y", [0.2, 0.8]));
        assert_eq!(f.confusion.accuracy(), 0.75);
        assert_eq!(f.uncertain, 2);
        assert_eq!(f.coverage(), 0.5);
        assert_eq!(f.covered_accuracy(), 1.0);
        let j = report(&f, &[f.clone_figures(), f.clone_figures()]);
        assert_eq!(j["worst_fold"]["accuracy"], 0.75);
        assert_eq!(j["folds"].as_array().unwrap().len(), 2);
    }

    impl FoldFigures {
        fn clone_figures(&self) -> Self {
            Self {
                confusion: Confusion {
                    labels: self.confusion.labels.clone(),
                    counts: self.confusion.counts.clone(),
                },
                uncertain: self.uncertain,
                covered_correct: self.covered_correct,
            }
        }
    }
}
