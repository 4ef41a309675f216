//! Seq sanity: how far a sample may jump ahead of its device's high-water mark.
//!
//! A window is applied to a device's alert state only when it is newer than the last one
//! applied, so one window at a far-future seq (a corrupted counter, a replayed test stream)
//! would make every later window of the real stream "old" and silence the device's alerts for
//! good. The mark is the device state's last applied window; a sample more than
//! [`MAX_SEQ_JUMP_WINDOWS`] windows' worth of seqs past the end of that window (past seq 0 for
//! a device with none) is rejected with code `seq_jump` instead. Documented in
//! `docs/telemetry.md`.

use crate::telemetry::{Reason, Sample, TelemetryError};
use crate::window::{WindowId, WindowSpec};

/// How many windows' worth of seqs a sample may be ahead of its device's next expected seq.
///
/// Large enough for a device that was offline and dropped the oldest part of a full queue
/// (4,096 windows: 68 h of a 60-sample window at 1 Hz, 350 s of a 1,024-sample window at
/// 12 kHz), small enough that a jump is caught long before seq 2^53.
pub const MAX_SEQ_JUMP_WINDOWS: u64 = 4096;

/// Largest jump past the next expected seq a profile with this window accepts.
pub fn max_seq_jump(spec: &WindowSpec) -> u64 {
    MAX_SEQ_JUMP_WINDOWS.saturating_mul(u64::from(spec.size))
}

/// The device's next expected seq: one past the last window applied to its state.
pub fn next_expected(spec: &WindowSpec, applied_window: Option<WindowId>) -> u64 {
    applied_window.map_or(0, |w| {
        w.saturating_mul(u64::from(spec.hop))
            .saturating_add(u64::from(spec.size))
    })
}

/// Whether the check can reject any of these samples at all: only seqs at least one maximum
/// jump past 0 can, so a young device's messages need no look at its state.
pub fn needs_mark(samples: &[Sample], spec: &WindowSpec) -> bool {
    let limit = max_seq_jump(spec);
    samples.iter().any(|s| s.seq > limit)
}

/// Rejects the message if one of its samples is more than [`max_seq_jump`] past the device's
/// next expected seq. `applied_window` is the device state's last applied window.
pub fn check_seq_jump(
    samples: &[Sample],
    spec: &WindowSpec,
    applied_window: Option<WindowId>,
) -> Result<(), TelemetryError> {
    let next = next_expected(spec, applied_window);
    let limit = max_seq_jump(spec);
    let Some((i, s)) = samples
        .iter()
        .enumerate()
        .find(|(_, s)| s.seq.saturating_sub(next) > limit)
    else {
        return Ok(());
    };
    let field = if samples.len() == 1 {
        "seq".to_string()
    } else {
        format!("samples[{i}].seq")
    };
    Err(TelemetryError::new(
        field,
        Reason::SeqJump {
            seq: s.seq,
            next,
            jump: s.seq - next,
            limit,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64) -> Sample {
        Sample {
            seq,
            ts: seq,
            values: vec![0.0],
        }
    }

    #[test]
    fn the_bound_is_counted_from_the_end_of_the_last_applied_window() {
        let spec = WindowSpec::tumbling(60);
        let limit = max_seq_jump(&spec);
        assert_eq!(limit, 4096 * 60);
        assert!(check_seq_jump(&[at(limit)], &spec, None).is_ok());
        let e = check_seq_jump(&[at(limit + 1)], &spec, None).unwrap_err();
        assert_eq!((e.code(), e.field.as_str()), ("seq_jump", "seq"));
        // Window 9 applied: seqs up to 600 + limit are fine.
        assert!(check_seq_jump(&[at(600 + limit)], &spec, Some(9)).is_ok());
        let e = check_seq_jump(&[at(1), at(601 + limit)], &spec, Some(9)).unwrap_err();
        assert_eq!(e.field, "samples[1].seq");
        assert!(matches!(e.reason, Reason::SeqJump { next: 600, .. }));
        // Old seqs are never a jump (they are late or duplicates, counted elsewhere).
        assert!(check_seq_jump(&[at(0)], &spec, Some(1_000_000)).is_ok());
        let far = (1u64 << 53) - 1;
        assert!(check_seq_jump(&[at(far)], &spec, Some(u64::MAX)).is_ok());
        assert!(check_seq_jump(&[at(far)], &spec, Some(5)).is_err());
        assert!(!needs_mark(&[at(limit)], &spec));
        assert!(needs_mark(&[at(limit + 1)], &spec));
    }
}
