//! The evaluation protocol shared by every task (issue 13): figures per fold, the mean and the
//! **worst** fold, never one split alone.
//!
//! - Classification tasks: contiguous k-fold by blocks ([`contiguous_blocks`]): the items of each
//!   class (or regime), in recording order, are cut into `k` contiguous blocks; fold `f` holds
//!   block `f` of every class. Neighbouring frames or cycles are near copies, so a random split
//!   would leak; a contiguous block is the nearest thing to a machine's next week.
//! - NAB: leave one series out (each fold is one series, judged with what was chosen on the
//!   others); see `tasks::nab`.
//!
//! [`Folds`] prints one line per fold and adds `folds` (every fold's figures) and `worst_fold`
//! to the task's JSON line. [`models`]: the tasks scored with one model per fold (rmg941,
//! hydraulic health).

use serde_json::{json, Value};

use crate::confusion::Confusion;

pub mod models;

/// Folds of the classification tasks.
pub const DEFAULT_K: usize = 5;

/// Fold of each item: the items of every group, in their order, cut into `k` contiguous blocks
/// of (nearly) equal size. A group with fewer than `k` items fills the first folds only.
pub fn contiguous_blocks<G: Ord>(groups: &[G], k: usize) -> Vec<usize> {
    let k = k.max(1);
    let mut fold = vec![0; groups.len()];
    let mut order: Vec<usize> = (0..groups.len()).collect();
    // Stable: items of a group keep their recording order.
    order.sort_by(|&a, &b| groups[a].cmp(&groups[b]));
    for members in order.chunk_by(|&a, &b| groups[a] == groups[b]) {
        let n = members.len();
        for (rank, &item) in members.iter().enumerate() {
            fold[item] = rank * k / n;
        }
    }
    fold
}

/// One fold: a name, its figures, and the number that ranks it (higher is better; `None` when the
/// fold has nothing to rank by, e.g. a NAB series without labelled windows).
#[derive(Clone, Debug)]
pub struct Fold {
    pub name: String,
    pub figures: Value,
    pub rank: Option<f64>,
}

/// Every fold of one evaluation, ranked by `metric`.
#[derive(Clone, Debug)]
pub struct Folds {
    /// What ranks the folds (printed and reported), e.g. `accuracy`.
    pub metric: &'static str,
    pub folds: Vec<Fold>,
}

impl Folds {
    pub fn new(metric: &'static str) -> Self {
        Self {
            metric,
            folds: Vec::new(),
        }
    }

    pub fn push(&mut self, name: impl Into<String>, figures: Value, rank: Option<f64>) {
        self.folds.push(Fold {
            name: name.into(),
            figures,
            rank,
        });
    }

    /// The fold with the lowest rank (the first of equals).
    pub fn worst(&self) -> Option<&Fold> {
        self.folds
            .iter()
            .filter(|f| f.rank.is_some())
            .min_by(|a, b| a.rank.unwrap_or(0.0).total_cmp(&b.rank.unwrap_or(0.0)))
    }

    /// Mean rank over the ranked folds.
    pub fn mean(&self) -> Option<f64> {
        let ranks: Vec<f64> = self.folds.iter().filter_map(|f| f.rank).collect();
        (!ranks.is_empty()).then(|| ranks.iter().sum::<f64>() / ranks.len() as f64)
    }

    /// One line per fold, the worst marked, then the mean and the worst.
    pub fn print(&self, title: &str) {
        let worst = self.worst().map(|f| f.name.clone());
        for f in &self.folds {
            let mark = if Some(&f.name) == worst.as_ref() {
                "  <- worst"
            } else {
                ""
            };
            println!("  fold {:<40} {}{mark}", f.name, f.figures);
        }
        match (self.mean(), self.worst()) {
            (Some(mean), Some(w)) => println!(
                "{title}: {} folds, {} mean {mean:.4}, worst {:.4} ({})",
                self.folds.len(),
                self.metric,
                w.rank.unwrap_or(0.0),
                w.name
            ),
            _ => println!("{title}: {} folds, none ranked", self.folds.len()),
        }
    }

    /// Adds `folds`, `worst_fold` and `fold_metric` to a task's JSON summary.
    pub fn attach(&self, summary: &mut Value) {
        let fold_json = |f: &Fold| {
            let mut v = f.figures.clone();
            if let Value::Object(m) = &mut v {
                m.insert("fold".into(), json!(f.name));
            }
            v
        };
        summary["folds"] = Value::Array(self.folds.iter().map(fold_json).collect());
        summary["worst_fold"] = self.worst().map_or(Value::Null, fold_json);
        summary["fold_metric"] = json!(self.metric);
        if let Some(mean) = self.mean() {
            summary["fold_mean"] = json!(mean);
        }
    }
}

/// Contiguous `k`-fold by blocks of each group for a classification (items in recording order):
/// one confusion per fold, ranked by accuracy.
pub fn classification_by_blocks<G: Ord>(
    labels: &[String],
    groups: &[G],
    truth: &[String],
    predicted: &[String],
    k: usize,
) -> Folds {
    classification_folds(labels, truth, predicted, &contiguous_blocks(groups, k))
}

/// Folds of a classification: one confusion per fold, ranked by accuracy.
pub fn classification_folds(
    labels: &[String],
    truth: &[String],
    predicted: &[String],
    fold_of: &[usize],
) -> Folds {
    let k = fold_of.iter().copied().max().map_or(0, |m| m + 1);
    let mut per_fold: Vec<Confusion> = (0..k).map(|_| Confusion::new(labels)).collect();
    for ((t, p), &f) in truth.iter().zip(predicted).zip(fold_of) {
        per_fold[f].add(t, p);
    }
    let mut folds = Folds::new("accuracy");
    for (f, c) in per_fold.iter().enumerate() {
        folds.push(format!("{}/{k}", f + 1), c.summary(), Some(c.accuracy()));
    }
    folds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_contiguous_within_each_class_and_balanced() {
        // Two classes recorded one after the other, a third interleaved.
        let groups = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 0, 2, 0, 2];
        let fold = contiguous_blocks(&groups, 5);
        // Class 0 (7 items): ranks 0..7 → folds 0,0,1,2,2,3,4.
        assert_eq!(
            [fold[0], fold[1], fold[2], fold[3], fold[4], fold[11], fold[13]],
            [0, 0, 1, 2, 2, 3, 4]
        );
        assert_eq!(&fold[5..10], &[0, 1, 2, 3, 4]);
        // Class 2 (3 items): the first folds only.
        assert_eq!([fold[10], fold[12], fold[14]], [0, 1, 3]);
        // Folds never decrease along a class.
        for g in 0..3 {
            let f: Vec<usize> = (0..groups.len())
                .filter(|&i| groups[i] == g)
                .map(|i| fold[i])
                .collect();
            assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        }
    }

    #[test]
    fn the_worst_fold_is_reported_not_the_best() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let truth: Vec<String> = ["a", "a", "b", "b"].map(String::from).to_vec();
        let predicted: Vec<String> = ["a", "a", "a", "b"].map(String::from).to_vec();
        let folds = classification_folds(&labels, &truth, &predicted, &[0, 0, 1, 1]);
        let mut summary = json!({"accuracy": 0.75});
        folds.attach(&mut summary);
        assert_eq!(summary["folds"].as_array().unwrap().len(), 2);
        assert_eq!(summary["worst_fold"]["fold"], "2/2");
        assert_eq!(summary["worst_fold"]["accuracy"], 0.5);
        assert_eq!(summary["fold_mean"], 0.75);
    }
}
