//! Time: calendar dates from epoch milliseconds (UTC), without a date library, and waiting.

/// `(year, month, day)` of the UTC day holding `epoch_ms` (H. Hinnant's `civil_from_days`).
pub fn civil_date(epoch_ms: u64) -> (i64, u32, u32) {
    let days = (epoch_ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of `epoch_ms` in UTC.
pub fn date(epoch_ms: u64) -> String {
    let (y, m, d) = civil_date(epoch_ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601_ms(epoch_ms: u64) -> String {
    let ms_of_day = epoch_ms % 86_400_000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        date(epoch_ms),
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(iso8601_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(4_102_444_799_999), "2099-12-31");
    }
}

/// The pipeline's short waits for a window another invocation is scoring, on tokio's timer.
#[derive(Debug, Default)]
pub struct TokioPause;

#[async_trait::async_trait]
impl vigil_core::ports::Pause for TokioPause {
    async fn pause(&self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
