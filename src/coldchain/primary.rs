//! A unit's temperature record as the rules judge it: the readings of the logger serving it as
//! primary at each moment (docs/domain.md, "Data loggers": a swap for calibration continues the
//! record), and how long a gap must be to count as unknown time.

use sqlx::AnyConnection;

use super::episodes::Sample;
use crate::error::Result;
use crate::registry::assignments;

/// The unit's primary readings in a window.
pub struct Record {
    pub samples: Vec<Sample>,
    /// The serial serving it latest, if any ever did in the window.
    pub serial: Option<String>,
    /// Two logging intervals, ms: a longer gap between readings is unknown time.
    pub gap_ms: i64,
}

/// The unit's primary readings in `[start, end)`.
pub async fn record(conn: &mut AnyConnection, unit_id: i64, start: i64, end: i64) -> Result<Record> {
    let mut samples = Vec::new();
    let mut serial = None;
    let mut interval_s = 0i64;
    for w in assignments::primary_windows(conn, unit_id, start).await? {
        interval_s = interval_s.max(w.reading_interval_s.unwrap_or(300));
        let to = w.to.unwrap_or(i64::MAX).min(end);
        for r in crate::readings::taken_between(conn, &w.serial, start.max(w.from), to).await? {
            samples.push(Sample {
                ts: r.ts,
                temp_c: r.temp_c,
                received_at: r.received_at,
            });
        }
        serial = Some(w.serial);
    }
    samples.sort_by_key(|s| s.ts);
    Ok(Record {
        samples,
        serial,
        gap_ms: 2 * interval_s.max(1) * 1000,
    })
}
