//! Party numbers and subaddresses (Q.931 §4.5.8-4.5.10, §4.5.14-4.5.15,
//! EN 300 403 §4.5 for connected and redirecting numbers).

/// Called, calling, connected or redirecting party number. The called
/// party number has no octet 3a; the others may carry presentation and
/// screening (3a) and the redirecting number a reason (3b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyNumber {
    /// Octet 3 bits 7-5: 0 unknown, 1 international, 2 national, 3 network
    /// specific, 4 subscriber, 6 abbreviated.
    pub type_of_number: u8,
    /// Octet 3 bits 4-1: 0 unknown, 1 ISDN/telephony (E.164), 9 private.
    pub numbering_plan: u8,
    /// Octet 3a: (presentation bits 7-6, screening bits 2-1).
    pub presentation: Option<(u8, u8)>,
    /// Octet 3b (redirecting number only): reason for redirection.
    pub reason: Option<u8>,
    /// IA5 digits.
    pub digits: Vec<u8>,
}

impl PartyNumber {
    pub const TON_UNKNOWN: u8 = 0;
    pub const TON_INTERNATIONAL: u8 = 1;
    pub const TON_NATIONAL: u8 = 2;
    pub const NPI_UNKNOWN: u8 = 0;
    pub const NPI_E164: u8 = 1;

    /// A number without octets 3a/3b.
    pub fn new(type_of_number: u8, numbering_plan: u8, digits: &str) -> PartyNumber {
        PartyNumber {
            type_of_number,
            numbering_plan,
            presentation: None,
            reason: None,
            digits: digits.as_bytes().to_vec(),
        }
    }

    pub fn digits_str(&self) -> String {
        String::from_utf8_lossy(&self.digits).into_owned()
    }

    /// Decodes; `octet_3a` says whether the element may carry 3a (and 3b).
    pub fn decode(c: &[u8], octet_3a: bool, octet_3b: bool) -> Option<Self> {
        let (&o3, mut rest) = c.split_first()?;
        let mut presentation = None;
        let mut reason = None;
        if o3 & 0x80 == 0 {
            if !octet_3a {
                return None;
            }
            let (&o3a, r) = rest.split_first()?;
            presentation = Some(((o3a >> 5) & 3, o3a & 3));
            rest = r;
            if o3a & 0x80 == 0 {
                if !octet_3b {
                    return None;
                }
                let (&o3b, r) = rest.split_first()?;
                if o3b & 0x80 == 0 {
                    return None;
                }
                reason = Some(o3b & 0x0F);
                rest = r;
            }
        }
        if rest.iter().any(|d| d & 0x80 != 0) {
            return None;
        }
        Some(PartyNumber {
            type_of_number: (o3 >> 4) & 7,
            numbering_plan: o3 & 0x0F,
            presentation,
            reason,
            digits: rest.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let ext3 = if self.presentation.is_some() { 0 } else { 0x80 };
        out.push(ext3 | (self.type_of_number & 7) << 4 | (self.numbering_plan & 0x0F));
        if let Some((p, s)) = self.presentation {
            let ext = if self.reason.is_some() { 0 } else { 0x80 };
            out.push(ext | (p & 3) << 5 | (s & 3));
            if let Some(r) = self.reason {
                out.push(0x80 | (r & 0x0F));
            }
        }
        out.extend(self.digits.iter().map(|d| d & 0x7F));
    }
}

/// Called, calling or connected subaddress (§4.5.9 / §4.5.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subaddress {
    /// Octet 3 bits 7-5: 0 NSAP, 2 user specified.
    pub kind: u8,
    /// Octet 3 bit 4: odd number of address signals.
    pub odd: bool,
    pub info: Vec<u8>,
}

impl Subaddress {
    pub fn decode(c: &[u8]) -> Option<Self> {
        let (&o3, info) = c.split_first()?;
        (o3 & 0x80 != 0).then(|| Subaddress {
            kind: (o3 >> 4) & 7,
            odd: o3 & 0x08 != 0,
            info: info.to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x80 | (self.kind & 7) << 4 | if self.odd { 0x08 } else { 0 });
        out.extend_from_slice(&self.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn called_and_calling_numbers() {
        // 0x81: unknown type, ISDN plan; "999".
        let n = PartyNumber::decode(&[0x81, b'9', b'9', b'9'], false, false).unwrap();
        assert_eq!(n, PartyNumber::new(0, 1, "999"));
        // Calling: 0x21 national/ISDN, 0x83 presentation allowed, network provided.
        let n = PartyNumber::decode(&[0x21, 0x83, b'2', b'0'], true, false).unwrap();
        assert_eq!(n.presentation, Some((0, 3)));
        assert_eq!(n.type_of_number, PartyNumber::TON_NATIONAL);
        let mut v = Vec::new();
        n.encode(&mut v);
        assert_eq!(v, [0x21, 0x83, b'2', b'0']);
        // Octet 3a is not allowed in a called party number.
        assert!(PartyNumber::decode(&[0x01, 0x83, b'9'], false, false).is_none());
        // Redirecting with reason 0xF (unconditional).
        let n = PartyNumber::decode(&[0x21, 0x03, 0x8F, b'1'], true, true).unwrap();
        assert_eq!(n.reason, Some(0x0F));
    }
}
