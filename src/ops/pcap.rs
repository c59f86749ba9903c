//! pcapng writing for `tdmgw trace`: D-channel frames as LINUX_LAPD (link type
//! 177, with its 16-octet pseudo header) and SIP/RTP as raw IP (link type 101)
//! packets rebuilt from the addresses and payloads the SIP and media layers saw.
//!
//! Format: pcapng (draft-ietf-opsawg-pcapng): one Section Header Block, one
//! Interface Description Block per link type, Enhanced Packet Blocks with
//! microsecond timestamps (the default `if_tsresol`).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// LINKTYPE_LINUX_LAPD.
pub const LINKTYPE_LINUX_LAPD: u16 = 177;
/// LINKTYPE_RAW: IPv4 or IPv6 packets without a link header.
pub const LINKTYPE_RAW: u16 = 101;

const ARPHRD_LAPD: u16 = 8445;
const ETH_P_LAPD: u16 = 0x0030;
/// sll_pkttype values (linux/if_packet.h).
const PACKET_HOST: u16 = 0;
const PACKET_OUTGOING: u16 = 4;

/// Interface ids in the order [`PcapngWriter::new`] declares them.
pub const IF_LAPD: u32 = 0;
pub const IF_IP: u32 = 1;

/// Writes a pcapng stream with the two interfaces tdmgw traces.
pub struct PcapngWriter<W: Write> {
    out: W,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<W: Write> PcapngWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        // Section Header Block.
        let mut shb = Vec::with_capacity(28);
        shb.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        out.write_all(&shb)?;
        for link in [LINKTYPE_LINUX_LAPD, LINKTYPE_RAW] {
            let mut idb = Vec::with_capacity(20);
            idb.extend_from_slice(&1u32.to_le_bytes());
            idb.extend_from_slice(&20u32.to_le_bytes());
            idb.extend_from_slice(&link.to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&65_535u32.to_le_bytes());
            idb.extend_from_slice(&20u32.to_le_bytes());
            out.write_all(&idb)?;
        }
        Ok(PcapngWriter { out })
    }

    /// One Enhanced Packet Block.
    pub fn packet(&mut self, interface: u32, at: SystemTime, data: &[u8]) -> io::Result<()> {
        self.packet_cut(interface, at, data, data.len())
    }

    /// One Enhanced Packet Block of a packet `orig_len` long on the wire of
    /// which `data` was captured (`orig_len >= data.len()`).
    pub fn packet_cut(
        &mut self,
        interface: u32,
        at: SystemTime,
        data: &[u8],
        orig_len: usize,
    ) -> io::Result<()> {
        let us = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64;
        let total = 32 + data.len() + pad4(data.len());
        let mut b = Vec::with_capacity(total);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&(total as u32).to_le_bytes());
        b.extend_from_slice(&interface.to_le_bytes());
        b.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(us as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(orig_len.max(data.len()) as u32).to_le_bytes());
        b.extend_from_slice(data);
        b.resize(b.len() + pad4(data.len()), 0);
        b.extend_from_slice(&(total as u32).to_le_bytes());
        self.out.write_all(&b)
    }

    /// A D-channel frame (address field onwards, no FCS). `sent` is true for
    /// frames we transmitted; `we_are_network` sets the pseudo header's
    /// address octet so Wireshark reads the C/R bit from the right side.
    pub fn lapd(
        &mut self,
        at: SystemTime,
        sent: bool,
        we_are_network: bool,
        frame: &[u8],
    ) -> io::Result<()> {
        let mut d = Vec::with_capacity(16 + frame.len());
        d.extend_from_slice(&lapd_pseudo_header(sent, we_are_network));
        d.extend_from_slice(frame);
        self.packet(IF_LAPD, at, &d)
    }

    /// A UDP datagram (SIP or RTP) as a raw IP packet.
    pub fn udp(
        &mut self,
        at: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        let p = ip_udp_packet(src, dst, payload);
        self.packet(IF_IP, at, &p)
    }

    /// A UDP datagram whose payload was `orig_len` long on the wire and
    /// was cut to `payload` (the media tap's snap length): the IP and UDP
    /// lengths are the wire's, the UDP checksum is left out (0) because
    /// it cannot be computed, and the block records both lengths.
    pub fn udp_cut(
        &mut self,
        at: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        orig_len: usize,
    ) -> io::Result<()> {
        if orig_len <= payload.len() {
            return self.udp(at, src, dst, payload);
        }
        let mut p = ip_udp_packet(src, dst, payload);
        let ip_len = if p[0] >> 4 == 4 { 20 } else { 40 };
        let udp_len = (8 + orig_len).min(usize::from(u16::MAX)) as u16;
        p[ip_len + 4..ip_len + 6].copy_from_slice(&udp_len.to_be_bytes());
        p[ip_len + 6..ip_len + 8].copy_from_slice(&[0, 0]);
        if ip_len == 20 {
            let total = (20 + usize::from(udp_len)).min(usize::from(u16::MAX)) as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let c = checksum_fold(checksum_add(0, &p[..20]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            p[4..6].copy_from_slice(&udp_len.to_be_bytes());
        }
        let wire = p.len() + (orig_len - payload.len());
        self.packet_cut(IF_IP, at, &p, wire)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// The 16-octet LINUX_LAPD pseudo header (an sll header with ARPHRD_LAPD).
pub fn lapd_pseudo_header(sent: bool, we_are_network: bool) -> [u8; 16] {
    let mut h = [0u8; 16];
    let pkttype = if sent { PACKET_OUTGOING } else { PACKET_HOST };
    h[0..2].copy_from_slice(&pkttype.to_be_bytes());
    h[2..4].copy_from_slice(&ARPHRD_LAPD.to_be_bytes());
    h[4..6].copy_from_slice(&1u16.to_be_bytes());
    h[6] = u8::from(we_are_network);
    h[14..16].copy_from_slice(&ETH_P_LAPD.to_be_bytes());
    h
}

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 or IPv6 packet carrying one UDP datagram, checksums filled in.
/// Mixed address families are traced as IPv6 with the IPv4 address mapped.
pub fn ip_udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = checksum_add(0, &s.octets());
            pseudo = checksum_add(pseudo, &d.octets());
            pseudo += 17 + udp_len as u32;
            let c = checksum_fold(checksum_add(pseudo, &udp));
            udp[6..8].copy_from_slice(&(if c == 0 { 0xFFFF } else { c }).to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum_fold(checksum_add(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(&udp);
            ip
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            let (s, d) = (v6(s), v6(d));
            let mut pseudo = checksum_add(0, &s.octets());
            pseudo = checksum_add(pseudo, &d.octets());
            pseudo += udp_len as u32 + 17;
            let c = checksum_fold(checksum_add(pseudo, &udp));
            udp[6..8].copy_from_slice(&(if c == 0 { 0xFFFF } else { c }).to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            ip.extend_from_slice(&udp);
            ip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A SETUP as the user side sends it (Q.931 over an I-frame).
    const SETUP_IFRAME: &[u8] = &[
        0x00, 0x01, 0x00, 0x00, // SAPI 0 C/R 0 (user command), TEI 0, I N(S)=0 N(R)=0
        0x08, 0x02, 0x00, 0x05, 0x05, // PD, CR len 2, CR 5, SETUP
        0x04, 0x03, 0x80, 0x90, 0xA3, // bearer: speech, 64k, A-law
        0x18, 0x03, 0xA9, 0x83, 0x85, // channel id: PRI, exclusive, TS5
        0x70, 0x04, 0x81, 0x39, 0x39, 0x39, // called party: unknown/ISDN, 999
    ];

    #[test]
    fn tshark_decodes_lapd_and_sip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcapng");
        let mut w = PcapngWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        let now = SystemTime::now();
        w.lapd(now, true, false, SETUP_IFRAME).unwrap();
        w.lapd(now, false, false, &[0x02, 0x01, 0x01, 0x02])
            .unwrap(); // RR N(R)=1 from the network
        let sip = b"OPTIONS sip:core@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nMax-Forwards: 70\r\nFrom: <sip:gw@127.0.0.1>;tag=1\r\nTo: <sip:core@127.0.0.1>\r\nCall-ID: a@b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        w.udp(
            now,
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            sip,
        )
        .unwrap();
        w.udp(
            now,
            "[::1]:5070".parse().unwrap(),
            "[::1]:5060".parse().unwrap(),
            sip,
        )
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let out = match Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-V"])
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!("SKIPPED: tshark not installed; .ci/run installs it");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Q.931"), "{text}");
        assert!(text.contains("Message type: SETUP"), "{text}");
        assert!(text.contains("Session Initiation Protocol"), "{text}");
        assert!(!text.contains("Malformed"), "{text}");
        assert!(
            !text.contains("Bad checksum") && !text.contains("[incorrect"),
            "{text}"
        );
    }

    fn tshark_fields(path: &std::path::Path, fields: &[&str]) -> Option<Vec<String>> {
        let mut c = Command::new("tshark");
        c.arg("-r")
            .arg(path)
            .args(["-T", "fields", "-E", "separator=|"]);
        for f in fields {
            c.args(["-e", f]);
        }
        let out = c.output().ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect(),
        )
    }

    /// The pseudo header's role and direction make Wireshark read C/R as
    /// Q.921 §3.3.2 says, for either role: our SETUP is a command both when
    /// we are the user (C/R 0) and when we are the network (C/R 1), and the
    /// peer's RR answering it is a response.
    #[test]
    fn lapd_direction_and_cr_read_right_in_both_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roles.pcapng");
        let mut w = PcapngWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        let now = SystemTime::now();
        // We are the user: SETUP out (C/R 0), RR F=1 in from the network
        // (a response: C/R 0).
        w.lapd(now, true, false, SETUP_IFRAME).unwrap();
        w.lapd(now, false, false, &[0x00, 0x01, 0x01, 0x03])
            .unwrap();
        // We are the network: SETUP out (C/R 1), RR F=1 in from the user
        // (a response: C/R 1).
        let mut setup_net = SETUP_IFRAME.to_vec();
        setup_net[0] = 0x02;
        w.lapd(now, true, true, &setup_net).unwrap();
        w.lapd(now, false, true, &[0x02, 0x01, 0x01, 0x03]).unwrap();
        drop(w);
        let Some(rows) = tshark_fields(&path, &["lapd.direction", "_ws.col.Info"]) else {
            eprintln!("SKIPPED: tshark not installed; .ci/run installs it");
            return;
        };
        assert_eq!(rows.len(), 4, "{rows:?}");
        // lapd.direction: 0 user->network, 1 network->user.
        let dirs: Vec<&str> = rows.iter().map(|r| r.split('|').next().unwrap()).collect();
        assert_eq!(dirs, ["0", "1", "1", "0"], "{rows:?}");
        for i in [0, 2] {
            assert!(rows[i].contains("SETUP"), "{rows:?}");
        }
        for i in [1, 3] {
            assert!(rows[i].contains("RR"), "{rows:?}");
        }
        // The RRs carry P/F = 1: Wireshark names it F (final) only when it
        // took the frame for a response, P (poll) for a command.
        let pf = tshark_fields(&path, &["lapd.control.p", "lapd.control.f"]).unwrap();
        for i in [1, 3] {
            assert!(pf[i].starts_with('|') && pf[i].len() > 1, "{pf:?}");
        }
    }

    /// A datagram cut to the snap length keeps the wire's lengths.
    #[test]
    fn cut_datagrams_record_their_wire_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.pcapng");
        let mut w = PcapngWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        let src = "127.0.0.1:30002".parse().unwrap();
        let dst = "127.0.0.1:40000".parse().unwrap();
        w.udp_cut(SystemTime::now(), src, dst, &[0x80; 100], 300)
            .unwrap();
        w.udp_cut(SystemTime::now(), src, dst, &[0x80; 100], 100)
            .unwrap();
        drop(w);
        let Some(rows) = tshark_fields(&path, &["frame.len", "frame.cap_len", "udp.length"]) else {
            eprintln!("SKIPPED: tshark not installed; .ci/run installs it");
            return;
        };
        assert_eq!(rows, ["328|128|308", "128|128|108"]);
    }

    #[test]
    fn ipv4_checksum_is_valid() {
        let p = ip_udp_packet(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            b"abc",
        );
        assert_eq!(checksum_fold(checksum_add(0, &p[..20])), 0);
    }
}
