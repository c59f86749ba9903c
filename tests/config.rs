//! Config validation: every shipped file is accepted; every kind of mistake is
//! rejected with the file, the line and the key.

use std::path::{Path, PathBuf};
use std::process::Command;

use tdmgw::config::{Config, ConfigError};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A site config for `board` with one user-side span per board span.
fn site_for_board(board: &Path, span_ids: &[u8]) -> String {
    let mut s = format!("board = \"{}\"\n", board.display());
    for id in span_ids {
        s.push_str(&format!("[[span]]\nid = {id}\nrole = \"user\"\n"));
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load_errs(text: &str) -> Vec<ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "site.toml", text);
    match Config::load(&p) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts one error is on `line` about `key`, with `msg` in its text.
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

const SIM_SITE: &str = "board = \"builtin:sim\"\n[[span]]\nid = 1\nrole = \"user\"\n";

#[test]
fn shipped_examples_are_accepted() {
    for f in ["examples/demo.toml", "examples/production.toml"] {
        Config::load(&repo(f)).unwrap_or_else(|e| panic!("{f}:\n{e}"));
    }
    Config::demo().unwrap();
}

#[test]
fn shipped_board_profiles_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for (board, spans) in [
        ("board/sim.toml", &[1u8][..]),
        ("board/dahdi-4e1.toml", &[1, 2, 3, 4][..]),
        ("board/serial-1e1.toml", &[1][..]),
        ("board/satop-2e1.toml", &[1, 2][..]),
    ] {
        let p = write(
            dir.path(),
            "site.toml",
            &site_for_board(&repo(board), spans),
        );
        let c = Config::load(&p).unwrap_or_else(|e| panic!("{board}:\n{e}"));
        assert_eq!(c.board.spans.len(), spans.len());
    }
}

#[test]
fn unknown_key_in_site_config() {
    let errs = load_errs(&format!(
        "{SIM_SITE}[log]\nlevel = \"info\"\nlevle = \"debug\"\n"
    ));
    assert_err(&errs, 7, "log.levle", "unknown field `levle`");
}

#[test]
fn unknown_key_in_board_profile() {
    let dir = tempfile::tempdir().unwrap();
    let board = write(
        dir.path(),
        "b.toml",
        "name = \"x\"\n[[span]]\nid = 1\ndriver = \"pair\"\ncrc = true\n",
    );
    let site = write(dir.path(), "s.toml", &site_for_board(&board, &[1]));
    let errs = Config::load(&site).unwrap_err().0;
    assert_eq!(errs[0].file, board);
    assert_err(&errs, 5, "span[0].crc", "unknown field `crc`");
}

#[test]
fn wrong_type_names_the_key() {
    let errs = load_errs("board = \"builtin:sim\"\n[[span]]\nid = \"one\"\nrole = \"user\"\n");
    assert_err(&errs, 3, "span[0].id", "expected a whole number");
}

#[test]
fn timer_out_of_spec_range() {
    let errs = load_errs(&format!("{SIM_SITE}[span.timers]\nT309 = \"5s\"\n"));
    assert_err(&errs, 6, "span[0].timers.T309", "outside");
    let errs = load_errs(&format!("{SIM_SITE}[span.timers]\nT999 = \"5s\"\n"));
    assert_err(&errs, 6, "span[0].timers.T999", "unknown timer");
    let errs = load_errs(&format!("{SIM_SITE}[span.timers]\nT303 = \"4\"\n"));
    assert_err(&errs, 6, "span[0].timers.T303", "no unit");
}

#[test]
fn management_off_loopback_must_be_explicit() {
    let errs = load_errs(&format!(
        "{SIM_SITE}[management]\nlisten = \"0.0.0.0:9100\"\n"
    ));
    assert_err(&errs, 6, "management.listen", "allow_non_loopback");
    let dir = tempfile::tempdir().unwrap();
    let ok =
        format!("{SIM_SITE}[management]\nlisten = \"0.0.0.0:9100\"\nallow_non_loopback = true\n");
    Config::load(&write(dir.path(), "s.toml", &ok)).unwrap();
}

#[test]
fn routes_are_checked() {
    let errs = load_errs(&format!(
        "{SIM_SITE}[[route]]\ncalled = \"9*9\"\npeer_group = \"nowhere\"\n"
    ));
    assert_err(&errs, 6, "route[0].called", "digits");
    assert_err(
        &errs,
        7,
        "route[0].peer_group",
        "no [[peer_group]] named `nowhere`",
    );
}

#[test]
fn peers_and_ports_are_checked() {
    let errs = load_errs(&format!(
        "{SIM_SITE}[media]\nrtp_port_base = 65500\n[[peer_group]]\nname = \"core\"\n[[peer_group.peer]]\naddress = \"192.0.2.1:0\"\nweight = 0\n"
    ));
    assert_err(&errs, 6, "media.rtp_port_base", "within 1024-65535");
    assert_err(&errs, 10, "peer_group[0].peer[0].address", "needs a port");
    assert_err(
        &errs,
        11,
        "peer_group[0].peer[0].weight",
        "expected 1-65535",
    );
}

#[test]
fn spans_must_match_the_board() {
    let errs = load_errs(&format!("{SIM_SITE}[[span]]\nid = 2\nrole = \"network\"\n"));
    assert_err(&errs, 6, "span[1].id", "has no span 2");
    let errs = load_errs("board = \"builtin:sim\"\n");
    assert_err(&errs, 1, "span", "board span 1 has no [[span]]");
}

#[test]
fn driver_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let board = write(
        dir.path(),
        "b.toml",
        "name = \"x\"\n[[span]]\nid = 1\ndriver = \"satop\"\nlocal = \"127.0.0.1:1000\"\ndevice = \"/dev/ttyS0\"\npayload_octets = 100\nchannels = 31\n",
    );
    let site = write(dir.path(), "s.toml", &site_for_board(&board, &[1]));
    let errs = Config::load(&site).unwrap_err().0;
    assert_err(&errs, 2, "span[0].remote", "needs `remote`");
    assert_err(&errs, 6, "span[0].device", "not used by driver `satop`");
    assert_err(&errs, 7, "span[0].payload_octets", "multiple of 32");
    assert_err(&errs, 8, "span[0].channels", "1-30");
}

#[test]
fn timing_is_a_satop_and_serial_key() {
    let dir = tempfile::tempdir().unwrap();
    let board = write(
        dir.path(),
        "b.toml",
        "name = \"x\"\n[[span]]\nid = 1\ndriver = \"pair\"\ntiming = \"internal\"\n",
    );
    let site = write(dir.path(), "s.toml", &site_for_board(&board, &[1]));
    let errs = Config::load(&site).unwrap_err().0;
    assert_err(&errs, 5, "span[0].timing", "not used by driver `pair`");
    let board = write(
        dir.path(),
        "b.toml",
        "name = \"x\"\n[[span]]\nid = 1\ndriver = \"satop\"\nlocal = \"127.0.0.1:1000\"\nremote = \"127.0.0.1:1001\"\ntiming = \"internal\"\n",
    );
    let site = write(dir.path(), "s.toml", &site_for_board(&board, &[1]));
    Config::load(&site).expect("satop takes timing");
}

#[test]
fn rtp_ports_of_every_span_must_fit() {
    // Span 4's TS31 RTCP port is base + 64*3 + 62 + 1 = base + 255.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("name = \"x\"\n");
    for id in 1..=4 {
        text += &format!(
            "[[span]]\nid = {id}\ndriver = \"satop\"\nlocal = \"127.0.0.1:{}\"\nremote = \"127.0.0.1:{}\"\n",
            2000 + 2 * id,
            2001 + 2 * id
        );
    }
    let board = write(dir.path(), "b.toml", &text);
    let site_text = site_for_board(&board, &[1, 2, 3, 4]);
    let fits = write(
        dir.path(),
        "s.toml",
        &format!("{site_text}[media]\nrtp_port_base = {}\n", 65_535 - 255),
    );
    Config::load(&fits).expect("65280..65535 fits");
    let past = write(
        dir.path(),
        "s.toml",
        &format!("{site_text}[media]\nrtp_port_base = {}\n", 65_535 - 254),
    );
    let errs = Config::load(&past).unwrap_err().0;
    assert!(
        errs.iter().any(|e| e.key == "media.rtp_port_base"),
        "{errs:?}"
    );
}

#[test]
fn fault_injection_needs_the_explicit_switch() {
    let errs = load_errs(&format!(
        "{SIM_SITE}[debug]\nstall_loop = \"control\"\nstall_after = \"1s\"\n"
    ));
    assert_err(&errs, 6, "debug.stall_loop", "allow_fault_injection");
}

#[test]
fn syntax_error_has_its_line() {
    let errs = load_errs("board = \"builtin:sim\"\n[[span]]\nid = = 1\n");
    assert_eq!(errs[0].line, 3, "{}", errs[0]);
    assert!(errs[0].message.contains("syntax"), "{}", errs[0]);
}

#[test]
fn missing_board_file_points_at_the_key() {
    let errs = load_errs("board = \"no/such/board.toml\"\n");
    assert_err(&errs, 1, "board", "does not exist");
}

#[test]
fn check_config_cli_accepts_and_rejects() {
    let bin = env!("CARGO_BIN_EXE_tdmgw");
    for f in ["examples/demo.toml", "examples/production.toml"] {
        let out = Command::new(bin)
            .args(["check-config", "--config"])
            .arg(repo(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("OK") && text.contains("span 1"), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        &format!("{SIM_SITE}colour = \"blue\"\n"),
    );
    let out = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5: key `span[0].colour`", bad.display())),
        "stderr: {err}"
    );
    let out = Command::new(bin)
        .args(["check-config", "--config", "/nonexistent/tdmgw.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tdmgw demo") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn sip_task_options_are_range_checked_with_file_and_line() {
    // SIM_SITE is 4 lines; `[sip]` is line 5, the key line 6.
    let cases = [
        (
            "invite_timeout = \"100ms\"",
            "sip.invite_timeout",
            "200ms..=32s",
        ),
        (
            "keepalive_interval = \"1s\"",
            "sip.keepalive_interval",
            "0s for no",
        ),
        (
            "keepalive_timeout = \"2m\"",
            "sip.keepalive_timeout",
            "1s..=60s",
        ),
        (
            "rate_limit_per_second = 0",
            "sip.rate_limit_per_second",
            "1-100000",
        ),
        ("min_se = \"30s\"", "sip.min_se", "RFC 4028"),
        (
            "session_expires = \"60s\"",
            "sip.session_expires",
            "at least min_se",
        ),
        (
            "listen = [{ transport = \"udp\", address = \"0.0.0.0:5060\" }]",
            "sip.listen[0].address",
            "concrete address",
        ),
    ];
    for (line, key, msg) in cases {
        let errs = load_errs(&format!("{SIM_SITE}[sip]\n{line}\n"));
        assert_err(&errs, 6, key, msg);
    }
    let errs = load_errs(&format!(
        "{SIM_SITE}[sip]\nrate_limit_per_second = 100\nrate_limit_burst = 10\n"
    ));
    assert_err(
        &errs,
        7,
        "sip.rate_limit_burst",
        "at least rate_limit_per_second",
    );
}

#[test]
fn production_example_maps_onto_the_sip_task() {
    let cfg = Config::load(&repo("examples/production.toml")).unwrap();
    let site = &cfg.site;
    let groups = site.sip_peer_groups();
    assert_eq!(groups.len(), site.peer_groups.len());
    let ua = site.sip_ua_config(1);
    assert!(!ua.sent_by.is_empty());
    assert!(ua.sent_by_tls.is_some());
    assert_eq!(ua.timers.t1_ms, 500);
}
