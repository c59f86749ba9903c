//! Call detail records: one JSON line per call in a size-rotated file.
//!
//! `cdr.jsonl` grows to `max_bytes`, then becomes `cdr.jsonl.1` (older files
//! shift up to `.keep`, the oldest is removed) and a new `cdr.jsonl` starts.
//! A write failure is logged and counted, never fatal: calls matter more than
//! their records.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Which way a call went through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the exchange (E1) to the core (SIP): 999, 101 ...
    ExchangeToCore,
    /// From the core to the exchange: call-backs.
    CoreToExchange,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearedBy {
    Exchange,
    Core,
    Gateway,
}

/// Media quality at the end of the call (from the media engine's summary).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Quality {
    pub packets_received: u64,
    pub packets_lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub r_factor: f64,
    pub mos: f64,
}

/// One call. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdrRecord {
    pub call_id: String,
    pub span: u8,
    pub timeslot: u8,
    pub direction: Direction,
    pub calling: String,
    pub called: String,
    pub setup_ms: u64,
    pub alerting_ms: Option<u64>,
    pub answer_ms: Option<u64>,
    pub release_ms: u64,
    pub cleared_by: ClearedBy,
    pub q850_cause: u8,
    pub sip_status: Option<u16>,
    pub core_peer: Option<String>,
    pub quality: Option<Quality>,
}

impl CdrRecord {
    /// Replaces the numbers by their redacted forms.
    pub fn redacted(mut self) -> CdrRecord {
        self.calling = super::numbers::redact(&self.calling);
        self.called = super::numbers::redact(&self.called);
        self
    }
}

/// The rotating CDR file.
#[derive(Debug)]
pub struct CdrWriter {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    redact: bool,
    file: File,
    size: u64,
    pub written: u64,
    pub failed: u64,
}

impl CdrWriter {
    pub fn open(path: &Path, max_bytes: u64, keep: u32, redact: bool) -> io::Result<CdrWriter> {
        if let Some(d) = path.parent()
            && !d.as_os_str().is_empty()
        {
            std::fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CdrWriter {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            redact,
            file,
            size,
            written: 0,
            failed: 0,
        })
    }

    /// Appends one record; rotates first if it would not fit.
    pub fn write(&mut self, rec: CdrRecord) {
        let rec = if self.redact { rec.redacted() } else { rec };
        let mut line = match serde_json::to_string(&rec) {
            Ok(l) => l,
            Err(e) => {
                self.failed += 1;
                tracing::error!(error = %e, "CDR not serialisable");
                return;
            }
        };
        line.push('\n');
        if let Err(e) = self.append(line.as_bytes()) {
            self.failed += 1;
            tracing::error!(path = %self.path.display(), error = %e, call = %rec.call_id, "CDR write failed");
        } else {
            self.written += 1;
        }
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> CdrRecord {
        CdrRecord {
            call_id: format!("c{i}"),
            span: 1,
            timeslot: 5,
            direction: Direction::ExchangeToCore,
            calling: "02079460123".into(),
            called: "999".into(),
            setup_ms: 1000 + i,
            alerting_ms: Some(1100 + i),
            answer_ms: Some(1200 + i),
            release_ms: 5000 + i,
            cleared_by: ClearedBy::Exchange,
            q850_cause: 16,
            sip_status: Some(200),
            core_peer: Some("127.0.0.1:5080".into()),
            quality: Some(Quality {
                r_factor: 93.2,
                mos: 4.4,
                ..Quality::default()
            }),
        }
    }

    #[test]
    fn one_json_line_per_call_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cdr.jsonl");
        let mut w = CdrWriter::open(&p, 1 << 20, 3, true).unwrap();
        w.write(rec(1));
        w.write(rec(2));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["calling"], "********123");
        assert_eq!(v["called"], "999");
        assert_eq!(v["direction"], "exchange_to_core");
        assert_eq!(v["q850_cause"], 16);
        assert_eq!(v["quality"]["mos"], 4.4);
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cdr.jsonl");
        let one = serde_json::to_string(&rec(0)).unwrap().len() as u64 + 1;
        let mut w = CdrWriter::open(&p, one * 2, 2, false).unwrap();
        for i in 0..9 {
            w.write(rec(i));
        }
        assert_eq!(w.written, 9);
        let count = |q: &Path| {
            std::fs::read_to_string(q)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        assert_eq!(count(&p), 1);
        assert_eq!(count(&dir.path().join("cdr.jsonl.1")), 2);
        assert_eq!(count(&dir.path().join("cdr.jsonl.2")), 2);
        assert!(!dir.path().join("cdr.jsonl.3").exists());
        assert!(std::fs::read_to_string(&p).unwrap().contains("\"c8\""));
    }
}
