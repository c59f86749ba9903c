//! SDP (RFC 4566) for one audio stream, and the RFC 3264 answerer.
//!
//! [`Sdp::parse`] reads a session description (text lines `x=...`, CRLF or
//! LF); unknown attributes and extra media sections are kept so that an
//! answer can reject them with port 0 (RFC 3264 §6). [`answer`] builds our
//! answer to an offer from [`LocalMedia`]; [`offer`] builds our offer.
//! [`Origin::version`] must increase by one for each changed description
//! we send in a session (RFC 3264 §8): use [`Origin::next_version`].

use std::net::IpAddr;

/// RFC 4566 §5 errors: which line was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError(pub &'static str);

/// Media direction attributes (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }

    /// The answer's direction for an offered one, given what we can do
    /// (RFC 3264 §6.1: sendonly answered recvonly, recvonly answered sendonly).
    pub fn answer(offered: Direction, ours: Direction) -> Direction {
        use Direction::*;
        match (offered, ours) {
            (Inactive, _) | (_, Inactive) => Inactive,
            (SendOnly, SendOnly) | (RecvOnly, RecvOnly) => Inactive,
            (SendOnly, _) => RecvOnly,
            (RecvOnly, _) => SendOnly,
            (SendRecv, d) => d,
        }
    }
}

/// `o=` (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub version: u64,
    pub address: IpAddr,
}

impl Origin {
    /// The origin of our next changed description in the same session (RFC 3264 §8).
    pub fn next_version(&self) -> Origin {
        Origin {
            version: self.version.wrapping_add(1),
            ..self.clone()
        }
    }
}

/// One RTP payload format of a media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub payload_type: u8,
    /// Encoding name from `a=rtpmap`, or the static name (RFC 3551 table 4).
    pub encoding: String,
    pub clock_rate: u32,
    pub fmtp: Option<String>,
}

/// An `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    /// 0 = rejected or disabled stream (RFC 3264 §5.1, §6).
    pub port: u16,
    pub proto: String,
    pub formats: Vec<Format>,
    /// Non-RTP format tokens (e.g. for `m=application`), kept as received.
    pub other_formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub ptime_ms: Option<u32>,
    pub direction: Option<Direction>,
    /// Attributes we do not interpret, `name[:value]`.
    pub attributes: Vec<String>,
}

impl Media {
    /// Effective direction (RFC 3264 §5.1: default sendrecv).
    pub fn direction_or_default(&self, session: Option<Direction>) -> Direction {
        self.direction.or(session).unwrap_or(Direction::SendRecv)
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub media: Vec<Media>,
}

fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    // RFC 3551 §6 table 4 (the audio ones we may meet).
    match pt {
        0 => Some(("PCMU", 8000)),
        3 => Some(("GSM", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        18 => Some(("G729", 8000)),
        _ => None,
    }
}

/// `c=IN IP4 a` / `c=IN IP6 a` (RFC 4566 §5.7; TTL/count suffixes ignored).
fn parse_connection(v: &str) -> Result<IpAddr, SdpError> {
    let mut p = v.split(' ');
    let (net, kind, addr) = (p.next(), p.next(), p.next());
    let addr = addr.ok_or(SdpError("bad c= line"))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| SdpError("bad c= address"))?;
    match (net, kind, ip) {
        (Some("IN"), Some("IP4"), IpAddr::V4(_)) | (Some("IN"), Some("IP6"), IpAddr::V6(_)) => {
            Ok(ip)
        }
        _ => Err(SdpError("bad c= line")),
    }
}

fn write_connection(out: &mut String, ip: &IpAddr) {
    let kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
    out.push_str(&format!("IN {kind} {ip}"));
}

impl Sdp {
    pub fn parse(text: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(text).map_err(|_| SdpError("SDP not UTF-8"))?;
        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<Media> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .filter(|(k, _)| k.len() == 1)
                .ok_or(SdpError("line is not x=value"))?;
            if i == 0 && (key, value) != ("v", "0") {
                return Err(SdpError("first line must be v=0"));
            }
            match (key, media.last_mut()) {
                ("o", None) => origin = Some(parse_origin(value)?),
                ("s", None) => session_name = value.to_owned(),
                ("c", None) => connection = Some(parse_connection(value)?),
                ("c", Some(m)) => m.connection = Some(parse_connection(value)?),
                ("m", _) => media.push(parse_media(value)?),
                ("a", None) => {
                    if let Some(d) = Direction::parse(value) {
                        direction = Some(d);
                    }
                }
                ("a", Some(m)) => parse_media_attribute(m, value)?,
                _ => {}
            }
        }
        let origin = origin.ok_or(SdpError("missing o= line"))?;
        for m in &media {
            if m.port != 0 && m.connection.or(connection).is_none() {
                return Err(SdpError("media without c= line"));
            }
        }
        Ok(Sdp {
            origin,
            session_name,
            connection,
            direction,
            media,
        })
    }

    /// The description as text with CRLF line ends (RFC 4566 §5).
    pub fn to_text(&self) -> String {
        let o = &self.origin;
        let mut s = format!(
            "v=0\r\no={} {} {} {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.version,
            if o.address.is_ipv4() {
                "IN IP4"
            } else {
                "IN IP6"
            },
            o.address,
            if self.session_name.is_empty() {
                "-"
            } else {
                &self.session_name
            }
        );
        if let Some(c) = &self.connection {
            s.push_str("c=");
            write_connection(&mut s, c);
            s.push_str("\r\n");
        }
        s.push_str("t=0 0\r\n");
        if let Some(d) = self.direction {
            s.push_str(&format!("a={}\r\n", d.name()));
        }
        for m in &self.media {
            let mut fmts: Vec<String> = m
                .formats
                .iter()
                .map(|f| f.payload_type.to_string())
                .collect();
            fmts.extend(m.other_formats.iter().cloned());
            s.push_str(&format!(
                "m={} {} {} {}\r\n",
                m.kind,
                m.port,
                m.proto,
                fmts.join(" ")
            ));
            if let Some(c) = &m.connection {
                s.push_str("c=");
                write_connection(&mut s, c);
                s.push_str("\r\n");
            }
            for f in m
                .formats
                .iter()
                .filter(|f| !f.encoding.is_empty() && f.clock_rate != 0)
            {
                s.push_str(&format!(
                    "a=rtpmap:{} {}/{}\r\n",
                    f.payload_type, f.encoding, f.clock_rate
                ));
            }
            for f in &m.formats {
                if let Some(p) = &f.fmtp {
                    s.push_str(&format!("a=fmtp:{} {p}\r\n", f.payload_type));
                }
            }
            if let Some(p) = m.ptime_ms {
                s.push_str(&format!("a=ptime:{p}\r\n"));
            }
            if let Some(d) = m.direction {
                s.push_str(&format!("a={}\r\n", d.name()));
            }
            for a in &m.attributes {
                s.push_str(&format!("a={a}\r\n"));
            }
        }
        s
    }
}

fn parse_origin(v: &str) -> Result<Origin, SdpError> {
    let p: Vec<&str> = v.split(' ').collect();
    let [user, id, version, net, kind, addr] = p[..] else {
        return Err(SdpError("bad o= line"));
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| SdpError("bad o= number"));
    Ok(Origin {
        username: user.to_owned(),
        session_id: num(id)?,
        version: num(version)?,
        address: parse_connection(&format!("{net} {kind} {addr}"))?,
    })
}

fn parse_media(v: &str) -> Result<Media, SdpError> {
    let mut p = v.split(' ').filter(|s| !s.is_empty());
    let kind = p.next().ok_or(SdpError("bad m= line"))?.to_owned();
    let port = p.next().ok_or(SdpError("bad m= line"))?;
    let port = port.split('/').next().unwrap_or(port);
    let port: u16 = port.parse().map_err(|_| SdpError("bad m= port"))?;
    let proto = p.next().ok_or(SdpError("bad m= line"))?.to_owned();
    let rtp = proto.starts_with("RTP/");
    let mut formats = Vec::new();
    let mut other_formats = Vec::new();
    for f in p {
        match f.parse::<u8>() {
            Ok(pt) if rtp && pt < 128 => {
                let (name, rate) = static_format(pt).unwrap_or(("", 0));
                formats.push(Format {
                    payload_type: pt,
                    encoding: name.to_owned(),
                    clock_rate: rate,
                    fmtp: None,
                });
            }
            _ if rtp => return Err(SdpError("bad RTP payload type")),
            _ => other_formats.push(f.to_owned()),
        }
    }
    Ok(Media {
        kind,
        port,
        proto,
        formats,
        other_formats,
        connection: None,
        ptime_ms: None,
        direction: None,
        attributes: Vec::new(),
    })
}

fn parse_media_attribute(m: &mut Media, v: &str) -> Result<(), SdpError> {
    let (name, value) = v.split_once(':').unwrap_or((v, ""));
    let pt_of = |value: &str| -> Result<(u8, String), SdpError> {
        let (pt, rest) = value.split_once(' ').ok_or(SdpError("bad a= line"))?;
        Ok((
            pt.parse().map_err(|_| SdpError("bad payload type"))?,
            rest.to_owned(),
        ))
    };
    match name {
        "rtpmap" => {
            let (pt, rest) = pt_of(value)?;
            let mut p = rest.split('/');
            let enc = p.next().unwrap_or("").to_owned();
            // RFC 4566 §6 requires the clock rate; an rtpmap without one (RFC
            // 4475 wsinv: `a=rtpmap:31 LPC`) is kept as an unknown attribute
            // rather than failing the whole description.
            match p.next().and_then(|r| r.parse().ok()) {
                Some(rate) => {
                    if let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt) {
                        f.encoding = enc;
                        f.clock_rate = rate;
                    }
                }
                None => m.attributes.push(v.to_owned()),
            }
        }
        "fmtp" => {
            let (pt, rest) = pt_of(value)?;
            if let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt) {
                f.fmtp = Some(rest);
            }
        }
        "ptime" => m.ptime_ms = Some(value.parse().map_err(|_| SdpError("bad ptime"))?),
        _ => match Direction::parse(name) {
            Some(d) => m.direction = Some(d),
            None => m.attributes.push(v.to_owned()),
        },
    }
    Ok(())
}

/// What we can receive and send: our RTP address and codecs in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub origin: Origin,
    pub address: IpAddr,
    pub port: u16,
    /// Encoding names in our order of preference, e.g. `["PCMA", "PCMU"]`.
    pub codecs: Vec<String>,
    /// Offer/accept RFC 4733 telephone-event.
    pub telephone_event: bool,
    pub ptime_ms: u32,
    pub direction: Direction,
}

const TELEPHONE_EVENT: &str = "telephone-event";

/// Our offer: one audio stream with our codecs (static PTs) and
/// telephone-event on PT 101 with events 0-15 (RFC 4733 §2.4.1, DTMF).
pub fn offer(local: &LocalMedia) -> Sdp {
    let mut formats: Vec<Format> = local
        .codecs
        .iter()
        .filter_map(|c| {
            let pt = [0u8, 8]
                .into_iter()
                .find(|pt| static_format(*pt).is_some_and(|(n, _)| n.eq_ignore_ascii_case(c)))?;
            Some(Format {
                payload_type: pt,
                encoding: c.to_ascii_uppercase(),
                clock_rate: 8000,
                fmtp: None,
            })
        })
        .collect();
    if local.telephone_event {
        formats.push(Format {
            payload_type: 101,
            encoding: TELEPHONE_EVENT.into(),
            clock_rate: 8000,
            fmtp: Some("0-15".into()),
        });
    }
    Sdp {
        origin: local.origin.clone(),
        session_name: "-".into(),
        connection: Some(local.address),
        direction: None,
        media: vec![Media {
            kind: "audio".into(),
            port: local.port,
            proto: "RTP/AVP".into(),
            formats,
            other_formats: Vec::new(),
            connection: None,
            ptime_ms: Some(local.ptime_ms),
            direction: Some(local.direction),
            attributes: Vec::new(),
        }],
    }
}

/// RFC 3264 §6: the answer to `offer`. One m= line per offered one; the first
/// RTP audio stream with a codec in common is accepted with the common
/// codecs in our preference order (plus telephone-event on the offerer's
/// payload type and fmtp, RFC 4733 §2.4.1); every other stream, and this one
/// if nothing matches, is rejected with port 0 and the offered formats.
pub fn answer(offer: &Sdp, local: &LocalMedia) -> Sdp {
    let mut accepted = false;
    let media = offer
        .media
        .iter()
        .map(|m| {
            let candidate = !accepted && m.port != 0 && m.kind == "audio" && m.proto == "RTP/AVP";
            if let Some(a) = candidate.then(|| answer_audio(offer, m, local)).flatten() {
                accepted = true;
                return a;
            }
            Media {
                port: 0,
                connection: None,
                ptime_ms: None,
                direction: None,
                attributes: Vec::new(),
                ..m.clone()
            }
        })
        .collect();
    Sdp {
        origin: local.origin.clone(),
        session_name: "-".into(),
        connection: Some(local.address),
        direction: None,
        media,
    }
}

fn answer_audio(offer: &Sdp, m: &Media, local: &LocalMedia) -> Option<Media> {
    let mut formats: Vec<Format> = local
        .codecs
        .iter()
        .filter_map(|c| {
            m.formats
                .iter()
                .find(|f| f.encoding.eq_ignore_ascii_case(c) && f.clock_rate == 8000)
                .cloned()
        })
        .collect();
    if formats.is_empty() {
        return None;
    }
    if local.telephone_event {
        formats.extend(
            m.formats
                .iter()
                .find(|f| f.encoding.eq_ignore_ascii_case(TELEPHONE_EVENT) && f.clock_rate == 8000)
                .cloned(),
        );
    }
    let offered = m.direction_or_default(offer.direction);
    Some(Media {
        kind: m.kind.clone(),
        port: local.port,
        proto: m.proto.clone(),
        formats,
        other_formats: Vec::new(),
        connection: None,
        ptime_ms: Some(m.ptime_ms.unwrap_or(local.ptime_ms)),
        direction: Some(Direction::answer(offered, local.direction)),
        attributes: Vec::new(),
    })
}

impl Sdp {
    /// The remote RTP address and port of the first accepted audio stream.
    pub fn audio_address(&self) -> Option<(IpAddr, u16)> {
        let m = self
            .media
            .iter()
            .find(|m| m.kind == "audio" && m.port != 0)?;
        Some((m.connection.or(self.connection)?, m.port))
    }
}

/// Fuzz entry point: parse, answer, re-emit. Must never panic.
#[doc(hidden)]
pub fn fuzz_sdp(data: &[u8]) {
    if let Ok(offer) = Sdp::parse(data) {
        let local = LocalMedia {
            origin: offer.origin.clone(),
            address: offer.origin.address,
            port: 40000,
            codecs: vec!["PCMA".into(), "PCMU".into()],
            telephone_event: true,
            ptime_ms: 20,
            direction: Direction::SendRecv,
        };
        let a = answer(&offer, &local);
        let _ = Sdp::parse(a.to_text().as_bytes());
        let _ = Sdp::parse(offer.to_text().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local() -> LocalMedia {
        LocalMedia {
            origin: Origin {
                username: "tdmgw".into(),
                session_id: 42,
                version: 1,
                address: "192.0.2.10".parse().unwrap(),
            },
            address: "192.0.2.10".parse().unwrap(),
            port: 40002,
            codecs: vec!["PCMA".into(), "PCMU".into()],
            telephone_event: true,
            ptime_ms: 20,
            direction: Direction::SendRecv,
        }
    }

    const CORE_OFFER: &str = "v=0\r\no=core 1 7 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\na=sendonly\r\n\
m=video 30002 RTP/AVP 31\r\n";

    #[test]
    fn answer_picks_our_codec_order_dtmf_pt_and_direction() {
        let offer = Sdp::parse(CORE_OFFER.as_bytes()).unwrap();
        assert_eq!(
            offer.audio_address(),
            Some(("2001:db8::5".parse().unwrap(), 30000))
        );
        let a = answer(&offer, &local());
        let back = Sdp::parse(a.to_text().as_bytes()).unwrap();
        let m = &back.media[0];
        let pts: Vec<u8> = m.formats.iter().map(|f| f.payload_type).collect();
        assert_eq!(pts, [8, 0, 96]);
        assert_eq!(m.formats[2].fmtp.as_deref(), Some("0-16"));
        assert_eq!(
            (m.port, m.ptime_ms, m.direction),
            (40002, Some(30), Some(Direction::RecvOnly))
        );
        // §6: the video stream is rejected with port 0, same m= line count.
        assert_eq!((back.media.len(), back.media[1].port), (2, 0));
    }

    #[test]
    fn nothing_in_common_rejects_with_port_0() {
        let offer = Sdp::parse(b"v=0\no=x 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 18\n").unwrap();
        let a = answer(&offer, &local());
        assert_eq!(a.media[0].port, 0);
        assert_eq!(a.audio_address(), None);
    }

    #[test]
    fn directions_and_versions() {
        use Direction::*;
        assert_eq!(Direction::answer(RecvOnly, SendRecv), SendOnly);
        assert_eq!(Direction::answer(Inactive, SendRecv), Inactive);
        assert_eq!(Direction::answer(SendRecv, SendOnly), SendOnly);
        assert_eq!(local().origin.next_version().version, 2);
        assert!(Sdp::parse(b"v=0\r\ns=-\r\n").is_err());
        assert!(Sdp::parse(b"v=0\r\no=x 1 1 IN IP4 ::1\r\n").is_err());
        assert!(Sdp::parse(b"v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
    }

    proptest! {
        #[test]
        fn offer_round_trips(
            v6 in any::<bool>(), port in 1u16.., version in any::<u64>(),
            pcma_first in any::<bool>(), dtmf in any::<bool>(), ptime in 10u32..=60,
            dir in 0usize..4,
        ) {
            let mut l = local();
            if v6 { l.address = "2001:db8::1".parse().unwrap(); }
            l.port = port;
            l.origin.version = version;
            if !pcma_first { l.codecs.reverse(); }
            l.telephone_event = dtmf;
            l.ptime_ms = ptime;
            l.direction = [Direction::SendRecv, Direction::SendOnly, Direction::RecvOnly, Direction::Inactive][dir];
            let o = offer(&l);
            prop_assert_eq!(Sdp::parse(o.to_text().as_bytes()).unwrap(), o);
        }
    }
}
