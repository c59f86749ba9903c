//! `tdmgw demo`, the real binary: the gateway on the built-in simulated
//! board between the simulated exchange (pair line) and the simulated core
//! (loopback UDP) runs a short call mix and exits 0 only when every check
//! held (calls ended as expected, audio echo checks, no call, channel or
//! SIP call left).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tdmgw");

#[test]
fn demo_runs_the_call_mix_and_every_check_holds() {
    let out = Command::new(BIN)
        .args(["demo", "--seconds", "8"])
        .output()
        .expect("run tdmgw demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(stdout.contains("demo PASSED"), "{stdout}");
    // Calls really crossed both ways and the audio came back.
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(
        stdout.contains("gateway at the end: calls 0, busy B-channels 0, SIP calls 0"),
        "{stdout}"
    );
    let audio = stdout
        .lines()
        .find(|l| l.starts_with("audio checks: "))
        .unwrap_or_default();
    let passed: u64 = audio
        .trim_start_matches("audio checks: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 0, "no audio check passed: {audio}\n{stdout}");
}
