//! The site config's `[call]` section: accepted and mapped onto the call
//! manager's parameters; every kind of mistake rejected with the file, the
//! line and the key, all at once.

use std::path::PathBuf;
use std::time::Duration;

use tdmgw::call::manager::RtpTimeoutAction;
use tdmgw::call::site_config::{manager_config, number_complete};
use tdmgw::config::{Config, ConfigError};

const HEAD: &str = "board = \"builtin:sim\"
[[span]]
id = 1
role = \"user\"
[[peer_group]]
name = \"mcvp\"
[[peer_group.peer]]
address = \"192.0.2.7:5060\"
[[route]]
called = \"999\"
peer_group = \"mcvp\"
";

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("site.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn load(text: &str) -> Config {
    let (_d, p) = write(text);
    Config::load(&p).unwrap_or_else(|e| panic!("rejected:\n{e}"))
}

fn errs(text: &str) -> Vec<ConfigError> {
    let (_d, p) = write(text);
    match Config::load(&p) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// One error on `line` about `key` containing `msg`.
fn assert_err(errs: &[ConfigError], line: usize, key: &str, msg: &str) {
    assert!(
        errs.iter()
            .any(|e| e.line == line && e.key == key && e.message.contains(msg)),
        "no error at line {line} key `{key}` containing `{msg}`; got:\n{}",
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn defaults_without_a_call_section() {
    let c = load(HEAD);
    let m = manager_config(&c.site, 1);
    assert_eq!(m.group_down_cause.0, 34);
    assert_eq!(m.no_route_cause.0, 1);
    assert_eq!((m.drain_cause.0, m.drain_status), (42, 503));
    assert!(!m.busy_out);
    assert_eq!(m.audit_interval, Duration::from_secs(60));
    assert_eq!(m.long_call_check, Duration::from_secs(3600));
    assert_eq!(m.rtp_timeout, Duration::from_secs(30));
    assert_eq!(m.rtp_timeout_action, RtpTimeoutAction::Clear);
    assert_eq!(m.rtp_timeout_cause.0, 41);
    assert_eq!(m.numbers.country_code, "44");
    assert!(m.cause_map.sip_to_q850.is_empty());
    assert!(c.site.call.overlap_receiving);
}

#[test]
fn every_knob_is_mapped() {
    let c = load(&format!(
        "{HEAD}[call]
no_route_cause = 3
group_down_cause = 38
drain_cause = 41
drain_status = 480
busy_out = true
no_answer_timeout = \"2m\"
overlap_receiving = false
min_digits = 3
max_digits = 11
audit_interval = \"30s\"
status_enquiry_after = \"20m\"
rtp_timeout = \"10s\"
rtp_timeout_action = \"log\"
rtp_timeout_cause = 102
media_summary_wait = \"500ms\"
dtmf_info_to_core = true
dtmf_info_from_core = false
country_code = \"353\"
national_prefix = \"0\"
international_prefix = \"00\"
[call.sip_to_q850]
\"486\" = 34
[call.q850_to_sip]
\"34\" = 480
[[call.trunk]]
span = 1
sip_to_q850 = {{ \"404\" = 3 }}
"
    ));
    assert!(!c.site.call.overlap_receiving);
    let m = manager_config(&c.site, 1);
    assert_eq!(m.no_route_cause.0, 3);
    assert_eq!(m.group_down_cause.0, 38);
    assert_eq!((m.drain_cause.0, m.drain_status), (41, 480));
    assert!(m.busy_out);
    assert_eq!(m.no_answer_timeout, Duration::from_secs(120));
    assert_eq!(
        (m.route_digits[0].min_digits, m.route_digits[0].max_digits),
        (3, 11)
    );
    assert_eq!(m.audit_interval, Duration::from_secs(30));
    assert_eq!(m.long_call_check, Duration::from_secs(1200));
    assert_eq!(m.rtp_timeout, Duration::from_secs(10));
    assert_eq!(m.rtp_timeout_action, RtpTimeoutAction::Log);
    assert_eq!(m.rtp_timeout_cause.0, 102);
    assert_eq!(m.summary_wait, Duration::from_millis(500));
    assert!(m.dtmf_to_info && !m.dtmf_from_info);
    assert_eq!(m.numbers.country_code, "353");
    assert_eq!(m.cause_map.sip_to_q850.get(&486), Some(&34));
    assert_eq!(m.cause_map.q850_to_sip.get(&34), Some(&480));
    // The trunk's table is the site's plus its own.
    let t = &m.trunk_cause_maps[&1];
    assert_eq!(t.sip_to_q850.get(&404), Some(&3));
    assert_eq!(t.sip_to_q850.get(&486), Some(&34));
    assert_eq!(
        t.sip_to_q850_lookup(486),
        Some(34),
        "the override is what the manager uses"
    );
}

trait Lookup {
    fn sip_to_q850_lookup(&self, status: u16) -> Option<u8>;
}

impl Lookup for tdmgw::call::cause_map::CauseMap {
    fn sip_to_q850_lookup(&self, status: u16) -> Option<u8> {
        self.sip_to_q850(status, None, None).map(|(c, _)| c)
    }
}

#[test]
fn unknown_key_is_rejected_with_its_line() {
    let e = errs(&format!("{HEAD}[call]\nbusy_out = true\nbusyout = true\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 14);
    assert!(e[0].message.contains("unknown field `busyout`"), "{}", e[0]);
    let e = errs(&format!(
        "{HEAD}[[call.trunk]]\nspan = 1\nsip_to_q850x = {{}}\n"
    ));
    assert_eq!(e[0].line, 14, "{e:?}");
}

#[test]
fn every_problem_is_reported_at_once_with_file_line_and_key() {
    let e = errs(&format!(
        "{HEAD}[call]
group_down_cause = 0
drain_status = 200
audit_interval = \"1s\"
rtp_timeout = \"20m\"
min_digits = 12
max_digits = 11
country_code = \"+44\"
rtp_timeout_action = \"drop\"
"
    ));
    // A bad enum value is a parse error: reported alone, on its line.
    assert_err(&e, 20, "call.rtp_timeout_action", "unknown variant `drop`");
    let e = errs(&format!(
        "{HEAD}[call]
group_down_cause = 0
drain_status = 200
audit_interval = \"1s\"
rtp_timeout = \"20m\"
min_digits = 12
max_digits = 11
country_code = \"+44\"
[call.sip_to_q850]
\"200\" = 16
\"486\" = 200
[call.q850_to_sip]
\"17\" = 200
[[call.trunk]]
span = 4
"
    ));
    assert_err(&e, 13, "call.group_down_cause", "Q.850 cause 1-127");
    assert_err(&e, 14, "call.drain_status", "400-699");
    assert_err(&e, 15, "call.audit_interval", "expected 5s..=1h");
    assert_err(&e, 16, "call.rtp_timeout", "expected 1s..=10m");
    assert_err(&e, 17, "call.min_digits", "1..=max_digits");
    assert_err(&e, 19, "call.country_code", "no `+`");
    assert_err(&e, 21, "call.sip_to_q850.200", "status 300-699 as the key");
    assert_err(&e, 22, "call.sip_to_q850.486", "Q.850 cause 1-127");
    assert_err(&e, 24, "call.q850_to_sip.17", "status 300-699");
    assert_err(&e, 26, "call.trunk[0].span", "no [[span]] with id 4");
    assert_eq!(e.len(), 10, "{e:?}");
}

#[test]
fn check_config_names_the_file_and_line() {
    let (_d, p) = write(&format!("{HEAD}[call]\nrtp_timeout_cause = 200\n"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tdmgw"))
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("{}:13: key `call.rtp_timeout_cause`", p.display())),
        "{text}"
    );
}

/// `[[route]]` `min_digits` / `max_digits` override `[call]`'s for that
/// route only; Q.931's "number complete" test uses them too.
#[test]
fn per_route_digit_limits_override_the_site_ones() {
    let c = load(&format!(
        "{HEAD}min_digits = 3
max_digits = 3
[[route]]
called = \"0*\"
peer_group = \"mcvp\"
max_digits = 11
[[route]]
called = \"*\"
peer_group = \"mcvp\"
[call]
min_digits = 2
max_digits = 20
"
    ));
    assert_eq!(c.site.routes[0].max_digits, Some(3));
    let m = manager_config(&c.site, 1);
    let limits: Vec<_> = m
        .route_digits
        .iter()
        .map(|l| (l.min_digits, l.max_digits))
        .collect();
    assert_eq!(limits, [(3, 3), (2, 11), (2, 20)]);
    let complete = number_complete(&c.site, 1);
    // 999 at 3 digits despite the catch-all; 0... at 11; others wait.
    assert!(complete.test("999", None));
    assert!(!complete.test("0163296000", None));
    assert!(complete.test("01632960000", None));
    assert!(!complete.test("5", None));
}

#[test]
fn bad_per_route_digit_limits_are_reported_with_file_line_and_key() {
    let e = errs(&format!(
        "{HEAD}max_digits = 2
[[route]]
called = \"0207XXXXXXX\"
peer_group = \"mcvp\"
min_digits = 12
[[route]]
called = \"0*\"
peer_group = \"mcvp\"
min_digits = 6
max_digits = 5
[[route]]
called = \"1*\"
peer_group = \"mcvp\"
max_digits = 33
[[route]]
called = \"2*\"
peer_group = \"mcvp\"
min_digits = 0
[[route]]
called = \"01632*\"
peer_group = \"mcvp\"
max_digits = 4
[[route]]
called = \"3*\"
peer_group = \"mcvp\"
max_digits = 1
[call]
min_digits = 2
"
    ));
    assert_err(
        &e,
        12,
        "route[0].max_digits",
        "matches 3-digit numbers only",
    );
    assert_err(
        &e,
        16,
        "route[1].min_digits",
        "matches 11-digit numbers only",
    );
    assert_err(&e, 20, "route[2].min_digits", "expected 1..=max_digits (5)");
    assert_err(&e, 25, "route[3].max_digits", "expected 1-32 digits");
    assert_err(&e, 29, "route[4].min_digits", "expected 1..=max_digits");
    assert_err(&e, 33, "route[5].max_digits", "numbers of 5 digits or more");
    assert_err(&e, 37, "route[6].max_digits", "below [call] min_digits (2)");
    assert_eq!(e.len(), 7, "{e:?}");
    // A route's key the site does not know is a parse error, on its line.
    let e = errs(&format!("{HEAD}digits = 3\n"));
    assert_err(&e, 12, "route[0].digits", "unknown field");
}
