//! Prometheus text exposition (format 0.0.4) and the registry of collectors.
//!
//! Layers keep their counters as atomics they own; at scrape time each
//! registered [`Collector`] reads them and writes samples through an
//! [`Exposition`], which writes `# HELP` and `# TYPE` once per family, escapes
//! label values, and refuses (in debug builds) names that break the naming
//! rules: `tdmgw_` prefix, `_total` on counters and only on counters. The media
//! thread never touches this module except through atomics such as
//! [`AtomicHistogram`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Prometheus metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes one scrape. Families must be written whole (all samples of a family
/// after its [`Exposition::family`] call).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    families: Vec<String>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family; a second call with the same name is ignored so that
    /// several collectors (one per span) can share a family, provided their
    /// samples are written consecutively.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        debug_assert!(name.starts_with("tdmgw_"), "metric {name} lacks tdmgw_");
        debug_assert_eq!(
            name.ends_with("_total"),
            kind == Kind::Counter,
            "metric {name}: _total goes on counters and only counters"
        );
        if self.families.iter().any(|f| f == name) {
            return self;
        }
        self.families.push(name.to_string());
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// A counter or gauge family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// A histogram's `_bucket`, `_sum` and `_count` samples. `bounds` are the
    /// upper bounds; `counts` the non-cumulative count per bucket plus one more
    /// for +Inf.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| format_float(*b));
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        self.out.push_str(name);
        self.out.push_str("_sum");
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, sum);
        self.out.push('\n');
        self.out.push_str(name);
        self.out.push_str("_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn write_value(out: &mut String, v: f64) {
    out.push_str(&format_float(v));
}

/// Something that writes samples at scrape time.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

impl<F: Fn(&mut Exposition) + Send + Sync> Collector for F {
    fn collect(&self, out: &mut Exposition) {
        self(out)
    }
}

/// All collectors of the process, scraped in registration order.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Arc<Mutex<Vec<Arc<dyn Collector>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&self, c: Arc<dyn Collector>) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
    }

    /// The whole scrape.
    pub fn render(&self) -> String {
        let collectors = self
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut e = Exposition::new();
        for c in collectors {
            c.collect(&mut e);
        }
        e.finish()
    }
}

/// A fixed-bucket histogram the media thread can update without allocating
/// or locking (relaxed atomics). Values are recorded in integer units (e.g.
/// microseconds) and exposed scaled (e.g. to seconds).
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// `bounds`: ascending upper bounds in recording units.
    pub fn new(bounds: &'static [u64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn record(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// Writes the histogram with values divided by `scale` (1e6 for µs -> s).
    pub fn expose(&self, out: &mut Exposition, name: &str, labels: &[(&str, &str)], scale: f64) {
        let bounds: Vec<f64> = self.bounds.iter().map(|&b| b as f64 / scale).collect();
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        out.histogram(
            name,
            labels,
            &bounds,
            &counts,
            self.sum.load(Ordering::Relaxed) as f64 / scale,
        );
    }
}

/// Process metrics from /proc/self: RSS, open fds, CPU time, start time.
pub fn collect_process(out: &mut Exposition) {
    let Some(p) = ProcStat::read() else { return };
    out.single(
        "tdmgw_process_resident_memory_bytes",
        "Resident set size of the tdmgw process.",
        Kind::Gauge,
        p.rss_bytes as f64,
    );
    out.single(
        "tdmgw_process_cpu_seconds_total",
        "User and system CPU time used by tdmgw.",
        Kind::Counter,
        p.cpu_seconds,
    );
    out.single(
        "tdmgw_process_start_time_seconds",
        "Start time of the process since the Unix epoch.",
        Kind::Gauge,
        p.start_time_seconds,
    );
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.single(
            "tdmgw_process_open_fds",
            "Open file descriptors.",
            Kind::Gauge,
            fds.count() as f64,
        );
    }
}

/// The build-info gauge (always 1) with the version as a label.
pub fn collect_build_info(out: &mut Exposition) {
    out.family(
        "tdmgw_build_info",
        "tdmgw version and git revision; always 1.",
        Kind::Gauge,
    )
    .sample("tdmgw_build_info", &[("version", crate::VERSION)], 1.0);
}

struct ProcStat {
    rss_bytes: u64,
    cpu_seconds: f64,
    start_time_seconds: f64,
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised comm, which may itself hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // proc(5): utime is field 14, stime 15, starttime 22, rss 24 (1-based,
        // counting pid and comm); `f` starts at field 3.
        let ticks = clock_ticks();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        let start: f64 = f.get(19)?.parse().ok()?;
        let rss_pages: u64 = f.get(21)?.parse().ok()?;
        let page = page_size();
        let boot = boot_time_seconds()?;
        Some(ProcStat {
            rss_bytes: rss_pages * page,
            cpu_seconds: (utime + stime) / ticks,
            start_time_seconds: boot + start / ticks,
        })
    }
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64)
}

fn boot_time_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut e = Exposition::new();
        e.family("tdmgw_calls_total", "Calls.", Kind::Counter)
            .sample(
                "tdmgw_calls_total",
                &[("cause", "16"), ("dir", "in\"x")],
                3.0,
            );
        e.single("tdmgw_up", "Up.", Kind::Gauge, 1.0);
        let s = e.finish();
        assert_eq!(
            s,
            "# HELP tdmgw_calls_total Calls.\n# TYPE tdmgw_calls_total counter\n\
             tdmgw_calls_total{cause=\"16\",dir=\"in\\\"x\"} 3\n\
             # HELP tdmgw_up Up.\n# TYPE tdmgw_up gauge\ntdmgw_up 1\n"
        );
    }

    #[test]
    fn histogram_is_cumulative() {
        static B: [u64; 3] = [10, 100, 1000];
        let h = AtomicHistogram::new(&B);
        for v in [5, 10, 11, 500, 5000] {
            h.record(v);
        }
        let mut e = Exposition::new();
        e.family("tdmgw_loop_seconds", "x", Kind::Histogram);
        h.expose(&mut e, "tdmgw_loop_seconds", &[], 1e6);
        let s = e.finish();
        assert!(
            s.contains("tdmgw_loop_seconds_bucket{le=\"0.00001\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("tdmgw_loop_seconds_bucket{le=\"0.0001\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("tdmgw_loop_seconds_bucket{le=\"+Inf\"} 5\n"),
            "{s}"
        );
        assert!(s.contains("tdmgw_loop_seconds_count 5\n"), "{s}");
    }

    #[test]
    fn process_metrics_read() {
        let mut e = Exposition::new();
        collect_process(&mut e);
        let s = e.finish();
        assert!(s.contains("tdmgw_process_resident_memory_bytes "), "{s}");
        assert!(s.contains("tdmgw_process_open_fds "), "{s}");
    }
}
