//! Typed contents of the codeset 0 information elements call control reads
//! (Q.931 §4.5). Each type has `decode(contents) -> Option<Self>` (`None` =
//! invalid contents, §5.8.6.2 / §5.8.7.2) and `encode(&self, out)`; for every
//! value `decode` accepts, `encode` gives the same octets back.

use crate::isdn::cause::{Cause, Location};

/// Bearer capability (§4.5.5). Octets 5 onwards (layer 1/2/3 protocol
/// identification) are kept as they came, checked only for their layer-1 id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerCapability {
    /// Octet 3 bits 7-6 (0 = ITU-T).
    pub coding_standard: u8,
    /// Octet 3 bits 5-1: 0 speech, 8 unrestricted digital, 0x10 3.1 kHz audio.
    pub transfer_capability: u8,
    /// Octet 4 bits 7-6: 0 circuit mode.
    pub transfer_mode: u8,
    /// Octet 4 bits 5-1: 0x10 64 kbit/s, 0x18 multirate.
    pub transfer_rate: u8,
    /// Octet 4.1, present only for multirate.
    pub rate_multiplier: Option<u8>,
    /// Octets 5.. as received.
    pub protocol_octets: Vec<u8>,
}

impl BearerCapability {
    pub const SPEECH: u8 = 0x00;
    pub const UNRESTRICTED_DIGITAL: u8 = 0x08;
    pub const AUDIO_3K1: u8 = 0x10;
    pub const RATE_64K: u8 = 0x10;
    pub const RATE_MULTI: u8 = 0x18;
    /// User information layer 1 protocol (octet 5 bits 5-1): G.711 A-law.
    pub const L1_G711_ALAW: u8 = 0x03;

    /// Speech, 64 kbit/s circuit mode, G.711 A-law: what an E1 voice call carries.
    pub fn speech_alaw() -> BearerCapability {
        BearerCapability {
            coding_standard: 0,
            transfer_capability: Self::SPEECH,
            transfer_mode: 0,
            transfer_rate: Self::RATE_64K,
            rate_multiplier: None,
            protocol_octets: vec![0xA0 | Self::L1_G711_ALAW],
        }
    }

    /// The user information layer 1 protocol, if octet 5 is present.
    pub fn layer1_protocol(&self) -> Option<u8> {
        self.protocol_octets
            .first()
            .filter(|o| *o & 0x60 == 0x20)
            .map(|o| o & 0x1F)
    }

    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&o3, rest) = c.split_first()?;
        let (&o4, mut rest) = rest.split_first()?;
        if o3 & 0x80 == 0 || o4 & 0x80 == 0 {
            return None;
        }
        let transfer_rate = o4 & 0x1F;
        let mut rate_multiplier = None;
        if transfer_rate == Self::RATE_MULTI {
            let (&m, r) = rest.split_first()?;
            if m & 0x80 == 0 {
                return None;
            }
            rate_multiplier = Some(m & 0x7F);
            rest = r;
        }
        // Octet 5 must carry layer 1 identification (bits 7-6 = 01) if present.
        if let Some(&o5) = rest.first()
            && o5 & 0x60 != 0x20
        {
            return None;
        }
        Some(BearerCapability {
            coding_standard: (o3 >> 5) & 3,
            transfer_capability: o3 & 0x1F,
            transfer_mode: (o4 >> 5) & 3,
            transfer_rate,
            rate_multiplier,
            protocol_octets: rest.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | (self.coding_standard & 3) << 5 | (self.transfer_capability & 0x1F));
        out.push(0x80 | (self.transfer_mode & 3) << 5 | (self.transfer_rate & 0x1F));
        if let Some(m) = self.rate_multiplier {
            out.push(0x80 | (m & 0x7F));
        }
        out.extend_from_slice(&self.protocol_octets);
    }
}

/// Cause (§4.5.12 and Q.850 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseIe {
    pub coding_standard: u8,
    pub location: Location,
    /// Octet 3a (recommendation), rarely sent.
    pub recommendation: Option<u8>,
    pub cause: Cause,
    pub diagnostics: Vec<u8>,
}

impl CauseIe {
    /// ITU-T coding with the given location, no diagnostics.
    pub fn new(cause: Cause, location: Location) -> CauseIe {
        CauseIe {
            coding_standard: 0,
            location,
            recommendation: None,
            cause,
            diagnostics: Vec::new(),
        }
    }

    pub fn with_diagnostics(mut self, d: &[u8]) -> CauseIe {
        self.diagnostics = d.to_vec();
        self
    }

    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&o3, mut rest) = c.split_first()?;
        let mut recommendation = None;
        if o3 & 0x80 == 0 {
            let (&o3a, r) = rest.split_first()?;
            if o3a & 0x80 == 0 {
                return None;
            }
            recommendation = Some(o3a & 0x7F);
            rest = r;
        }
        let (&o4, rest) = rest.split_first()?;
        if o4 & 0x80 == 0 {
            return None;
        }
        Some(CauseIe {
            coding_standard: (o3 >> 5) & 3,
            location: Location(o3 & 0x0F),
            recommendation,
            cause: Cause(o4 & 0x7F),
            diagnostics: rest.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let ext = if self.recommendation.is_some() {
            0
        } else {
            0x80
        };
        out.push(ext | (self.coding_standard & 3) << 5 | (self.location.0 & 0x0F));
        if let Some(r) = self.recommendation {
            out.push(0x80 | (r & 0x7F));
        }
        out.push(0x80 | (self.cause.0 & 0x7F));
        out.extend_from_slice(&self.diagnostics);
    }
}

/// Call state (§4.5.7): the Q.931 state number, 0..=25 for calls, 0/1/2 for
/// the global interface state (REST 0/1/2 coded 0, 0x3D, 0x3E).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStateIe {
    pub coding_standard: u8,
    pub value: u8,
}

impl CallStateIe {
    pub fn decode(c: &[u8]) -> Option<Self> {
        match c {
            [o3] => Some(CallStateIe {
                coding_standard: o3 >> 6,
                value: o3 & 0x3F,
            }),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push((self.coding_standard & 3) << 6 | (self.value & 0x3F));
    }
}

/// The channel list of a primary rate channel identification (octets 3.2-3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelList {
    pub coding_standard: u8,
    /// Octet 3.2 bits 4-1: 3 = B-channel units.
    pub channel_type: u8,
    /// Timeslot numbers (octet 3.2 bit 5 = 0) or, when `map` is set, the
    /// slot map octets.
    pub channels: Vec<u8>,
    pub map: bool,
}

/// Channel identification (§4.5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelId {
    /// Octet 3.1 (interface identifier), when bit 7 is set.
    pub interface_id: Option<Vec<u8>>,
    /// Octet 3 bit 6: primary rate interface.
    pub primary_rate: bool,
    /// Octet 3 bit 4: exclusive (true) or preferred.
    pub exclusive: bool,
    /// Octet 3 bit 3: the D-channel is indicated.
    pub d_channel: bool,
    /// Octet 3 bits 2-1: 0 no channel, 1 as indicated (PRI), 3 any channel.
    pub selection: u8,
    pub list: Option<ChannelList>,
}

impl ChannelId {
    pub const B_CHANNEL_UNITS: u8 = 3;

    /// A primary rate channel by timeslot number.
    pub fn pri(timeslot: u8, exclusive: bool) -> ChannelId {
        ChannelId {
            interface_id: None,
            primary_rate: true,
            exclusive,
            d_channel: false,
            selection: 1,
            list: Some(ChannelList {
                coding_standard: 0,
                channel_type: Self::B_CHANNEL_UNITS,
                channels: vec![timeslot],
                map: false,
            }),
        }
    }

    /// The single timeslot this identifies, if it names exactly one by number.
    pub fn timeslot(&self) -> Option<u8> {
        match &self.list {
            Some(l) if !l.map && l.channels.len() == 1 => Some(l.channels[0]),
            _ => None,
        }
    }

    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&o3, mut rest) = c.split_first()?;
        if o3 & 0x80 == 0 {
            return None;
        }
        let mut interface_id = None;
        if o3 & 0x40 != 0 {
            // Octet 3.1: extended until an octet with bit 8 set.
            let end = rest.iter().position(|o| o & 0x80 != 0)?;
            interface_id = Some(rest[..=end].to_vec());
            rest = &rest[end + 1..];
        }
        let primary_rate = o3 & 0x20 != 0;
        let selection = o3 & 0x03;
        let mut list = None;
        if primary_rate && interface_id.is_none() && !rest.is_empty() {
            let (&o32, r) = rest.split_first()?;
            if o32 & 0x80 == 0 {
                return None;
            }
            let map = o32 & 0x10 != 0;
            let channels = if map {
                if r.is_empty() {
                    return None;
                }
                r.to_vec()
            } else {
                // Octet 3.3: numbers, the last with bit 8 set.
                let end = r.iter().position(|o| o & 0x80 != 0)?;
                if end + 1 != r.len() {
                    return None;
                }
                r.iter().map(|o| o & 0x7F).collect()
            };
            list = Some(ChannelList {
                coding_standard: (o32 >> 5) & 3,
                channel_type: o32 & 0x0F,
                channels,
                map,
            });
        } else if !rest.is_empty() {
            return None;
        }
        Some(ChannelId {
            interface_id,
            primary_rate,
            exclusive: o3 & 0x08 != 0,
            d_channel: o3 & 0x04 != 0,
            selection,
            list,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut o3 = 0x80 | (self.selection & 3);
        if self.interface_id.is_some() {
            o3 |= 0x40;
        }
        if self.primary_rate {
            o3 |= 0x20;
        }
        if self.exclusive {
            o3 |= 0x08;
        }
        if self.d_channel {
            o3 |= 0x04;
        }
        out.push(o3);
        if let Some(i) = &self.interface_id {
            out.extend_from_slice(i);
        }
        if let Some(l) = &self.list {
            let map = if l.map { 0x10 } else { 0 };
            out.push(0x80 | (l.coding_standard & 3) << 5 | map | (l.channel_type & 0x0F));
            if l.map {
                out.extend_from_slice(&l.channels);
            } else {
                let n = l.channels.len();
                for (i, ch) in l.channels.iter().enumerate() {
                    out.push(ch & 0x7F | if i + 1 == n { 0x80 } else { 0 });
                }
            }
        }
    }
}

/// Progress indicator (§4.5.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressIndicator {
    pub coding_standard: u8,
    pub location: Location,
    /// 1 = call is not end-to-end ISDN, further progress in-band; 2 =
    /// destination not ISDN; 3 = origination not ISDN; 8 = in-band
    /// information now available.
    pub description: u8,
}

impl ProgressIndicator {
    pub const NOT_END_TO_END_ISDN: u8 = 1;
    pub const DESTINATION_NOT_ISDN: u8 = 2;
    pub const ORIGINATION_NOT_ISDN: u8 = 3;
    pub const IN_BAND_AVAILABLE: u8 = 8;

    pub fn decode(c: &[u8]) -> Option<Self> {
        match c {
            [o3, o4] if o3 & 0x80 != 0 && o4 & 0x80 != 0 => Some(ProgressIndicator {
                coding_standard: (o3 >> 5) & 3,
                location: Location(o3 & 0x0F),
                description: o4 & 0x7F,
            }),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | (self.coding_standard & 3) << 5 | (self.location.0 & 0x0F));
        out.push(0x80 | (self.description & 0x7F));
    }
}

/// Restart class (§4.5.25, octet 3 bits 3-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartClass(pub u8);

impl RestartClass {
    /// Indicated channels (with a channel identification).
    pub const INDICATED_CHANNELS: RestartClass = RestartClass(0);
    /// The single interface the D-channel controls.
    pub const SINGLE_INTERFACE: RestartClass = RestartClass(6);
    /// All interfaces.
    pub const ALL_INTERFACES: RestartClass = RestartClass(7);

    pub fn decode(c: &[u8]) -> Option<Self> {
        match c {
            [o3] if o3 & 0x80 != 0 && matches!(o3 & 7, 0 | 6 | 7) => Some(RestartClass(o3 & 7)),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | (self.0 & 7));
    }
}

/// Notification indicator (§4.5.22): description (octet 3 bits 7-1) and any
/// further octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationIndicator {
    pub description: u8,
    pub extra: Vec<u8>,
}

impl NotificationIndicator {
    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&o3, rest) = c.split_first()?;
        (o3 & 0x80 != 0).then(|| NotificationIndicator {
            description: o3 & 0x7F,
            extra: rest.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | (self.description & 0x7F));
        out.extend_from_slice(&self.extra);
    }
}

/// Date/time (§4.5.10): year (2 digits), month, day, then optional hour,
/// minute, second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: Option<u8>,
    pub minute: Option<u8>,
    pub second: Option<u8>,
}

impl DateTime {
    pub fn decode(c: &[u8]) -> Option<Self> {
        if !(3..=6).contains(&c.len()) {
            return None;
        }
        let ok = (1..=12).contains(&c[1])
            && (1..=31).contains(&c[2])
            && c.get(3).is_none_or(|h| *h < 24)
            && c.get(4).is_none_or(|m| *m < 60)
            && c.get(5).is_none_or(|s| *s < 60)
            && c[0] < 100;
        ok.then(|| DateTime {
            year: c[0],
            month: c[1],
            day: c[2],
            hour: c.get(3).copied(),
            minute: c.get(4).copied(),
            second: c.get(5).copied(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.year, self.month, self.day]);
        // Later fields only if the earlier ones are present (§4.5.10).
        if let Some(h) = self.hour {
            out.push(h);
            if let Some(m) = self.minute {
                out.push(m);
                if let Some(s) = self.second {
                    out.push(s);
                }
            }
        }
    }
}

/// IA5 text (display §4.5.16, keypad §4.5.18): every octet has bit 8 clear.
pub fn decode_ia5(c: &[u8]) -> Option<Vec<u8>> {
    (!c.is_empty() && c.iter().all(|o| o & 0x80 == 0)).then(|| c.to_vec())
}

/// User-user (§4.5.30): protocol discriminator and the information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUser {
    pub protocol: u8,
    pub info: Vec<u8>,
}

impl UserUser {
    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&protocol, info) = c.split_first()?;
        Some(UserUser {
            protocol,
            info: info.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.protocol);
        out.extend_from_slice(&self.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_speech_alaw_from_the_spec() {
        // 0x80: ITU-T, speech; 0x90: circuit mode, 64 kbit/s; 0xA3: layer 1, G.711 A-law.
        let b = BearerCapability::decode(&[0x80, 0x90, 0xA3]).unwrap();
        assert_eq!(b, BearerCapability::speech_alaw());
        assert_eq!(b.layer1_protocol(), Some(3));
        let mut v = Vec::new();
        b.encode(&mut v);
        assert_eq!(v, [0x80, 0x90, 0xA3]);
        assert!(BearerCapability::decode(&[0x80]).is_none());
        assert!(BearerCapability::decode(&[0x80, 0x90, 0x43]).is_none());
    }

    #[test]
    fn cause_with_diagnostics() {
        // 0x82: ITU-T, public network serving the local user; 0xE0: cause 96; diagnostic: IE 0x18.
        let c = CauseIe::decode(&[0x82, 0xE0, 0x18]).unwrap();
        assert_eq!(c.cause, Cause::MANDATORY_IE_MISSING);
        assert_eq!(c.location, Location::PUBLIC_LOCAL);
        assert_eq!(c.diagnostics, [0x18]);
        let c = CauseIe::decode(&[0x02, 0x80, 0x90]).unwrap();
        assert_eq!(c.recommendation, Some(0));
        assert_eq!(c.cause, Cause::NORMAL_CLEARING);
        assert!(CauseIe::decode(&[0x82]).is_none());
    }

    #[test]
    fn channel_id_exclusive_and_map() {
        // 0xA9: PRI, exclusive, as indicated; 0x83: ITU-T, number, B units; 0x85: TS5.
        let c = ChannelId::decode(&[0xA9, 0x83, 0x85]).unwrap();
        assert_eq!(c, ChannelId::pri(5, true));
        assert_eq!(c.timeslot(), Some(5));
        // Preferred, slot map.
        let c = ChannelId::decode(&[0xA1, 0x93, 0x00, 0x00, 0x01]).unwrap();
        assert!(!c.exclusive);
        assert!(c.list.as_ref().unwrap().map);
        assert_eq!(c.timeslot(), None);
        // Numbers without a final octet are invalid.
        assert!(ChannelId::decode(&[0xA9, 0x83, 0x05]).is_none());
        // Interface identifier present.
        let c = ChannelId::decode(&[0xE9, 0x81]).unwrap();
        assert_eq!(c.interface_id, Some(vec![0x81]));
    }

    #[test]
    fn restart_classes() {
        assert_eq!(
            RestartClass::decode(&[0x87]),
            Some(RestartClass::ALL_INTERFACES)
        );
        assert_eq!(
            RestartClass::decode(&[0x80]),
            Some(RestartClass::INDICATED_CHANNELS)
        );
        assert_eq!(RestartClass::decode(&[0x83]), None);
    }
}
