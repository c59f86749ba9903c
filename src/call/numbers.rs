//! Phone numbers between Q.931 and SIP: type of number and numbering plan
//! (Q.931 §4.5.8/§4.5.10) to and from the user part of a SIP or tel URI, with
//! E.164 (`+44...`) and national (`0...`) forms as the site configures them,
//! and redaction for logs and CDRs.

/// Q.931 type of number (octet 3, bits 7-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOfNumber {
    Unknown = 0,
    International = 1,
    National = 2,
    NetworkSpecific = 3,
    Subscriber = 4,
    Abbreviated = 6,
}

impl TypeOfNumber {
    pub fn from_bits(v: u8) -> TypeOfNumber {
        match v & 7 {
            1 => TypeOfNumber::International,
            2 => TypeOfNumber::National,
            3 => TypeOfNumber::NetworkSpecific,
            4 => TypeOfNumber::Subscriber,
            6 => TypeOfNumber::Abbreviated,
            _ => TypeOfNumber::Unknown,
        }
    }
}

/// Q.931 numbering plan identification (octet 3, bits 4-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberingPlan {
    Unknown = 0,
    /// ISDN/telephony numbering plan (E.164).
    Isdn = 1,
    Private = 9,
}

/// How numbers are written on this trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberFormat {
    /// Country code without `+` (`44`).
    pub country_code: String,
    /// Prefix of national numbers in dialled form (`0`).
    pub national_prefix: String,
    /// Prefix of international numbers in dialled form (`00`).
    pub international_prefix: String,
}

impl Default for NumberFormat {
    /// The UK: +44, national 0, international 00.
    fn default() -> Self {
        NumberFormat {
            country_code: "44".into(),
            national_prefix: "0".into(),
            international_prefix: "00".into(),
        }
    }
}

/// A number as Q.931 carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsdnNumber {
    pub ton: TypeOfNumber,
    pub npi: NumberingPlan,
    /// IA5 digits (`0-9`, `*`, `#`).
    pub digits: String,
}

/// True when `s` holds only dialable characters.
pub fn is_dialable(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

impl NumberFormat {
    /// The SIP user part for a number received from the exchange: E.164 with
    /// `+` when the type says international or national, the digits as sent
    /// otherwise (short codes such as 999 and 101 stay as they are).
    pub fn to_sip_user(&self, n: &IsdnNumber) -> String {
        match n.ton {
            TypeOfNumber::International => format!("+{}", n.digits),
            TypeOfNumber::National => format!("+{}{}", self.country_code, n.digits),
            _ => n.digits.clone(),
        }
    }

    /// The Q.931 number for a SIP user part (a `+` E.164 number, a national
    /// number with its prefix, or a short code). Visual separators allowed in
    /// tel URIs (`-`, `.`, `(`, `)`) are removed. `None` if nothing dialable
    /// is left.
    pub fn to_isdn(&self, user: &str) -> Option<IsdnNumber> {
        let cleaned: String = user
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
            .collect();
        if let Some(e164) = cleaned.strip_prefix('+') {
            if !is_dialable(e164) {
                return None;
            }
            if let Some(national) = e164.strip_prefix(self.country_code.as_str())
                && !national.is_empty()
            {
                return Some(IsdnNumber {
                    ton: TypeOfNumber::National,
                    npi: NumberingPlan::Isdn,
                    digits: national.to_string(),
                });
            }
            return Some(IsdnNumber {
                ton: TypeOfNumber::International,
                npi: NumberingPlan::Isdn,
                digits: e164.to_string(),
            });
        }
        if !is_dialable(&cleaned) {
            return None;
        }
        if !self.international_prefix.is_empty()
            && let Some(rest) = cleaned.strip_prefix(self.international_prefix.as_str())
            && !rest.is_empty()
        {
            return Some(IsdnNumber {
                ton: TypeOfNumber::International,
                npi: NumberingPlan::Isdn,
                digits: rest.to_string(),
            });
        }
        if !self.national_prefix.is_empty()
            && let Some(rest) = cleaned.strip_prefix(self.national_prefix.as_str())
            && rest.len() >= 6
        {
            return Some(IsdnNumber {
                ton: TypeOfNumber::National,
                npi: NumberingPlan::Isdn,
                digits: rest.to_string(),
            });
        }
        Some(IsdnNumber {
            ton: TypeOfNumber::Unknown,
            npi: NumberingPlan::Isdn,
            digits: cleaned,
        })
    }
}

/// All but the last 3 digits replaced by `*`, for logs and CDRs when the site
/// asks for redaction. Short codes (999, 101) are shown whole.
pub fn redact(number: &str) -> String {
    let n = number.chars().count();
    if n <= 3 {
        return number.to_string();
    }
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 3 < n && c != '+' { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ton: TypeOfNumber, d: &str) -> IsdnNumber {
        IsdnNumber {
            ton,
            npi: NumberingPlan::Isdn,
            digits: d.into(),
        }
    }

    #[test]
    fn exchange_numbers_to_sip() {
        let f = NumberFormat::default();
        assert_eq!(
            f.to_sip_user(&num(TypeOfNumber::National, "2079460000")),
            "+442079460000"
        );
        assert_eq!(
            f.to_sip_user(&num(TypeOfNumber::International, "33140000000")),
            "+33140000000"
        );
        assert_eq!(f.to_sip_user(&num(TypeOfNumber::Unknown, "999")), "999");
        assert_eq!(
            f.to_sip_user(&num(TypeOfNumber::Unknown, "02079460000")),
            "02079460000"
        );
    }

    #[test]
    fn sip_users_to_exchange() {
        let f = NumberFormat::default();
        assert_eq!(
            f.to_isdn("+442079460000"),
            Some(num(TypeOfNumber::National, "2079460000"))
        );
        assert_eq!(
            f.to_isdn("+33140000000"),
            Some(num(TypeOfNumber::International, "33140000000"))
        );
        assert_eq!(
            f.to_isdn("02079460000"),
            Some(num(TypeOfNumber::National, "2079460000"))
        );
        assert_eq!(
            f.to_isdn("0033140000000"),
            Some(num(TypeOfNumber::International, "33140000000"))
        );
        assert_eq!(f.to_isdn("999"), Some(num(TypeOfNumber::Unknown, "999")));
        assert_eq!(
            f.to_isdn("+44-20-7946-0000"),
            Some(num(TypeOfNumber::National, "2079460000"))
        );
        assert_eq!(f.to_isdn("alice"), None);
        assert_eq!(f.to_isdn("+"), None);
    }

    #[test]
    fn round_trip_national() {
        let f = NumberFormat::default();
        let n = num(TypeOfNumber::National, "1632960000");
        assert_eq!(f.to_isdn(&f.to_sip_user(&n)), Some(n));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("999"), "999");
        assert_eq!(redact("02079460123"), "********123");
        assert_eq!(redact("+442079460123"), "+*********123");
    }
}
