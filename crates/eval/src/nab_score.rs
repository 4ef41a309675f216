//! The Numenta Anomaly Benchmark's published scoring, so that our figures sit next to the
//! public ones (NAB whitepaper, Lavin & Ahmad 2015, and the benchmark's scorer).
//!
//! - Each labelled window is worth `A_TP × σ(y)` for its **earliest** detection, with the scaled
//!   sigmoid σ(y) = 2 / (1 + e^{5y}) − 1 of the detection's relative position
//!   y = −(right − i + 1) / width (−1 at the left edge, near 0 at the right edge), divided by
//!   σ(−1) so that the earliest detection is worth exactly `A_TP`; a window without a detection
//!   costs `A_FN`.
//! - Every detection outside all windows costs `A_FP × σ(y)` with y = (i − right) / (width − 1)
//!   of the window that precedes it (a detection just after a window is almost free, one far
//!   behind costs the full `A_FP`; σ = −1 at y ≥ 3 and before the first window).
//! - The first 15 % of the rows (at most 750) are probationary: detections there do not count,
//!   nor do windows that end there.
//! - Normalised score: 100 × (raw − null) / (perfect − null), where null is the detector that
//!   never detects and perfect = A_TP × windows; summed over the series of a corpus first.
//!
//! A detection, for Vigil, is a raised alert: the row of the window's last sample.

/// Weights of a NAB application profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostMatrix {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's standard profile: A_TP = 1, A_FP = −0.11, A_FN = −1 (signs applied in the formulas).
pub const STANDARD: CostMatrix = CostMatrix {
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};

/// Share of each series that is probationary, and the cap in rows (NAB: 15 % of at most 5000).
const PROBATION_SHARE: f64 = 0.15;
const PROBATION_CAP_ROWS: f64 = 750.0;

/// NAB's scaled sigmoid of a relative position.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Rows a series' probationary period covers.
pub fn probation_rows(rows: usize) -> usize {
    ((PROBATION_SHARE * rows as f64).floor()).min(PROBATION_CAP_ROWS) as usize
}

/// Inclusive row ranges of labelled windows given as inclusive time ranges: from the first row
/// at or after the start to the last row at or before the end (a few NAB files have timestamps
/// out of order, so no binary search); a window that covers no row is dropped.
pub fn window_rows(ts: &[u64], windows: &[(u64, u64)]) -> Vec<(usize, usize)> {
    windows
        .iter()
        .filter_map(|&(a, b)| {
            let left = ts.iter().position(|&t| t >= a)?;
            let right = ts.iter().rposition(|&t| t <= b)?;
            (left <= right).then_some((left, right))
        })
        .collect()
}

/// One series' raw score, its null and perfect references.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct NabScore {
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
}

impl NabScore {
    pub fn add(&mut self, o: NabScore) {
        self.raw += o.raw;
        self.null += o.null;
        self.perfect += o.perfect;
    }

    /// 100 × (raw − null) / (perfect − null); `None` without any window.
    pub fn normalised(&self) -> Option<f64> {
        let span = self.perfect - self.null;
        (span > 0.0).then(|| 100.0 * (self.raw - self.null) / span)
    }
}

/// Scores detections (row indices) on a series of `rows` rows with labelled `windows`
/// (inclusive row ranges, sorted, disjoint).
pub fn score(
    rows: usize,
    windows: &[(usize, usize)],
    detections: &[usize],
    cost: CostMatrix,
) -> NabScore {
    NabScore {
        raw: raw(rows, windows, detections, cost),
        null: raw(rows, windows, &[], cost),
        perfect: cost.tp * windows.len() as f64,
    }
}

fn raw(rows: usize, windows: &[(usize, usize)], detections: &[usize], cost: CostMatrix) -> f64 {
    let probation = probation_rows(rows);
    let max_tp = scaled_sigmoid(-1.0);
    // Best detection per window, starting from a miss; windows over by probation's end are out.
    let mut best: Vec<Option<f64>> = windows
        .iter()
        .map(|&(_, r)| (r >= probation).then_some(-cost.fn_))
        .collect();
    let mut false_positives = 0.0;
    let mut seen = std::collections::BTreeSet::new();
    for &i in detections {
        if i < probation || i >= rows || !seen.insert(i) {
            continue;
        }
        if let Some(k) = windows.iter().position(|&(l, r)| l <= i && i <= r) {
            let (l, r) = windows[k];
            let width = (r - l + 1) as f64;
            let y = -((r - i + 1) as f64) / width;
            if let Some(b) = best[k].as_mut() {
                *b = b.max(scaled_sigmoid(y) * cost.tp / max_tp);
            }
        } else {
            let y = match windows.iter().rev().find(|&&(_, r)| r < i) {
                // A one-row window has no width to measure by: NAB would divide by zero.
                Some(&(l, r)) if r > l => (i - r) as f64 / (r - l) as f64,
                Some(_) => 3.0,
                None => 3.0,
            };
            false_positives += scaled_sigmoid(y) * cost.fp;
        }
    }
    best.into_iter().flatten().sum::<f64>() + false_positives
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: usize = 1000; // probation: rows 0..150
    const WINDOW: (usize, usize) = (500, 509); // 10 rows

    fn s(detections: &[usize]) -> NabScore {
        score(ROWS, &[WINDOW], detections, STANDARD)
    }

    #[test]
    fn scaled_sigmoid_matches_the_published_points() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn null_and_perfect_detectors_bound_the_normalised_score() {
        let null = s(&[]);
        assert_eq!((null.raw, null.null, null.perfect), (-1.0, -1.0, 1.0));
        assert_eq!(null.normalised(), Some(0.0));
        let perfect = s(&[500]);
        assert!((perfect.raw - 1.0).abs() < 1e-12);
        assert!((perfect.normalised().unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_late_detection_is_worth_less_and_only_the_best_counts() {
        // Last row: y = -1/10, σ = 2/(1+e^-0.5) - 1 = 0.244919, / σ(-1).
        let late = s(&[509]).raw;
        assert!((late - 0.244919 / 0.986614).abs() < 1e-5, "{late}");
        assert!((s(&[509, 500, 505]).raw - 1.0).abs() < 1e-12);
    }

    #[test]
    fn false_positives_cost_by_distance_behind_the_window() {
        // Before any window: the full A_FP.
        assert!((s(&[300]).raw - (-1.0 - 0.11)).abs() < 1e-12);
        // One row after: y = 1/9, σ = 2/(1+e^(5/9)) - 1 = -0.270850.
        let just_after = s(&[510]).raw + 1.0;
        assert!((just_after - 0.11 * -0.270850).abs() < 1e-6, "{just_after}");
        // Three widths behind and more: the full A_FP.
        assert!((s(&[509 + 27]).raw + 1.0 + 0.11).abs() < 1e-12);
    }

    #[test]
    fn probation_hides_early_detections_and_windows() {
        assert_eq!(probation_rows(ROWS), 150);
        assert_eq!(probation_rows(100_000), 750);
        assert_eq!(s(&[10]).raw, -1.0);
        let early = score(ROWS, &[(100, 120)], &[110], STANDARD);
        assert_eq!((early.raw, early.null), (0.0, 0.0));
    }

    #[test]
    fn windows_map_to_rows_by_time() {
        let ts = [10, 20, 30, 40, 50];
        assert_eq!(
            window_rows(&ts, &[(15, 40), (41, 49), (50, 99)]),
            vec![(1, 3), (4, 4)]
        );
    }
}
