//! LAPD frame codec (Q.921 §2 and §3): address field, control field and
//! information field. Frames here exclude the opening/closing flags and the
//! FCS; bit stuffing and the FCS are the line layer's job (HDLC).
//!
//! [`Frame`] is a borrowed view checked once ([`Frame::new_checked`]);
//! [`FrameRepr`] is the parsed value with [`FrameRepr::parse`],
//! [`FrameRepr::buffer_len`] and [`FrameRepr::emit`] into a caller buffer.

use std::fmt;

/// Service access point identifier (Q.921 §3.3.3): 6 bits. Open newtype: any
/// value 0..=63 is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sapi(pub u8);

impl Sapi {
    /// Call control procedures (Q.931).
    pub const CALL_CONTROL: Sapi = Sapi(0);
    /// Packet communication conforming to X.25 level 3.
    pub const PACKET: Sapi = Sapi(16);
    /// Layer 2 management procedures (TEI management).
    pub const MANAGEMENT: Sapi = Sapi(63);
}

/// Terminal endpoint identifier (Q.921 §3.3.4): 7 bits. PRI point-to-point
/// uses TEI 0; 127 is the broadcast TEI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tei(pub u8);

impl Tei {
    pub const PRI: Tei = Tei(0);
    pub const BROADCAST: Tei = Tei(127);
}

/// Which side of the interface an entity is (Q.921 §3.3.2 C/R conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Network,
}

impl Role {
    /// The C/R bit this side puts on a command it sends (Q.921 Table 1:
    /// commands network -> user C/R=1, user -> network C/R=0; responses
    /// the opposite).
    pub fn cr_for_command(self) -> bool {
        self == Role::Network
    }

    /// The C/R bit this side puts on a response it sends.
    pub fn cr_for_response(self) -> bool {
        !self.cr_for_command()
    }

    /// Whether a frame received by this side with bit `cr` is a command.
    pub fn received_is_command(self, cr: bool) -> bool {
        // The sender is the other side: a network command carries 1.
        cr == (self == Role::User)
    }

    pub fn peer(self) -> Role {
        match self {
            Role::User => Role::Network,
            Role::Network => Role::User,
        }
    }
}

/// The address field (Q.921 §3.3, Figure 5): octet 2 = SAPI(6) C/R EA=0,
/// octet 3 = TEI(7) EA=1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub sapi: Sapi,
    pub cr: bool,
    pub tei: Tei,
}

/// Supervisory frame functions (Q.921 Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Supervisory {
    /// Receive ready, `0000 0001`.
    Rr,
    /// Receive not ready, `0000 0101`.
    Rnr,
    /// Reject, `0000 1001`.
    Rej,
}

/// Unnumbered frame functions (Q.921 Table 5), the octet with P/F clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unnumbered {
    /// Set asynchronous balanced mode extended, `011P 1111` (command).
    Sabme,
    /// Disconnected mode, `000F 1111` (response).
    Dm,
    /// Unnumbered information, `000P 0011` (command).
    Ui,
    /// Disconnect, `010P 0011` (command).
    Disc,
    /// Unnumbered acknowledgement, `011F 0011` (response).
    Ua,
    /// Frame reject, `100F 0111` (response).
    Frmr,
    /// Exchange identification, `101P 1111` (command or response).
    Xid,
}

impl Unnumbered {
    const TABLE: [(Unnumbered, u8); 7] = [
        (Unnumbered::Sabme, 0x6F),
        (Unnumbered::Dm, 0x0F),
        (Unnumbered::Ui, 0x03),
        (Unnumbered::Disc, 0x43),
        (Unnumbered::Ua, 0x63),
        (Unnumbered::Frmr, 0x87),
        (Unnumbered::Xid, 0xAF),
    ];

    /// The control octet with the P/F bit (0x10) clear.
    pub fn code(self) -> u8 {
        Self::TABLE
            .iter()
            .find(|(u, _)| *u == self)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    }

    fn from_code(octet: u8) -> Option<Unnumbered> {
        let c = octet & !0x10;
        Self::TABLE.iter().find(|(_, v)| *v == c).map(|(u, _)| *u)
    }

    /// Whether Q.921 permits an information field in this frame (§3.6.5:
    /// UI, FRMR and XID only).
    pub fn permits_info(self) -> bool {
        matches!(self, Unnumbered::Ui | Unnumbered::Frmr | Unnumbered::Xid)
    }
}

/// The control field (Q.921 §3.4, Table 4): modulo-128 format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// Information transfer: `N(S) 0`, `N(R) P`.
    I { ns: u8, nr: u8, p: bool },
    /// Supervisory: `0000 SS01`, `N(R) P/F`.
    S { kind: Supervisory, nr: u8, pf: bool },
    /// Unnumbered: `MMM P/F MM11` (one octet).
    U { kind: Unnumbered, pf: bool },
}

impl Control {
    pub fn len(&self) -> usize {
        match self {
            Control::U { .. } => 1,
            _ => 2,
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The short name Wireshark and Q.921 use.
    pub fn name(&self) -> &'static str {
        match self {
            Control::I { .. } => "I",
            Control::S { kind, .. } => match kind {
                Supervisory::Rr => "RR",
                Supervisory::Rnr => "RNR",
                Supervisory::Rej => "REJ",
            },
            Control::U { kind, .. } => match kind {
                Unnumbered::Sabme => "SABME",
                Unnumbered::Dm => "DM",
                Unnumbered::Ui => "UI",
                Unnumbered::Disc => "DISC",
                Unnumbered::Ua => "UA",
                Unnumbered::Frmr => "FRMR",
                Unnumbered::Xid => "XID",
            },
        }
    }
}

/// Why a received octet string is not a usable LAPD frame. The first three
/// make an *invalid frame* (Q.921 §2.9: discarded without action); the rest
/// are *frame rejection conditions* (§5.8.5) with their MDL error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Fewer octets than an address field and control field need.
    Truncated,
    /// Address extension bits are not 0 then 1 (§3.3.1: only a two-octet
    /// address is defined).
    BadAddress,
    /// Undefined or not implemented control field (MDL error L).
    UndefinedControl,
    /// An information field in a frame that permits none (MDL error M).
    InfoNotPermitted,
    /// A supervisory frame of the wrong length (MDL error N).
    WrongSize,
}

impl FrameError {
    /// Whether §2.9 says to discard the frame silently.
    pub fn is_invalid_frame(self) -> bool {
        matches!(self, FrameError::Truncated | FrameError::BadAddress)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::Truncated => "frame too short",
            FrameError::BadAddress => "bad address extension bits",
            FrameError::UndefinedControl => "undefined control field",
            FrameError::InfoNotPermitted => "information field not permitted",
            FrameError::WrongSize => "supervisory frame of wrong size",
        })
    }
}

impl std::error::Error for FrameError {}

/// A borrowed view of a LAPD frame whose address field has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that the buffer holds a two-octet address and at least one
    /// control octet, with the EA bits as §3.3.1 requires.
    pub fn new_checked(buf: T) -> Result<Self, FrameError> {
        let b = buf.as_ref();
        if b.len() < 3 {
            return Err(FrameError::Truncated);
        }
        if b[0] & 0x01 != 0 || b[1] & 0x01 != 1 {
            return Err(FrameError::BadAddress);
        }
        Ok(Frame { buf })
    }

    pub fn sapi(&self) -> Sapi {
        Sapi(self.buf.as_ref()[0] >> 2)
    }

    pub fn cr(&self) -> bool {
        self.buf.as_ref()[0] & 0x02 != 0
    }

    pub fn tei(&self) -> Tei {
        Tei(self.buf.as_ref()[1] >> 1)
    }

    pub fn address(&self) -> Address {
        Address {
            sapi: self.sapi(),
            cr: self.cr(),
            tei: self.tei(),
        }
    }

    /// Octets from the control field on.
    pub fn rest(&self) -> &[u8] {
        &self.buf.as_ref()[2..]
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

/// A parsed LAPD frame; `info` borrows from the received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    pub address: Address,
    pub control: Control,
    pub info: &'a [u8],
}

impl<'a> FrameRepr<'a> {
    /// Decodes the control field and checks the information field against
    /// the frame type (Q.921 §5.8.5 a, b; the N201 check needs the link's
    /// parameter and is done by the link).
    pub fn parse(frame: &Frame<&'a [u8]>) -> Result<FrameRepr<'a>, FrameError> {
        let address = frame.address();
        let rest: &'a [u8] = &frame.buf[2..];
        let c0 = rest[0];
        let (control, info) = if c0 & 0x01 == 0 {
            let c1 = *rest.get(1).ok_or(FrameError::Truncated)?;
            let control = Control::I {
                ns: c0 >> 1,
                nr: c1 >> 1,
                p: c1 & 0x01 != 0,
            };
            (control, &rest[2..])
        } else if c0 & 0x03 == 0x01 {
            let kind = match c0 {
                0x01 => Supervisory::Rr,
                0x05 => Supervisory::Rnr,
                0x09 => Supervisory::Rej,
                _ => return Err(FrameError::UndefinedControl),
            };
            if rest.len() != 2 {
                return Err(FrameError::WrongSize);
            }
            let c1 = rest[1];
            let control = Control::S {
                kind,
                nr: c1 >> 1,
                pf: c1 & 0x01 != 0,
            };
            (control, &rest[2..])
        } else {
            let kind = Unnumbered::from_code(c0).ok_or(FrameError::UndefinedControl)?;
            let info = &rest[1..];
            if !info.is_empty() && !kind.permits_info() {
                return Err(FrameError::InfoNotPermitted);
            }
            let control = Control::U {
                kind,
                pf: c0 & 0x10 != 0,
            };
            (control, info)
        };
        Ok(FrameRepr {
            address,
            control,
            info,
        })
    }

    /// Convenience: check and parse in one step.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<FrameRepr<'a>, FrameError> {
        FrameRepr::parse(&Frame::new_checked(bytes)?)
    }

    pub fn buffer_len(&self) -> usize {
        2 + self.control.len() + self.info.len()
    }

    /// Writes the frame into `buf[..self.buffer_len()]`. Sequence numbers
    /// are taken modulo 128, SAPI modulo 64, TEI modulo 128.
    ///
    /// # Panics
    /// If `buf` is shorter than [`FrameRepr::buffer_len`] (a caller bug).
    pub fn emit(&self, buf: &mut [u8]) {
        let a = &self.address;
        buf[0] = ((a.sapi.0 & 0x3F) << 2) | (u8::from(a.cr) << 1);
        buf[1] = ((a.tei.0 & 0x7F) << 1) | 0x01;
        let n = match self.control {
            Control::I { ns, nr, p } => {
                buf[2] = (ns & 0x7F) << 1;
                buf[3] = ((nr & 0x7F) << 1) | u8::from(p);
                4
            }
            Control::S { kind, nr, pf } => {
                buf[2] = match kind {
                    Supervisory::Rr => 0x01,
                    Supervisory::Rnr => 0x05,
                    Supervisory::Rej => 0x09,
                };
                buf[3] = ((nr & 0x7F) << 1) | u8::from(pf);
                4
            }
            Control::U { kind, pf } => {
                buf[2] = kind.code() | if pf { 0x10 } else { 0 };
                3
            }
        };
        buf[n..n + self.info.len()].copy_from_slice(self.info);
    }

    /// Emits into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

impl fmt::Display for FrameRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sapi={} tei={} cr={}",
            self.control.name(),
            self.address.sapi.0,
            self.address.tei.0,
            u8::from(self.address.cr)
        )?;
        match self.control {
            Control::I { ns, nr, p } => write!(f, " ns={ns} nr={nr} p={}", u8::from(p))?,
            Control::S { nr, pf, .. } => write!(f, " nr={nr} pf={}", u8::from(pf))?,
            Control::U { pf, .. } => write!(f, " pf={}", u8::from(pf))?,
        }
        if !self.info.is_empty() {
            write!(f, " len={}", self.info.len())?;
        }
        Ok(())
    }
}

/// Fuzz entry point for the `q921_frame` target: parse, and for any frame
/// that parses, re-emit and re-parse to the same value. Never panics.
#[doc(hidden)]
pub fn fuzz_q921_frame(data: &[u8]) {
    if let Ok(repr) = FrameRepr::parse_bytes(data) {
        let v = repr.to_vec();
        let again = FrameRepr::parse_bytes(&v);
        assert_eq!(again, Ok(repr), "re-parse of emitted frame differs");
        let _ = repr.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(b: &[u8]) -> FrameRepr<'_> {
        FrameRepr::parse_bytes(b).expect("valid frame")
    }

    #[test]
    fn sabme_from_user_on_tei0() {
        // 00: SAPI 0 (000000), C/R 0 (a command from the user side,
        //     Q.921 Table 1), EA0 0.
        // 01: TEI 0 (0000000), EA1 1.
        // 7F: SABME 011P1111 with P = 1.
        let f = parse(&[0x00, 0x01, 0x7F]);
        assert_eq!(f.address.sapi, Sapi(0));
        assert_eq!(f.address.tei, Tei(0));
        assert!(!f.address.cr);
        assert!(Role::Network.received_is_command(f.address.cr));
        assert_eq!(
            f.control,
            Control::U {
                kind: Unnumbered::Sabme,
                pf: true
            }
        );
    }

    #[test]
    fn sabme_from_network_on_tei0() {
        // 02: SAPI 0, C/R 1 (a command from the network side), EA0 0.
        // 01: TEI 0, EA1 1.  7F: SABME, P = 1.
        let f = parse(&[0x02, 0x01, 0x7F]);
        assert!(f.address.cr);
        assert!(Role::User.received_is_command(f.address.cr));
        assert_eq!(f.control.name(), "SABME");
    }

    #[test]
    fn ua_response_from_network() {
        // 00: SAPI 0, C/R 0: a response from the network side.
        // 01: TEI 0.  73: UA 011F0011 with F = 1.
        let f = parse(&[0x00, 0x01, 0x73]);
        assert!(!Role::User.received_is_command(f.address.cr));
        assert_eq!(
            f.control,
            Control::U {
                kind: Unnumbered::Ua,
                pf: true
            }
        );
    }

    #[test]
    fn i_frame_with_q931_setup() {
        // 00 01: SAPI 0, C/R 0 (user command), TEI 0.
        // 02: N(S) = 1 (0000001 0).  05: N(R) = 2, P = 1 (0000010 1).
        // 08 02 00 05 05: Q.931 PD, CR length 2, CR 5, SETUP.
        let b = [0x00, 0x01, 0x02, 0x05, 0x08, 0x02, 0x00, 0x05, 0x05];
        let f = parse(&b);
        assert_eq!(
            f.control,
            Control::I {
                ns: 1,
                nr: 2,
                p: true
            }
        );
        assert_eq!(f.info, &b[4..]);
        assert_eq!(f.to_vec(), b);
    }

    #[test]
    fn supervisory_frames() {
        // 02 01 01 02: network command (C/R 1), RR, N(R) = 1, P = 0.
        let f = parse(&[0x02, 0x01, 0x01, 0x02]);
        assert_eq!(
            f.control,
            Control::S {
                kind: Supervisory::Rr,
                nr: 1,
                pf: false
            }
        );
        // 00 01 05 FF: RNR, N(R) = 127, F = 1.
        let f = parse(&[0x00, 0x01, 0x05, 0xFF]);
        assert_eq!(
            f.control,
            Control::S {
                kind: Supervisory::Rnr,
                nr: 127,
                pf: true
            }
        );
        // 02 01 09 0E: REJ, N(R) = 7.
        let f = parse(&[0x02, 0x01, 0x09, 0x0E]);
        assert_eq!(f.control.name(), "REJ");
    }

    #[test]
    fn broadcast_management_ui() {
        // FC: SAPI 63 (111111), C/R 0, EA0 0.  FF: TEI 127, EA1 1.
        // 03: UI, P = 0.  0F ...: TEI management message (ID request).
        let b = [0xFC, 0xFF, 0x03, 0x0F, 0x12, 0x34, 0x01, 0xFF];
        let f = parse(&b);
        assert_eq!(f.address.sapi, Sapi::MANAGEMENT);
        assert_eq!(f.address.tei, Tei::BROADCAST);
        assert_eq!(f.control.name(), "UI");
        assert_eq!(f.info.len(), 5);
    }

    #[test]
    fn rejection_conditions() {
        assert_eq!(FrameRepr::parse_bytes(&[0x00]), Err(FrameError::Truncated));
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x00]),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&[0x01, 0x01, 0x7F]),
            Err(FrameError::BadAddress)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x00, 0x7F]),
            Err(FrameError::BadAddress)
        );
        // 0D: supervisory code 11 is not defined.
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x0D, 0x00]),
            Err(FrameError::UndefinedControl)
        );
        // 0x23 is not an unnumbered function of Q.921.
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x23]),
            Err(FrameError::UndefinedControl)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x7F, 0x00]),
            Err(FrameError::InfoNotPermitted)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x01, 0x00, 0x00]),
            Err(FrameError::WrongSize)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&[0x00, 0x01, 0x01]),
            Err(FrameError::WrongSize)
        );
    }

    fn arb_control() -> impl Strategy<Value = Control> {
        let sup = prop_oneof![
            Just(Supervisory::Rr),
            Just(Supervisory::Rnr),
            Just(Supervisory::Rej)
        ];
        let un = prop_oneof![
            Just(Unnumbered::Sabme),
            Just(Unnumbered::Dm),
            Just(Unnumbered::Ui),
            Just(Unnumbered::Disc),
            Just(Unnumbered::Ua),
            Just(Unnumbered::Frmr),
            Just(Unnumbered::Xid)
        ];
        prop_oneof![
            (0u8..128, 0u8..128, any::<bool>()).prop_map(|(ns, nr, p)| Control::I { ns, nr, p }),
            (sup, 0u8..128, any::<bool>()).prop_map(|(kind, nr, pf)| Control::S { kind, nr, pf }),
            (un, any::<bool>()).prop_map(|(kind, pf)| Control::U { kind, pf }),
        ]
    }

    proptest! {
        #[test]
        fn decode_encode_roundtrip(
            sapi in 0u8..64, cr: bool, tei in 0u8..128,
            control in arb_control(),
            info in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let info = match control {
                Control::I { .. } => &info[..],
                Control::U { kind, .. } if kind.permits_info() => &info[..],
                _ => &[][..],
            };
            let repr = FrameRepr { address: Address { sapi: Sapi(sapi), cr, tei: Tei(tei) }, control, info };
            let bytes = repr.to_vec();
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(FrameRepr::parse_bytes(&bytes), Ok(repr));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            fuzz_q921_frame(&data);
        }
    }
}
