//! The gateway's sources besides the simulator: a line source (serial device, FIFO or file
//! followed as it grows) and a drop folder of logger export files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::DateTime;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use crate::feed::{Feed, Reading, Stopped};
use crate::zone::Zone;
use crate::{berlinger, logtag, wire};

/// Most readings spooled in one write.
const CHUNK: usize = 2_000;

/// Reads one `serial,timestamp,temp_c` line (RFC 3339 timestamp, °C).
pub fn parse_line(line: &str) -> Result<Reading, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    let [serial, ts, temp] = f[..] else {
        return Err(format!("expected 3 fields serial,timestamp,temp_c, found {}", f.len()));
    };
    if !wire::is_serial(serial) {
        return Err(format!(
            "serial {serial:?}: use letters, digits, '-', '_', '.', ':' (and not \"gw-\" first: gateway ids start so)"
        ));
    }
    let ts = DateTime::parse_from_rfc3339(ts)
        .map_err(|e| format!("timestamp {ts:?} is not RFC 3339 with an offset ({e})"))?
        .to_utc();
    if ts > chrono::Utc::now() + wire::MAX_FUTURE_SKEW {
        return Err(format!(
            "timestamp {ts} is in the future: check the logger's clock (the service refuses it)"
        ));
    }
    let temp_c: f64 = temp
        .parse()
        .ok()
        .filter(|t: &f64| (wire::MIN_TEMP_C..=wire::MAX_TEMP_C).contains(t))
        .ok_or_else(|| format!("temperature {temp:?} is not a number of °C from -100 to 100"))?;
    Ok(Reading {
        serial: serial.to_string(),
        ts,
        temp_c,
    })
}

/// Where a followed file was left: byte offset and line number after the last line taken. It
/// is a spool note, written in the same fsync as the lines' readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Cursor {
    identity: (u64, u64),
    offset: u64,
    line: u64,
}

impl Cursor {
    fn key(source: &Path) -> String {
        format!("lines:{:016x}", fnv1a(source.to_string_lossy().as_bytes()))
    }

    fn parse(text: &str) -> Option<Cursor> {
        let n: Vec<u64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let [dev, ino, offset, line] = n[..] else { return None };
        Some(Cursor {
            identity: (dev, ino),
            offset,
            line,
        })
    }

    fn text(&self) -> String {
        format!("{} {} {} {}", self.identity.0, self.identity.1, self.offset, self.line)
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}
#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Follows `path`: a regular file from where the last run left it, then as it grows (a file
/// replaced or cut shorter starts again from its top); a FIFO or serial device as lines come.
/// Bad lines are logged with their number and skipped.
pub async fn lines(path: PathBuf, feed: Feed) -> anyhow::Result<()> {
    let key = Cursor::key(&path);
    let shown = path.display().to_string();
    'reopen: loop {
        let file = loop {
            // A FIFO's open waits for a writer: it must not hold up a stopping gateway.
            let opened = tokio::select! {
                _ = feed.cancelled().cancelled() => return Ok(()),
                r = tokio::fs::File::open(&path) => r,
            };
            match opened {
                Ok(f) => break f,
                Err(e) => {
                    tracing::warn!(source = %shown, "cannot open the line source ({e}); trying again in 5 s");
                    tokio::select! {
                        _ = feed.cancelled().cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
        let meta = file.metadata().await?;
        let regular = meta.is_file();
        let mut cur = Cursor {
            identity: identity(&meta),
            ..Cursor::default()
        };
        let mut reader = BufReader::new(file);
        if regular {
            let Ok(saved) = feed.note(&key).await else {
                return Ok(());
            };
            if let Some(saved) = saved.as_deref().and_then(Cursor::parse) {
                if saved.identity == cur.identity && saved.offset <= meta.len() {
                    cur = saved;
                    reader.seek(std::io::SeekFrom::Start(cur.offset)).await?;
                    tracing::info!(source = %shown, line = cur.line, "resuming after the last line taken");
                }
            }
        }
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        // (bytes, lines) read into `batch` but not yet taken.
        let (mut read_bytes, mut read_lines) = (0u64, 0u64);
        loop {
            // Gather what is there now; a line without its newline yet waits for it.
            let got = tokio::select! {
                _ = feed.cancelled().cancelled() => return Ok(()),
                r = tokio::time::timeout(Duration::from_millis(200), reader.read_until(b'\n', &mut buf)) => r,
            };
            let complete = buf.last() == Some(&b'\n');
            if let Ok(r) = &got {
                let n = r.as_ref().map_err(|e| anyhow::anyhow!("reading {shown}: {e}"))?;
                if *n > 0 && complete {
                    read_bytes += buf.len() as u64;
                    read_lines += 1;
                    let number = cur.line + read_lines;
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.trim();
                    if !line.is_empty() && !line.starts_with('#') && !line.starts_with("serial,") {
                        match parse_line(line) {
                            Ok(r) => batch.push(r),
                            Err(why) => tracing::warn!(source = %shown, line = number, "skipped a bad line: {why}"),
                        }
                    }
                    buf.clear();
                    if read_lines < CHUNK as u64 {
                        continue;
                    }
                }
            }
            if read_lines > 0 {
                let next = Cursor {
                    offset: cur.offset + read_bytes,
                    line: cur.line + read_lines,
                    ..cur
                };
                let note = regular.then(|| (key.clone(), next.text()));
                if feed.take(std::mem::take(&mut batch), note).await.is_err() {
                    return Ok(());
                }
                cur = next;
                (read_bytes, read_lines) = (0, 0);
                continue;
            }
            if matches!(got, Ok(Ok(0))) {
                // End of file for now. A regular file replaced or cut shorter starts again.
                if regular {
                    match std::fs::metadata(&path) {
                        Ok(m) if identity(&m) != cur.identity || m.len() < cur.offset => {
                            tracing::info!(source = %shown, "the file was replaced or truncated; reading it from the top");
                            continue 'reopen;
                        }
                        _ => {}
                    }
                } else if buf.is_empty() {
                    // A FIFO whose writer went away: wait for the next one.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'reopen;
                }
                tokio::select! {
                    _ = feed.cancelled().cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
    }
}

/// An export file's readings, whichever logger wrote it.
#[derive(Debug)]
pub struct ExportReadings {
    pub format: &'static str,
    pub serial: String,
    pub readings: Vec<Reading>,
    /// Rows left out, with why (a local time the zone skips, an unreadable line).
    pub skipped: Vec<String>,
}

/// Reads a Berlinger Fridge-tag / Q-tag export or a LogTag CSV export; local times are in `zone`.
pub fn read_export(text: &str, zone: Zone) -> Result<ExportReadings, String> {
    let (format, serial, rows, mut skipped): (_, _, Vec<(chrono::NaiveDateTime, f64)>, Vec<String>) =
        match berlinger::parse(text) {
            Ok(e) if !e.serial.is_empty() => (
                "Berlinger",
                e.serial,
                e.rows.iter().filter_map(|r| Some((r.local, r.temp_c?))).collect(),
                vec![],
            ),
            _ => match logtag::parse(text) {
                Ok(e) => (
                    "LogTag",
                    e.serial,
                    e.rows.iter().map(|r| (r.local, r.temp_c)).collect(),
                    e.skipped.iter().map(|(n, why)| format!("line {n}: {why}")).collect(),
                ),
                Err(e) => return Err(format!("not a Berlinger or LogTag export ({e})")),
            },
        };
    let mut rows = rows;
    rows.sort_by_key(|(t, _)| *t);
    let instants = zone.to_utc_in_order(rows.iter().map(|(t, _)| *t));
    let mut readings = Vec::with_capacity(rows.len());
    for ((local, temp_c), at) in rows.into_iter().zip(instants) {
        match at {
            Some(ts) => readings.push(Reading {
                serial: serial.clone(),
                ts,
                temp_c,
            }),
            None => skipped.push(format!(
                "{local}: no such local time in this zone (clocks went forward)"
            )),
        }
    }
    Ok(ExportReadings {
        format,
        serial,
        readings,
        skipped,
    })
}

/// The largest export file read: a year of 5-minute readings is a few MiB.
pub const MAX_EXPORT_BYTES: u64 = 32 * 1024 * 1024;

/// Watches `dir` for export files. Each file's readings are spooled once: its content's hash is
/// noted in the spool with its last readings, so the same file dropped again (any name) is
/// skipped. A file is read once its size has held still for one poll (it may be being copied).
/// Symbolic links are not followed (the folder's files are the gateway's to read, nothing it
/// points to), and a file over [`MAX_EXPORT_BYTES`] is not read; each is logged once.
pub async fn watch(dir: PathBuf, zone: Zone, every: Duration, feed: Feed) -> anyhow::Result<()> {
    let mut refused: HashSet<(PathBuf, u64)> = HashSet::new();
    // (name, size, modified) of files looked at: not read again unless they change.
    let mut looked: HashSet<(PathBuf, u64, std::time::SystemTime)> = HashSet::new();
    let mut sizes: std::collections::HashMap<PathBuf, u64> = Default::default();
    let shown = dir.display().to_string();
    let mut folder_error: Option<String> = None;
    loop {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => {
                if folder_error.take().is_some() {
                    tracing::info!(folder = %shown, "the drop folder can be read again");
                }
                e.filter_map(Result::ok).collect::<Vec<_>>()
            }
            Err(e) => {
                // Once per new error, not every poll.
                if folder_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(folder = %shown, "cannot read the drop folder ({e}); watching for it");
                    folder_error = Some(e.to_string());
                }
                vec![]
            }
        };
        let mut names: Vec<_> = entries.iter().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if meta.file_type().is_symlink() {
                if refused.insert((path.clone(), 0)) {
                    tracing::warn!(file = %path.display(), "a symbolic link in the drop folder: not followed; copy the export in");
                }
                continue;
            }
            if !meta.is_file() || hidden {
                continue;
            }
            if meta.len() > MAX_EXPORT_BYTES {
                if refused.insert((path.clone(), meta.len())) {
                    tracing::warn!(
                        file = %path.display(), bytes = meta.len(),
                        "over {} MiB: not an export this gateway reads; not read", MAX_EXPORT_BYTES / (1024 * 1024)
                    );
                }
                continue;
            }
            let key = (
                path.clone(),
                meta.len(),
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            );
            if looked.contains(&key) {
                continue;
            }
            // Still being written? Wait for a poll with the same size, a last change at least two
            // seconds old, and a last line that has its line ending: a reading cut off mid-number
            // would be stored wrong for good.
            // (A file without a final line ending is taken once it has been still for 30 s.)
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
            let complete = ends_a_line(&path) || age >= Duration::from_secs(30);
            if sizes.insert(path.clone(), meta.len()) != Some(meta.len()) || age < Duration::from_secs(2) || !complete {
                continue;
            }
            looked.insert(key);
            match take_file(&path, zone, &feed).await {
                Ok(()) => {}
                Err(Stopped) => return Ok(()),
            }
        }
        tokio::select! {
            _ = feed.cancelled().cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Reads a file of the drop folder itself: what was opened must still be the folder's entry (a
/// link swapped in since it was looked at is not followed), and no more than
/// [`MAX_EXPORT_BYTES`] is read whatever it grew to.
fn read_own_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let opened = file.metadata()?;
    let entry = std::fs::symlink_metadata(path)?;
    #[cfg(unix)]
    let same = {
        use std::os::unix::fs::MetadataExt;
        !entry.file_type().is_symlink() && entry.dev() == opened.dev() && entry.ino() == opened.ino()
    };
    #[cfg(not(unix))]
    let same = !entry.file_type().is_symlink();
    if !same || !opened.is_file() {
        return Err(std::io::Error::other(
            "it changed into a link or something else while being read",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_EXPORT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_EXPORT_BYTES {
        return Err(std::io::Error::other(format!(
            "it grew past {} MiB while being read",
            MAX_EXPORT_BYTES / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

fn ends_a_line(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .is_ok_and(|_| last[0] == b'\n')
}

async fn take_file(path: &Path, zone: Zone, feed: &Feed) -> Result<(), Stopped> {
    let shown = path.display().to_string();
    let bytes = match read_own_file(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %shown, "cannot read the export ({e})");
            return Ok(());
        }
    };
    let key = format!("file:{:016x}{:08x}", fnv1a(&bytes), bytes.len());
    if feed.note(&key).await?.is_some() {
        tracing::info!(file = %shown, "this export was published before (same content): skipped");
        return Ok(());
    }
    let text = String::from_utf8_lossy(&bytes);
    let export = match read_export(&text, zone) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!(file = %shown, "not read: {why}");
            return Ok(());
        }
    };
    if export.readings.is_empty() {
        tracing::warn!(
            file = %shown, format = export.format, serial = %export.serial,
            "this export holds no individual readings (a Fridge-tag 2 keeps only daily summaries): \
             bring it in with `vfc import FILE --unit ID` on the service"
        );
    }
    for why in &export.skipped {
        tracing::warn!(file = %shown, "skipped a row: {why}");
    }
    let n = export.readings.len();
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .replace(['\n', '\r'], " ");
    let mut chunks = export.readings.chunks(CHUNK).peekable();
    if chunks.peek().is_none() {
        feed.take(vec![], Some((key.clone(), name.clone()))).await?;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        feed.take(chunk.to_vec(), last.then(|| (key.clone(), name.clone())))
            .await?;
    }
    tracing::info!(file = %shown, format = export.format, serial = %export.serial, readings = n, "export spooled");
    Ok(())
}

/// FNV-1a, 64 bits: names a file's content or a source path; not for secrets.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_or_refused_with_what_is_wrong() {
        let r = parse_line("LT-9, 2026-11-25T08:00:00-05:00 ,4.5").unwrap();
        assert_eq!(
            (r.serial.as_str(), r.ts.to_rfc3339().as_str(), r.temp_c),
            ("LT-9", "2026-11-25T13:00:00+00:00", 4.5)
        );
        assert!(parse_line("LT-9,2026-11-25 08:00,4.5")
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(parse_line("LT-9,2026-11-25T08:00:00Z,warm")
            .unwrap_err()
            .contains("temperature"));
        assert!(parse_line("LT-9,2026-11-25T08:00:00Z")
            .unwrap_err()
            .contains("3 fields"));
        assert!(parse_line("LT/9,2026-11-25T08:00:00Z,4")
            .unwrap_err()
            .contains("serial"));
    }

    #[test]
    fn the_constructed_logtag_export_is_read_in_its_zone() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/logtag-constructed.csv"
        ))
        .unwrap();
        let e = read_export(&text, Zone::parse("America/New_York").unwrap()).unwrap();
        assert_eq!(e.format, "LogTag");
        assert!(!e.readings.is_empty());
        assert!(e.readings.windows(2).all(|w| w[0].ts < w[1].ts));
        assert!(read_export("hello,world\n", Zone::Machine).is_err());
    }
}
