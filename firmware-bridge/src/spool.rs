//! The gateway's spool: every reading is on disk (fsync'd) before it counts as taken, gets the
//! next `seq` of its logger, and leaves only when the service's end-to-end confirmation covers
//! it (docs/architecture.md: `gateway`, `epoch`, `seq`, `vfc/gateways/{gateway}/committed/{serial}`).
//!
//! One append-only log holds it all, so a power cut at any point replays to the same state:
//! `T serial seq ts temp` a reading taken, `C serial seq` confirmed up to seq, `N serial next`
//! the next seq (written when the log is compacted), `S key value` a source's note (where a
//! followed file was left, which export files were sent), written in the same fsync as the
//! readings it goes with, so a source resumes exactly after what was taken. A torn last line is ignored: its reading
//! was never reported as taken. A new spool directory is a new `epoch`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// A reading waiting for the service's confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub temp_c: f64,
}

#[derive(Debug)]
struct Logger {
    next: u64,
    confirmed: u64,
    pending: VecDeque<Entry>,
}

/// Why a reading was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes of unconfirmed readings): no reading is deleted to make room; restore the connection to the service")]
    Full(u64),
    #[error("logger serial {0:?} cannot be spooled (1-64 letters, digits, '-', '_', '.', ':')")]
    BadSerial(String),
    #[error("note key {0:?} must be one word")]
    BadNote(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct Spool {
    dir: PathBuf,
    epoch: String,
    log: File,
    log_bytes: u64,
    loggers: BTreeMap<String, Logger>,
    notes: BTreeMap<String, String>,
    pending_bytes: u64,
    cap_bytes: u64,
}

/// Bytes a pending reading stands for (its log line, about).
const ENTRY_BYTES: u64 = 64;
/// The log is rewritten with only what is pending once it grows past this.
const COMPACT_AFTER: u64 = 8 * 1024 * 1024;

impl Spool {
    /// Opens (or creates) the spool in `dir`; `cap_bytes` bounds the unconfirmed readings.
    pub fn open(dir: &Path, cap_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let epoch_path = dir.join("epoch");
        let epoch = match fs::read_to_string(&epoch_path) {
            Ok(e) if !e.trim().is_empty() => e.trim().to_string(),
            _ => {
                let e = format!(
                    "{}-{:08x}",
                    Utc::now().format("%Y%m%dT%H%M%SZ"),
                    std::process::id() ^ nanos()
                );
                write_durably(&epoch_path, e.as_bytes())?;
                e
            }
        };
        let path = dir.join("spool.log");
        let mut loggers: BTreeMap<String, Logger> = BTreeMap::new();
        let mut notes: BTreeMap<String, String> = BTreeMap::new();
        if path.exists() {
            let text = fs::read(&path)?;
            // A torn last line (no newline) was never reported as taken.
            let whole = match text.iter().rposition(|b| *b == b'\n') {
                Some(end) => &text[..=end],
                None => &[][..],
            };
            for line in String::from_utf8_lossy(whole).lines() {
                replay(&mut loggers, &mut notes, line);
            }
            if whole.len() < text.len() {
                // Cut it off, or the next reading would be appended to it.
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(whole.len() as u64)?;
                f.sync_all()?;
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(&path)?;
        let log_bytes = log.metadata()?.len();
        let pending_bytes = loggers.values().map(|l| l.pending.len() as u64 * ENTRY_BYTES).sum();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            epoch,
            log,
            log_bytes,
            loggers,
            notes,
            pending_bytes,
            cap_bytes,
        };
        if spool.log_bytes > COMPACT_AFTER {
            spool.compact()?;
        }
        Ok(spool)
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Takes readings: each gets its logger's next seq, and all are on disk when this returns,
    /// with `note` (a source's `key` → `value`) in the same write.
    pub fn take(
        &mut self,
        readings: &[(String, DateTime<Utc>, f64)],
        note: Option<(&str, &str)>,
    ) -> Result<Vec<u64>, SpoolError> {
        let extra = readings.len() as u64 * ENTRY_BYTES;
        if self.pending_bytes + extra > self.cap_bytes {
            return Err(SpoolError::Full(self.pending_bytes));
        }
        let mut text = String::new();
        let mut seqs = Vec::with_capacity(readings.len());
        let mut staged: Vec<(String, Entry)> = Vec::new();
        for (serial, ts, temp) in readings {
            if !valid_serial(serial) {
                return Err(SpoolError::BadSerial(serial.clone()));
            }
            let base = self.loggers.get(serial).map(|l| l.next).unwrap_or(1);
            let seq = base + staged.iter().filter(|(s, _)| s == serial).count() as u64;
            text.push_str(&format!("T {serial} {seq} {} {temp}\n", ts.to_rfc3339()));
            staged.push((
                serial.clone(),
                Entry {
                    seq,
                    ts: *ts,
                    temp_c: *temp,
                },
            ));
            seqs.push(seq);
        }
        if let Some((key, value)) = note {
            if key.is_empty() || key.contains(char::is_whitespace) || value.contains('\n') {
                return Err(SpoolError::BadNote(key.to_string()));
            }
            text.push_str(&format!("S {key} {value}\n"));
        }
        self.log.write_all(text.as_bytes())?;
        self.log.sync_data()?;
        self.log_bytes += text.len() as u64;
        for (serial, e) in staged {
            let l = logger(&mut self.loggers, &serial);
            l.next = e.seq + 1;
            l.pending.push_back(e);
        }
        if let Some((key, value)) = note {
            self.notes.insert(key.to_string(), value.to_string());
        }
        self.pending_bytes += extra;
        Ok(seqs)
    }

    /// The service confirmed every reading of `serial` up to `seq`: they leave the spool.
    pub fn confirm(&mut self, serial: &str, seq: u64) -> io::Result<usize> {
        let Some(l) = self.loggers.get_mut(serial) else {
            return Ok(0);
        };
        if seq <= l.confirmed {
            return Ok(0);
        }
        let line = format!("C {serial} {seq}\n");
        self.log.write_all(line.as_bytes())?;
        // Losing this mark in a power cut only sends those readings again, which the service
        // takes as duplicates; no fsync is owed here.
        self.log_bytes += line.len() as u64;
        l.confirmed = seq;
        let before = l.pending.len();
        while l.pending.front().is_some_and(|e| e.seq <= seq) {
            l.pending.pop_front();
        }
        let gone = before - l.pending.len();
        self.pending_bytes -= gone as u64 * ENTRY_BYTES;
        if self.log_bytes > COMPACT_AFTER && self.pending_bytes * 4 < self.log_bytes {
            self.compact()?;
        }
        Ok(gone)
    }

    /// What a logger still waits for, oldest first.
    pub fn pending(&self, serial: &str) -> impl Iterator<Item = &Entry> {
        self.loggers.get(serial).into_iter().flat_map(|l| l.pending.iter())
    }

    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.loggers.keys().map(String::as_str)
    }

    /// What a source noted last under `key`.
    pub fn note(&self, key: &str) -> Option<&str> {
        self.notes.get(key).map(String::as_str)
    }

    /// Unconfirmed readings in all.
    pub fn depth(&self) -> usize {
        self.loggers.values().map(|l| l.pending.len()).sum()
    }

    /// At 90% of the cap: warn on the status topic and in the log.
    pub fn near_cap(&self) -> bool {
        self.pending_bytes * 10 >= self.cap_bytes * 9
    }

    /// Rewrites the log with only what is pending (and each logger's next seq), atomically.
    fn compact(&mut self) -> io::Result<()> {
        let mut text = String::new();
        for (serial, l) in &self.loggers {
            text.push_str(&format!("N {serial} {}\nC {serial} {}\n", l.next, l.confirmed));
            for e in &l.pending {
                text.push_str(&format!("T {serial} {} {} {}\n", e.seq, e.ts.to_rfc3339(), e.temp_c));
            }
        }
        for (key, value) in &self.notes {
            text.push_str(&format!("S {key} {value}\n"));
        }
        let path = self.dir.join("spool.log");
        write_durably(&path, text.as_bytes())?;
        self.log = OpenOptions::new().append(true).open(&path)?;
        self.log_bytes = text.len() as u64;
        Ok(())
    }
}

fn replay(loggers: &mut BTreeMap<String, Logger>, notes: &mut BTreeMap<String, String>, line: &str) {
    if let Some((key, value)) = line.strip_prefix("S ").and_then(|r| r.split_once(' ')) {
        notes.insert(key.to_string(), value.to_string());
        return;
    }
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["T", serial, seq, ts, temp] => {
            let (Ok(seq), Ok(ts), Ok(temp_c)) = (
                seq.parse::<u64>(),
                DateTime::parse_from_rfc3339(ts),
                temp.parse::<f64>(),
            ) else {
                return;
            };
            let l = logger(loggers, serial);
            l.next = l.next.max(seq + 1);
            if seq > l.confirmed && l.pending.back().is_none_or(|e| e.seq < seq) {
                l.pending.push_back(Entry {
                    seq,
                    ts: ts.with_timezone(&Utc),
                    temp_c,
                });
            }
        }
        ["C", serial, seq] => {
            let Ok(seq) = seq.parse::<u64>() else { return };
            let l = logger(loggers, serial);
            l.confirmed = l.confirmed.max(seq);
            while l.pending.front().is_some_and(|e| e.seq <= seq) {
                l.pending.pop_front();
            }
        }
        ["N", serial, next] => {
            let Ok(next) = next.parse::<u64>() else { return };
            let l = logger(loggers, serial);
            l.next = l.next.max(next);
        }
        _ => {}
    }
}

fn logger<'a>(loggers: &'a mut BTreeMap<String, Logger>, serial: &str) -> &'a mut Logger {
    loggers.entry(serial.to_string()).or_insert_with(|| Logger {
        next: 1,
        confirmed: 0,
        pending: VecDeque::new(),
    })
}

pub fn valid_serial(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Writes a file so that after a power cut it is either the old one or the new one.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::minutes(min)
    }

    #[test]
    fn readings_get_gapless_seqs_per_logger_and_leave_only_when_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let seqs = s
            .take(
                &[
                    ("A".into(), at(0), 4.0),
                    ("B".into(), at(0), 5.0),
                    ("A".into(), at(5), 4.1),
                ],
                None,
            )
            .unwrap();
        assert_eq!(seqs, vec![1, 1, 2]);
        assert_eq!(s.take(&[("A".into(), at(10), 4.2)], None).unwrap(), vec![3]);
        assert_eq!(s.confirm("A", 2).unwrap(), 2);
        assert_eq!(s.pending("A").map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.depth(), 2);
    }

    #[test]
    fn a_restart_replays_the_same_state_and_the_same_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.take(&[("A".into(), at(0), 4.0), ("A".into(), at(5), 4.5)], None)
                .unwrap();
            s.confirm("A", 1).unwrap();
            s.epoch().to_string()
        };
        // A power cut in the middle of writing a line: the torn line was never taken.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("spool.log"))
            .unwrap();
        log.write_all(b"T A 3 2026-11-25T12:").unwrap();
        drop(log);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.epoch(), epoch);
        assert_eq!(
            s.pending("A").map(|e| (e.seq, e.temp_c)).collect::<Vec<_>>(),
            vec![(2, 4.5)]
        );
        assert_eq!(s.take(&[("A".into(), at(10), 4.6)], None).unwrap(), vec![3]);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            s.pending("A").map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3],
            "the torn line did not swallow seq 3"
        );
        // Another directory is another epoch.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Spool::open(other.path(), 1 << 20).unwrap().epoch(), epoch);
    }

    #[test]
    fn a_full_spool_refuses_new_readings_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 10 * ENTRY_BYTES).unwrap();
        let batch: Vec<_> = (0..9).map(|i| ("A".to_string(), at(i), 4.0)).collect();
        s.take(&batch, None).unwrap();
        assert!(s.near_cap());
        assert!(matches!(
            s.take(&[("A".into(), at(20), 4.0), ("A".into(), at(25), 4.0)], None),
            Err(SpoolError::Full(_))
        ));
        assert_eq!(s.depth(), 9, "nothing unconfirmed was deleted");
        s.confirm("A", 9).unwrap();
        assert!(!s.near_cap());
        assert_eq!(s.take(&[("A".into(), at(30), 4.0)], None).unwrap(), vec![10]);
    }

    #[test]
    fn compaction_keeps_pending_readings_and_the_next_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.take(&[("A".into(), at(0), 4.0), ("A".into(), at(5), 4.1)], None)
            .unwrap();
        s.confirm("A", 1).unwrap();
        s.compact().unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.pending("A").map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        assert_eq!(s.take(&[("A".into(), at(10), 4.2)], None).unwrap(), vec![3]);
    }

    #[test]
    fn a_note_is_written_with_its_readings_and_survives_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.take(&[("A".into(), at(0), 4.0)], Some(("lines:f1", "1 2 40 1")))
            .unwrap();
        s.take(&[("A".into(), at(5), 4.0)], Some(("lines:f1", "1 2 80 2")))
            .unwrap();
        assert!(matches!(
            s.take(&[], Some(("two words", "x"))),
            Err(SpoolError::BadNote(_))
        ));
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.note("lines:f1"), Some("1 2 80 2"));
        s.confirm("A", 2).unwrap();
        s.compact().unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.note("lines:f1"), Some("1 2 80 2"));
        assert_eq!(s.note("nothing"), None);
    }
}
