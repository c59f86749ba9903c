//! A config file held in memory with a map from key paths to line numbers.
//!
//! Every error the loader reports names the file, the line and the key. Serde
//! errors from the `toml` crate carry a byte span; validation errors carry a key
//! path such as `span[1].timers.T309`. [`Source`] turns either into a line by
//! walking the spanned document once (`toml::de::DeTable`) and recording where
//! every key and array element starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// One TOML file: its path, its text and where each key path lives.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Key path -> (byte offset of the key, byte range of the whole entry).
    keys: HashMap<String, (usize, std::ops::Range<usize>)>,
}

impl Source {
    /// Reads a file and indexes its keys. Syntax errors come back with their line.
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Source::from_text(path, text)
    }

    /// Indexes text that is already in memory (the embedded board profile).
    pub fn from_text(path: &Path, text: String) -> Result<Source, ConfigError> {
        let mut src = Source {
            path: path.to_path_buf(),
            text,
            keys: HashMap::new(),
        };
        let mut keys = HashMap::new();
        match DeTable::parse(&src.text) {
            Ok(doc) => index_table(doc.get_ref(), "", &mut keys),
            Err(e) => {
                let offset = e.span().map(|s| s.start).unwrap_or(0);
                return Err(ConfigError {
                    line: src.line_of(offset),
                    file: src.path.clone(),
                    key: String::new(),
                    message: format!("TOML syntax error: {}", e.message()),
                });
            }
        }
        src.keys = keys;
        Ok(src)
    }

    /// Deserializes the whole file into `T`, mapping serde errors to file:line:key.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let key = offset.map(|o| self.path_at(o)).unwrap_or_default();
            let line = match offset {
                Some(o) => self.line_of(o),
                None => 1,
            };
            ConfigError {
                file: self.path.clone(),
                line,
                key,
                message: tidy_serde_message(e.message()),
            }
        })
    }

    /// An error about `key` (a key path), placed on the key's line, or on the
    /// line of its closest ancestor that exists in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let mut probe = key.to_string();
        let line = loop {
            if let Some((start, _)) = self.keys.get(&probe) {
                break self.line_of(*start);
            }
            match parent_path(&probe) {
                Some(p) => probe = p,
                None => break 1,
            }
        };
        ConfigError {
            file: self.path.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The deepest key path whose entry contains `offset`.
    fn path_at(&self, offset: usize) -> String {
        self.keys
            .iter()
            .filter(|(_, (start, range))| {
                (*start <= offset && offset < range.end.max(*start + 1)) || range.contains(&offset)
            })
            .max_by_key(|(path, (start, _))| (path.len(), *start))
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> None.
fn parent_path(path: &str) -> Option<String> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| path[..i].to_string());
    }
    path.rfind('.').map(|i| path[..i].to_string())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn index_table(
    table: &DeTable<'_>,
    prefix: &str,
    out: &mut HashMap<String, (usize, std::ops::Range<usize>)>,
) {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        let kspan = k.span();
        let vspan = v.span();
        let whole = kspan.start.min(vspan.start)..kspan.end.max(vspan.end);
        out.insert(path.clone(), (kspan.start, whole));
        index_value(v.get_ref(), &path, out);
    }
}

fn index_value(
    value: &DeValue<'_>,
    path: &str,
    out: &mut HashMap<String, (usize, std::ops::Range<usize>)>,
) {
    match value {
        DeValue::Table(t) => index_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let span = item.span();
                out.insert(p.clone(), (span.start, span.clone()));
                index_value(item.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

/// Serde's messages are good but mention Rust types; say what an operator expects.
fn tidy_serde_message(msg: &str) -> String {
    msg.trim()
        .replace("expected u16", "expected a whole number 0-65535")
        .replace("expected u8", "expected a whole number 0-255")
        .replace("expected u32", "expected a whole number")
        .replace("expected u64", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source::from_text(Path::new("t.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn key_paths_resolve_to_lines() {
        let s = src("a = 1\n[b]\nc = 2\n[[d]]\ne = 3\n[[d]]\ne = 4\n");
        assert_eq!(s.error("a", "x").line, 1);
        assert_eq!(s.error("b.c", "x").line, 3);
        assert_eq!(s.error("d[1].e", "x").line, 7);
        // A missing key falls back to its table.
        assert_eq!(s.error("d[1].missing", "x").line, 6);
    }

    #[test]
    fn syntax_error_has_line() {
        let e = Source::from_text(Path::new("t.toml"), "a = 1\nb = = 2\n".into()).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2].c").as_deref(), Some("a.b[2]"));
        assert_eq!(parent_path("a.b[2]").as_deref(), Some("a.b"));
        assert_eq!(parent_path("a"), None);
    }
}
