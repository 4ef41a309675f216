//! Figures of the classification tasks: a confusion matrix and per-class accuracy.

use std::collections::BTreeMap;

/// Confusion matrix and per-class accuracy for classification tasks.
#[derive(Debug, Default)]
pub struct Confusion {
    pub labels: Vec<String>,
    /// `counts[truth][predicted]`.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Confusion {
    pub fn new(labels: &[String]) -> Self {
        Self {
            labels: labels.to_vec(),
            counts: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, truth: &str, predicted: &str) {
        *self
            .counts
            .entry(truth.into())
            .or_default()
            .entry(predicted.into())
            .or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.values().flat_map(|r| r.values()).sum()
    }

    pub fn correct(&self) -> u64 {
        self.counts
            .iter()
            .map(|(t, r)| r.get(t).copied().unwrap_or(0))
            .sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Recall of each true class.
    pub fn per_class(&self) -> BTreeMap<String, f64> {
        self.labels
            .iter()
            .filter_map(|l| {
                let row = self.counts.get(l)?;
                Some((
                    l.clone(),
                    ratio(row.get(l).copied().unwrap_or(0), row.values().sum()),
                ))
            })
            .collect()
    }

    /// Human-readable report: per-class accuracy and the matrix.
    pub fn print(&self, title: &str) {
        println!(
            "{title}: {} windows, accuracy {:.4}",
            self.total(),
            self.accuracy()
        );
        for (label, acc) in self.per_class() {
            let n: u64 = self.counts.get(&label).map_or(0, |r| r.values().sum());
            println!("  class {label:>8}: {acc:.4} of {n}");
        }
        let mut predicted: Vec<String> = self.labels.clone();
        for row in self.counts.values() {
            for p in row.keys() {
                if !predicted.contains(p) {
                    predicted.push(p.clone());
                }
            }
        }
        print!("  confusion (rows truth, columns predicted): {:>8}", "");
        for p in &predicted {
            print!("{p:>12}");
        }
        println!();
        for t in &self.labels {
            print!("  {t:>50}");
            for p in &predicted {
                print!(
                    "{:>12}",
                    self.counts
                        .get(t)
                        .and_then(|r| r.get(p))
                        .copied()
                        .unwrap_or(0)
                );
            }
            println!();
        }
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({"n": self.total(), "accuracy": self.accuracy(), "per_class": self.per_class()})
    }
}

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
