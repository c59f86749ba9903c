//! Interop with a real SIP user agent: Debian's baresip, run headless
//! (`baresip -f DIR` with a generated config: loopback only, G.711, a sine
//! source, auto answer). A tdmgw SIP task answers baresip's calls and
//! places calls to it, over UDP and TCP; each call is set up with agreed
//! media addresses (baresip's RTP arrives at the address of our SDP, from
//! the address of its own) and torn down cleanly with BYE. Skipped (with a message)
//! only when the baresip binary is absent.

mod sip_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sip_common::*;
use tdmgw::sip::sdp;
use tdmgw::sip::task::SipEvent;
use tdmgw::sip::transport::Transport;
use tdmgw::sip::ua::EndedBy;

const BARESIP: &str = "/usr/bin/baresip";
const MODULES: &str = "/usr/lib/baresip/modules";

fn baresip_present() -> bool {
    if Path::new(BARESIP).exists() && Path::new(MODULES).join("g711.so").exists() {
        return true;
    }
    eprintln!("SKIPPED: {BARESIP} (Debian package baresip) is not installed");
    false
}

/// Two seconds of a 440 Hz tone, 8 kHz 16-bit mono PCM WAV: the audio
/// source (baresip's `ausine` only runs at 48 kHz; no sound card here).
fn tone_wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..16_000)
        .map(|n| {
            let t = f64::from(n) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16_000u32.to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// A running baresip, killed when dropped.
struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    rtp_base: u16,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Baresip {
    /// baresip on 127.0.0.1:`port` (UDP and TCP), auto-answering, running
    /// `commands` at start (`-e`), quitting by itself after 30 s.
    fn start(commands: &[String]) -> Baresip {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let rtp_base = free_port() & !1;
        let wav = dir.path().join("tone.wav");
        std::fs::write(&wav, tone_wav()).unwrap();
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{port}\n\
             net_interface\t127.0.0.1\n\
             module_path\t{MODULES}\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module\tmenu.so\n\
             module\taccount.so\n\
             audio_source\taufile,{wav}\n\
             audio_player\taufile,/dev/null\n\
             audio_alert\taufile,/dev/null\n\
             rtp_ports\t{rtp_base}-{}\n\
             rtp_timeout\t0\n",
            rtp_base + 20,
            wav = wav.display(),
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(
            dir.path().join("accounts"),
            "<sip:bs@127.0.0.1>;regint=0;answermode=auto\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut cmd = Command::new(BARESIP);
        cmd.arg("-f").arg(dir.path()).args(["-t", "30"]);
        for c in commands {
            cmd.arg("-e").arg(c);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start baresip");
        Baresip {
            child,
            dir,
            port,
            rtp_base,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(LOOPBACK, self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Waits for baresip's "ready" line.
    async fn ready(&self) {
        for _ in 0..100 {
            if self.log().contains("baresip is ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("baresip not ready:\n{}", self.log());
    }
}

/// Our RTP socket: the port we put in our SDP, so that baresip's audio
/// reaches us and no one else.
async fn rtp_socket() -> (tokio::net::UdpSocket, u16) {
    let s = tokio::net::UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// The first RTP packet baresip sends us: version 2, G.711 (PCMU 0 or
/// PCMA 8), from the address and port of its SDP (symmetric RTP).
async fn expect_rtp(sock: &tokio::net::UdpSocket, from: (std::net::IpAddr, u16), bs: &Baresip) {
    let mut buf = [0u8; 2048];
    let (n, src) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no RTP from baresip\n{}", bs.log()))
        .unwrap();
    assert_eq!((src.ip(), src.port()), from, "RTP from the SDP's address");
    assert!(n >= 12, "an RTP header");
    assert_eq!(buf[0] >> 6, 2, "RTP version 2");
    assert!(matches!(buf[1] & 0x7f, 0 | 8), "G.711 payload type");
}

/// Our SIP task on one port for UDP and TCP, with baresip as peer group
/// "bs" over `transport`.
async fn tdmgw_for(bs: &Baresip, transport: Transport) -> Node {
    let port = free_port();
    let me = SocketAddr::new(LOOPBACK, port);
    node(
        7,
        &[(Transport::Udp, me), (Transport::Tcp, me)],
        vec![group(
            "bs",
            Duration::from_secs(60),
            vec![peer(bs.addr(), transport, 1, None)],
        )],
        None,
    )
    .await
}

async fn baresip_calls_us(transport: Transport) {
    if !baresip_present() {
        return;
    }
    // Our port must be known to baresip's dial command: bind first.
    let port = free_port();
    let me = SocketAddr::new(LOOPBACK, port);
    let tp = match transport {
        Transport::Tcp => ";transport=tcp",
        _ => "",
    };
    let bs = Baresip::start(&[format!("/dial sip:999@127.0.0.1:{port}{tp}")]);
    let mut gw = node(
        8,
        &[(Transport::Udp, me), (Transport::Tcp, me)],
        vec![group(
            "bs",
            Duration::from_secs(60),
            vec![peer(bs.addr(), transport, 1, None)],
        )],
        None,
    )
    .await;
    let ev = gw
        .wait("IncomingCall from baresip", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await;
    let SipEvent::IncomingCall {
        call,
        sdp: offered,
        request,
        ..
    } = ev
    else {
        unreachable!()
    };
    let offered = offered.unwrap_or_else(|| panic!("baresip's INVITE has no SDP: {request:?}"));
    let (ip, bs_rtp) = offered.audio_address().expect("an audio stream");
    assert_eq!(ip, LOOPBACK, "baresip offers its loopback media address");
    assert!(
        (bs.rtp_base..=bs.rtp_base + 20).contains(&bs_rtp),
        "{bs_rtp}"
    );
    gw.handle.send_provisional(call, 180, None).await.unwrap();
    let (rtp, rtp_port) = rtp_socket().await;
    let answer = sdp::answer(&offered, &media(rtp_port));
    assert_eq!(answer.audio_address(), Some((LOOPBACK, rtp_port)));
    gw.handle.accept(call, Some(answer)).await.unwrap();
    // baresip ACKs and sends its audio where our answer says.
    expect_rtp(&rtp, (ip, bs_rtp), &bs).await;
    gw.handle
        .hangup(call, Some("Q.850;cause=16"))
        .await
        .unwrap_or_else(|e| panic!("hangup: {e}\nbaresip log:\n{}", bs.log()));
    let ev = gw
        .wait("Ended", |e| matches!(e, SipEvent::Ended { .. }))
        .await;
    assert!(
        matches!(
            ev,
            SipEvent::Ended {
                by: EndedBy::Local,
                ..
            }
        ),
        "{ev:?}\nbaresip log:\n{}",
        bs.log()
    );
    gw.wait_idle().await;
    let log = bs.log();
    assert!(
        log.contains("established") || log.contains("Call established"),
        "{log}"
    );
    gw.stop().await;
}

async fn we_call_baresip(transport: Transport) {
    if !baresip_present() {
        return;
    }
    let bs = Baresip::start(&[]);
    bs.ready().await;
    let mut gw = tdmgw_for(&bs, transport).await;
    let (rtp_sock, rtp_port) = rtp_socket().await;
    let id = gw
        .handle
        .place_call(call_to("bs", "bs", rtp_port))
        .await
        .unwrap();
    let ev = gw
        .wait("Answered or Failed", |e| {
            matches!(e, SipEvent::Answered { .. } | SipEvent::Failed { .. })
        })
        .await;
    let SipEvent::Answered { call, sdp, .. } = ev else {
        panic!("{ev:?}\nbaresip log:\n{}", bs.log());
    };
    assert_eq!(call, id);
    let (ip, rtp) = sdp
        .and_then(|s| s.audio_address())
        .expect("baresip answers with an audio stream");
    assert_eq!(ip, LOOPBACK);
    assert!((bs.rtp_base..=bs.rtp_base + 20).contains(&rtp), "{rtp}");
    expect_rtp(&rtp_sock, (ip, rtp), &bs).await;
    gw.handle.hangup(id, Some("Q.850;cause=16")).await.unwrap();
    let ev = gw
        .wait("Ended", |e| matches!(e, SipEvent::Ended { .. }))
        .await;
    assert!(
        matches!(
            ev,
            SipEvent::Ended {
                by: EndedBy::Local,
                ..
            }
        ),
        "{ev:?}"
    );
    gw.wait_idle().await;
    gw.stop().await;
}

#[tokio::test]
async fn baresip_calls_us_over_udp() {
    baresip_calls_us(Transport::Udp).await;
}

#[tokio::test]
async fn baresip_calls_us_over_tcp() {
    baresip_calls_us(Transport::Tcp).await;
}

#[tokio::test]
async fn we_call_baresip_over_udp() {
    we_call_baresip(Transport::Udp).await;
}

#[tokio::test]
async fn we_call_baresip_over_tcp() {
    we_call_baresip(Transport::Tcp).await;
}
