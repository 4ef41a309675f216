//! Windows keyed by `seq`.
//!
//! Window `k` of a device covers the seqs `[k*hop, k*hop + size)`. Because membership depends
//! only on `seq`, duplicates and reordering cannot change a window's content: a window holds the
//! set of its seqs, whatever order or how often they arrived.
//!
//! Closing policy (documented in docs/telemetry.md): a window is *complete* when all `size`
//! seqs are present and is scored at once. Otherwise it is closed when the device's highest seq
//! reaches `end + close_after`; then, if at least `min_completeness` of its samples are present,
//! the holes are filled by linear interpolation (holding the nearest value at the edges) and it
//! is scored; else it is reported `incomplete` and not scored. Samples that arrive for a window
//! already closed are counted as late and dropped.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::telemetry::Sample;
use crate::transform::Matrix;

/// Index of a window within a device's seq space.
pub type WindowId = u64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Samples per window.
    pub size: u32,
    /// Samples between window starts; `hop == size` is tumbling, `hop < size` sliding.
    pub hop: u32,
    /// Seqs past a window's end after which an incomplete window is closed. Defaults to `size`.
    #[serde(default)]
    pub close_after: u32,
    /// Fraction of samples an incomplete window needs to be gap-filled and scored.
    #[serde(default = "default_min_completeness")]
    pub min_completeness: f64,
}

fn default_min_completeness() -> f64 {
    0.9
}

/// Largest window accepted; keeps one window's item and archive object bounded.
pub const MAX_WINDOW_SIZE: u32 = 65_536;

impl WindowSpec {
    pub fn tumbling(size: u32) -> Self {
        Self {
            size,
            hop: size,
            close_after: size,
            min_completeness: default_min_completeness(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.size == 0 || self.size > MAX_WINDOW_SIZE {
            return Err((
                "size",
                format!("{} must be within 1..={MAX_WINDOW_SIZE}", self.size),
            ));
        }
        if self.hop == 0 || self.hop > self.size {
            return Err((
                "hop",
                format!("{} must be within 1..=size ({})", self.hop, self.size),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_completeness) {
            return Err((
                "min_completeness",
                format!("{} must be within 0..=1", self.min_completeness),
            ));
        }
        Ok(())
    }

    /// Gap after which an incomplete window closes (`close_after`, or `size` when unset).
    pub fn close_gap(&self) -> u64 {
        if self.close_after == 0 {
            u64::from(self.size)
        } else {
            u64::from(self.close_after)
        }
    }

    pub fn start(&self, window: WindowId) -> u64 {
        window * u64::from(self.hop)
    }

    /// One past the last seq of the window.
    pub fn end(&self, window: WindowId) -> u64 {
        self.start(window) + u64::from(self.size)
    }

    /// Highest seq at which the window may be closed even if incomplete.
    pub fn close_deadline(&self, window: WindowId) -> u64 {
        self.end(window) - 1 + self.close_gap()
    }

    /// Windows that contain `seq`.
    pub fn windows_of(&self, seq: u64) -> RangeInclusive<WindowId> {
        let hop = u64::from(self.hop);
        let first = (seq + 1).saturating_sub(u64::from(self.size)).div_ceil(hop);
        first..=seq / hop
    }

    /// Windows whose close deadline lies in `(previous, current]`: the ones a move of the
    /// high-water mark from `previous` to `current` makes closable; `None` when no window is.
    pub fn closable_between(
        &self,
        previous: Option<u64>,
        current: u64,
    ) -> Option<RangeInclusive<WindowId>> {
        // deadline(k) = k*hop + size - 1 + gap  >  previous   and   <= current
        let hop = u64::from(self.hop);
        let offset = u64::from(self.size) - 1 + self.close_gap();
        let last = match current.checked_sub(offset) {
            Some(x) => x / hop,
            None => return None,
        };
        let first = match previous {
            None => 0,
            Some(p) if p < offset => 0,
            Some(p) => (p - offset) / hop + 1,
        };
        (first <= last).then_some(first..=last)
    }

    /// Splits samples into the windows they belong to (a sample may be in several when sliding).
    pub fn split(&self, samples: &[Sample]) -> BTreeMap<WindowId, Vec<Sample>> {
        let mut out: BTreeMap<WindowId, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            for w in self.windows_of(s.seq) {
                out.entry(w).or_default().push(s.clone());
            }
        }
        out
    }
}

/// Orders samples by seq and keeps the first copy of each seq.
pub fn dedup_by_seq(samples: &mut Vec<Sample>) {
    samples.sort_by_key(|s| s.seq);
    samples.dedup_by_key(|s| s.seq);
}

/// What the window's samples are ready for.
#[derive(Clone, Debug, PartialEq)]
pub enum Assembly {
    /// All samples are present, or enough of them to fill the gaps: `filled` were interpolated.
    Ready { matrix: Matrix, filled: u32 },
    /// Closed with too few samples to score.
    Incomplete { present: u32 },
    /// Not complete and not yet past its close deadline.
    Pending { present: u32 },
}

/// Builds the window matrix (rows = time, cols = channels) from its deduplicated samples.
///
/// `high_water` is the device's highest seq seen; it decides whether an incomplete window has
/// waited long enough.
pub fn assemble(
    spec: &WindowSpec,
    window: WindowId,
    samples: &[Sample],
    channels: usize,
    high_water: u64,
) -> Assembly {
    let start = spec.start(window);
    let size = spec.size as usize;
    let mut slots: Vec<Option<&Sample>> = vec![None; size];
    for s in samples {
        if s.seq >= start && s.seq < start + size as u64 && s.values.len() == channels {
            let slot = &mut slots[(s.seq - start) as usize];
            if slot.is_none() {
                *slot = Some(s);
            }
        }
    }
    let present = slots.iter().filter(|s| s.is_some()).count();
    if present < size {
        if high_water < spec.close_deadline(window) {
            return Assembly::Pending {
                present: present as u32,
            };
        }
        let enough = present > 0 && present as f64 >= spec.min_completeness * size as f64;
        if !enough {
            return Assembly::Incomplete {
                present: present as u32,
            };
        }
    }
    let mut data = vec![0f32; size * channels];
    let known: Vec<usize> = (0..size).filter(|&i| slots[i].is_some()).collect();
    for (row, slot) in slots.iter().enumerate() {
        let dst = &mut data[row * channels..(row + 1) * channels];
        match slot {
            Some(s) => dst.copy_from_slice(&s.values),
            None => fill_row(dst, row, &known, &slots),
        }
    }
    Assembly::Ready {
        matrix: Matrix::new(size, channels, data),
        filled: (size - present) as u32,
    }
}

/// Linear interpolation between the nearest present rows; the nearest value at the edges.
fn fill_row(dst: &mut [f32], row: usize, known: &[usize], slots: &[Option<&Sample>]) {
    let after = known.partition_point(|&k| k < row);
    let next = known.get(after).copied();
    let prev = after.checked_sub(1).map(|i| known[i]);
    let value = |k: usize| &slots[k].expect("known rows are present").values;
    match (prev, next) {
        (Some(p), Some(n)) => {
            let t = (row - p) as f32 / (n - p) as f32;
            for (c, d) in dst.iter_mut().enumerate() {
                *d = value(p)[c] + t * (value(n)[c] - value(p)[c]);
            }
        }
        (Some(k), None) | (None, Some(k)) => dst.copy_from_slice(value(k)),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seq: u64, v: f32) -> Sample {
        Sample {
            seq,
            ts: seq * 1000,
            values: vec![v],
        }
    }

    #[test]
    fn membership_for_tumbling_and_sliding() {
        let t = WindowSpec::tumbling(60);
        assert_eq!(t.windows_of(0), 0..=0);
        assert_eq!(t.windows_of(59), 0..=0);
        assert_eq!(t.windows_of(60), 1..=1);
        let sl = WindowSpec {
            size: 4,
            hop: 2,
            close_after: 0,
            min_completeness: 0.9,
        };
        assert_eq!(sl.windows_of(0), 0..=0);
        assert_eq!(sl.windows_of(3), 0..=1);
        assert_eq!(sl.windows_of(4), 1..=2);
        for seq in 0..50u64 {
            for w in sl.windows_of(seq) {
                assert!(sl.start(w) <= seq && seq < sl.end(w));
            }
        }
    }

    #[test]
    fn closable_ranges_partition_the_deadlines() {
        let sl = WindowSpec {
            size: 4,
            hop: 2,
            close_after: 3,
            min_completeness: 0.9,
        };
        let mut seen = Vec::new();
        let mut prev = None;
        for hw in [0u64, 5, 6, 7, 20, 21, 40] {
            seen.extend(sl.closable_between(prev, hw).into_iter().flatten());
            prev = Some(hw);
        }
        let expect: Vec<u64> = (0..).take_while(|&k| sl.close_deadline(k) <= 40).collect();
        assert_eq!(seen, expect);
    }

    #[test]
    fn pending_incomplete_and_filled() {
        let spec = WindowSpec {
            size: 4,
            hop: 4,
            close_after: 2,
            min_completeness: 0.5,
        };
        let samples = vec![s(0, 1.0), s(3, 4.0)];
        assert_eq!(
            assemble(&spec, 0, &samples, 1, 4),
            Assembly::Pending { present: 2 }
        );
        match assemble(&spec, 0, &samples, 1, 5) {
            Assembly::Ready { matrix, filled } => {
                assert_eq!(filled, 2);
                assert_eq!(matrix.data, vec![1.0, 2.0, 3.0, 4.0]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            assemble(&spec, 0, &samples[..1], 1, 9),
            Assembly::Incomplete { present: 1 }
        );
        let edge = vec![s(1, 2.0), s(2, 3.0)];
        match assemble(&spec, 0, &edge, 1, 9) {
            Assembly::Ready { matrix, .. } => assert_eq!(matrix.data, vec![2.0, 2.0, 3.0, 3.0]),
            other => panic!("{other:?}"),
        }
    }
}
