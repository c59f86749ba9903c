//! What crosses between the control plane and a media thread (DESIGN.md §1):
//! [`Command`]s in, [`Event`]s out, each a plain `Copy` value carried by a
//! [`super::ring`]. Nothing here owns heap memory, so a value can sit in a
//! ring slot and be copied out on either thread.

use std::net::SocketAddr;

use super::jitter::JitterConfig;
use super::rtp::PayloadType;
use super::tone::ToneSpec;

/// A B-channel: the span's number (as configured, from 1) and its timeslot
/// (1..=15, 17..=31; DESIGN.md §5: timeslot N is B-channel N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub span: u16,
    pub timeslot: u8,
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.span, self.timeslot)
    }
}

/// The voice codec on the RTP side. The E1 side is always A-law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 A-law: the E1 octets go into the payload untouched.
    Pcma,
    /// G.711 µ-law: converted with the G.711 Table 3/4 code maps.
    Pcmu,
}

impl Codec {
    /// The RFC 3551 static payload type.
    pub fn static_payload_type(self) -> PayloadType {
        match self {
            Codec::Pcma => PayloadType::PCMA,
            Codec::Pcmu => PayloadType::PCMU,
        }
    }
}

/// RTP packetisation intervals a channel accepts (ms).
pub const PTIMES_MS: [u8; 4] = [10, 20, 30, 40];

/// Everything a connect needs; [`ConnectParams::new`] gives the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectParams {
    /// The SDP connection address and port of the far end.
    pub remote: SocketAddr,
    /// Latch only to sources whose IP address is `remote`'s.
    pub restrict_to_sdp: bool,
    pub codec: Codec,
    /// Payload type of the voice stream (normally the codec's static one).
    pub payload_type: PayloadType,
    /// 10, 20 (default), 30 or 40.
    pub ptime_ms: u8,
    /// Our SSRC; `None` draws one from the channel's PRNG.
    pub ssrc: Option<u32>,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub telephone_event_pt: Option<PayloadType>,
    pub jitter: JitterConfig,
    /// No valid RTP for this long raises [`Event::RtpTimeout`] (default 30 s).
    pub rtp_timeout_ms: u32,
    /// Detect DTMF in the E1 audio and suppress it from the voice stream.
    pub dtmf_detect: bool,
}

impl ConnectParams {
    /// PCMA/PCMU at its static payload type, 20 ms, random SSRC, no
    /// telephone-event, default jitter buffer, 30 s timeout, DTMF detection on.
    pub fn new(remote: SocketAddr, codec: Codec) -> Self {
        ConnectParams {
            remote,
            restrict_to_sdp: false,
            codec,
            payload_type: codec.static_payload_type(),
            ptime_ms: 20,
            ssrc: None,
            telephone_event_pt: None,
            jitter: JitterConfig::default(),
            rtp_timeout_ms: 30_000,
            dtmf_detect: true,
        }
    }
}

/// Up to 16 DTMF digits to play into the timeslot, each `on_ms` of tone
/// followed by `off_ms` of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitString {
    digits: [u8; Self::MAX],
    len: u8,
    pub on_ms: u16,
    pub off_ms: u16,
}

impl DigitString {
    pub const MAX: usize = 16;

    /// `None` if longer than [`Self::MAX`] or a character is not a DTMF
    /// digit (`0-9 * # A-D`).
    pub fn new(digits: &[u8], on_ms: u16, off_ms: u16) -> Option<Self> {
        if digits.len() > Self::MAX
            || digits
                .iter()
                .any(|&d| super::dtmf::digit_position(d).is_none())
        {
            return None;
        }
        let mut s = DigitString {
            digits: [0; Self::MAX],
            len: digits.len() as u8,
            on_ms,
            off_ms,
        };
        s.digits[..digits.len()].copy_from_slice(digits);
        Some(s)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }
}

/// Control plane → media thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Start (or restart) the RTP session of a channel. A connect on a
    /// connected channel ends the old session first (its summary is sent).
    Connect {
        ch: ChannelId,
        params: ConnectParams,
    },
    /// The far end moved (re-INVITE): forget the latched source.
    UpdateRemote {
        ch: ChannelId,
        remote: SocketAddr,
        restrict_to_sdp: bool,
    },
    /// End the session; an [`Event::CallSummary`] follows.
    Disconnect {
        ch: ChannelId,
    },
    /// Play a tone into the timeslot (replacing the far end's audio) until
    /// [`Command::StopTone`].
    PlayTone {
        ch: ChannelId,
        tone: ToneSpec,
    },
    StopTone {
        ch: ChannelId,
    },
    /// Play DTMF digits into the timeslot, after any digits still queued.
    SendDigits {
        ch: ChannelId,
        digits: DigitString,
    },
}

impl Command {
    pub fn channel(&self) -> ChannelId {
        match *self {
            Command::Connect { ch, .. }
            | Command::UpdateRemote { ch, .. }
            | Command::Disconnect { ch }
            | Command::PlayTone { ch, .. }
            | Command::StopTone { ch }
            | Command::SendDigits { ch, .. } => ch,
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No such span/timeslot on this media thread.
    UnknownChannel,
    /// ptime not one of [`PTIMES_MS`].
    BadPtime,
    /// Payload type over 127.
    BadPayloadType,
    /// Disconnect or update of a channel that is not connected.
    NotConnected,
    /// Digit queue full.
    DigitQueueFull,
}

/// End-of-call counters and quality of one session. The quality figures are
/// fixed point so the value stays `Copy + Eq` (a ring slot, compared in
/// tests); [`CallSummary::r_factor`], [`CallSummary::mos`] and
/// [`CallSummary::loss_percent`] give them as `f64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallSummary {
    pub duration_ms: u64,
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub packets_received: u64,
    pub octets_received: u64,
    /// RFC 3550 A.3 expected and cumulative lost of the last source.
    pub packets_expected: u64,
    pub packets_lost: i64,
    pub late: u64,
    pub duplicates: u64,
    /// Datagrams refused (every [`super::rtp::RtpError`] kind).
    pub malformed: u64,
    /// RFC 3550 A.8 jitter at the end and the largest seen, in samples.
    pub jitter_samples: u32,
    pub max_jitter_samples: u32,
    /// Samples played with no audio received (concealed).
    pub concealed_samples: u64,
    pub samples_inserted: u64,
    pub samples_dropped: u64,
    pub ssrc_changes: u32,
    pub dtmf_digits_detected: u32,
    /// RFC 4733 digits sent as telephone-events / received and regenerated.
    pub dtmf_digits_sent_rtp: u32,
    pub dtmf_digits_received_rtp: u32,
    /// RFC 3550 A.3 loss of the last source, in 1/100 %.
    pub loss_percent_x100: u32,
    /// RFC 3550 A.8 jitter at the end, in µs.
    pub jitter_us: u32,
    /// Mean RTCP round-trip time (RFC 3550 §6.4.1), µs; 0 when the far
    /// end's reports gave none (see `rtt_samples`).
    pub rtt_us: u32,
    pub rtt_samples: u32,
    /// Milliseconds the G.711 Appendix I PLC synthesised (or silenced).
    pub concealed_ms: u32,
    /// Mouth-to-ear delay the E-model used, ms.
    pub one_way_delay_ms: u32,
    /// ITU-T G.107 R-factor × 100 and G.107 Annex B MOS × 100.
    pub r_factor_x100: u32,
    pub mos_x100: u32,
    /// RTCP compound packets sent / received / refused as malformed.
    pub rtcp_sent: u32,
    pub rtcp_received: u32,
    pub rtcp_malformed: u32,
}

impl CallSummary {
    pub fn r_factor(&self) -> f64 {
        self.r_factor_x100 as f64 / 100.0
    }

    pub fn mos(&self) -> f64 {
        self.mos_x100 as f64 / 100.0
    }

    pub fn loss_percent(&self) -> f64 {
        self.loss_percent_x100 as f64 / 100.0
    }

    /// Mean round-trip time in ms, if one was measured.
    pub fn rtt_ms(&self) -> Option<f64> {
        (self.rtt_samples > 0).then(|| self.rtt_us as f64 / 1000.0)
    }
}

/// Media thread → control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A DTMF digit began in the E1 audio (Q.24 limits met). Digits the
    /// far end sends as RFC 4733 telephone-events are
    /// [`Event::DtmfReceivedStart`].
    DtmfStart {
        ch: ChannelId,
        digit: u8,
    },
    /// It ended, having lasted `duration_ms`.
    DtmfEnd {
        ch: ChannelId,
        digit: u8,
        duration_ms: u32,
    },
    /// An RFC 4733 telephone-event digit began on the RTP side (it is
    /// regenerated as DTMF into the timeslot).
    DtmfReceivedStart {
        ch: ChannelId,
        digit: u8,
    },
    /// It ended with the reported duration (§2.5.2).
    DtmfReceivedEnd {
        ch: ChannelId,
        digit: u8,
        duration_ms: u32,
    },
    /// The far end's RTCP BYE for its source (RFC 3550 §6.6).
    RtcpBye {
        ch: ChannelId,
        ssrc: u32,
    },
    /// The first valid RTP packet of a session (or after UpdateRemote).
    FirstRtp {
        ch: ChannelId,
        from: SocketAddr,
        ssrc: u32,
    },
    /// No valid RTP for the connect's `rtp_timeout_ms` (sent once until
    /// RTP resumes).
    RtpTimeout {
        ch: ChannelId,
        silent_ms: u32,
    },
    /// The latched source changed its SSRC (RFC 3550 §8.2).
    SsrcChanged {
        ch: ChannelId,
        old: u32,
        new: u32,
    },
    /// A session ended.
    CallSummary {
        ch: ChannelId,
        summary: CallSummary,
    },
    CommandRejected {
        ch: ChannelId,
        reason: RejectReason,
    },
    /// Events were lost because the event ring was full: the total since
    /// start-up, sent once there is room again (per-channel queue losses
    /// are in the channel stats).
    EventsDropped {
        ring_full: u64,
    },
}
