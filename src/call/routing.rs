//! Routing of calls from the exchange to a core peer group: ordered rules from
//! the site config (`[[route]]`), the first match wins, each with its digit
//! limits ([`DigitLimits`]: the route's own, else the site's).
//!
//! Overlap receiving (Q.931 §5.1.3 network side, §5.2.4 user side): digits
//! come in SETUP and INFORMATION until Sending Complete, T302 expiry, or
//! the receiving side "determines that the called party number is
//! complete". [`Router::number_complete`] is that determination: the
//! collected number has reached its route's `max_digits`, or it matches a
//! route and no rule could match a longer number (`999` beside `101` and
//! `0207XXXXXXX` is complete at 3 digits; beside a catch-all `*` it is
//! not, unless its route says `max_digits = 3`).

use super::manager_config::DigitLimits;
use crate::config::{Route, pattern_matches};

/// The rule that matched, for the call log ("route 2: called 999 -> mcvp").
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch<'a> {
    pub index: usize,
    pub route: &'a Route,
}

/// Ordered routing rules.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    /// Per route (same index); missing entries use the default.
    limits: Vec<DigitLimits>,
}

impl Router {
    /// Rules with the default digit limits.
    pub fn new(routes: Vec<Route>) -> Router {
        Router::with_limits(routes, Vec::new())
    }

    /// Rules with their digit limits (same index as `routes`).
    pub fn with_limits(routes: Vec<Route>, limits: Vec<DigitLimits>) -> Router {
        Router { routes, limits }
    }

    /// The digit limits of route `index`.
    pub fn limits(&self, index: usize) -> DigitLimits {
        self.limits.get(index).copied().unwrap_or_default()
    }

    /// The first rule matching the called number, and the calling number and
    /// span where the rule names them.
    pub fn route(&self, called: &str, calling: Option<&str>, span: u8) -> Option<RouteMatch<'_>> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| pattern_matches(&r.called, called) && applies(r, calling, span))
            .map(|(index, route)| RouteMatch { index, route })
    }

    /// Overlap receiving: whether the digits collected so far are complete
    /// (see the module doc): they match a route with at least its
    /// `min_digits`, and reach its `max_digits` or cannot grow into a
    /// number another rule (or this one) would take. `false` when no route
    /// matches yet: digit collection goes on until Sending Complete or
    /// T302, as before.
    pub fn number_complete(&self, called: &str, calling: Option<&str>, span: u8) -> bool {
        let Some(m) = self.route(called, calling, span) else {
            return false;
        };
        let limits = self.limits(m.index);
        let n = called.len();
        if n < limits.min_digits {
            return false;
        }
        n >= limits.max_digits
            || !self
                .routes
                .iter()
                .any(|r| applies(r, calling, span) && pattern_matches_longer(&r.called, called))
    }

    /// Whether some rule could still match once more digits arrive (overlap
    /// receiving): used to decide between waiting and rejecting with cause 1.
    pub fn could_match_later(&self, prefix: &str, span: u8) -> bool {
        self.routes
            .iter()
            .any(|r| r.span.is_none_or(|s| s == span) && pattern_prefix_matches(&r.called, prefix))
    }
}

/// Whether the rule's calling-number and span conditions hold.
fn applies(r: &Route, calling: Option<&str>, span: u8) -> bool {
    r.calling
        .as_deref()
        .is_none_or(|p| calling.is_some_and(|c| pattern_matches(p, c)))
        && r.span.is_none_or(|s| s == span)
}

/// Whether the pattern matches some number longer than `number` that
/// starts with it.
fn pattern_matches_longer(pattern: &str, number: &str) -> bool {
    let longer = pattern.ends_with('*') || pattern.len() > number.len();
    longer && pattern_prefix_matches(pattern, number)
}

/// Whether `prefix` is the start of some number the pattern matches.
fn pattern_prefix_matches(pattern: &str, prefix: &str) -> bool {
    let (body, open) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let (p, n) = (body.as_bytes(), prefix.as_bytes());
    if !open && n.len() > p.len() {
        return false;
    }
    p.iter()
        .zip(n)
        .all(|(&pc, &nc)| (pc == b'X' && nc.is_ascii_digit()) || pc == nc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(called: &str, calling: Option<&str>, span: Option<u8>, g: &str) -> Route {
        Route {
            calling: calling.map(Into::into),
            span,
            ..Route::new(called, g)
        }
    }

    fn limits(min_digits: usize, max_digits: usize) -> DigitLimits {
        DigitLimits {
            min_digits,
            max_digits,
        }
    }

    #[test]
    fn first_match_wins_with_conditions() {
        let router = Router::new(vec![
            r("999", Some("0207*"), None, "london"),
            r("999", None, Some(2), "span2"),
            r("999", None, None, "mcvp"),
            r("*", None, None, "contact"),
        ]);
        assert_eq!(
            router
                .route("999", Some("02079460000"), 1)
                .unwrap()
                .route
                .peer_group,
            "london"
        );
        assert_eq!(
            router
                .route("999", Some("01632960000"), 2)
                .unwrap()
                .route
                .peer_group,
            "span2"
        );
        assert_eq!(router.route("999", None, 1).unwrap().index, 2);
        assert_eq!(
            router
                .route("01632960000", None, 1)
                .unwrap()
                .route
                .peer_group,
            "contact"
        );
        assert!(
            Router::new(vec![r("101", None, None, "x")])
                .route("999", None, 1)
                .is_none()
        );
    }

    #[test]
    fn overlap_prefixes() {
        let router = Router::new(vec![
            r("999", None, None, "a"),
            r("0207XXXXXXX", None, None, "b"),
        ]);
        assert!(router.could_match_later("99", 1));
        assert!(router.could_match_later("0207", 1));
        assert!(!router.could_match_later("9990", 1));
        assert!(!router.could_match_later("5", 1));
    }

    #[test]
    fn short_codes_are_complete_when_nothing_longer_can_match() {
        let router = Router::new(vec![
            r("999", None, None, "a"),
            r("112", None, None, "a"),
            r("101", None, None, "b"),
            r("0207XXXXXXX", None, None, "c"),
        ]);
        for n in ["999", "112", "101", "02079460000"] {
            assert!(router.number_complete(n, None, 1), "{n}");
        }
        for n in ["9", "99", "0207946000", "5"] {
            assert!(!router.number_complete(n, None, 1), "{n}");
        }
    }

    #[test]
    fn a_longer_rule_or_a_catch_all_keeps_collecting() {
        // `999` also starts numbers of the catch-all: not complete...
        let open = Router::new(vec![r("999", None, None, "a"), r("*", None, None, "b")]);
        assert!(!open.number_complete("999", None, 1));
        assert!(!open.number_complete("01632960000", None, 1));
        // ...unless the route says how long its numbers are.
        let said = Router::with_limits(open.routes.clone(), vec![limits(1, 3), limits(1, 11)]);
        assert!(said.number_complete("999", None, 1));
        assert!(!said.number_complete("0163296000", None, 1));
        assert!(said.number_complete("01632960000", None, 1));
        // A longer fixed-length rule after a short one.
        let both = Router::new(vec![r("123", None, None, "a"), r("1234", None, None, "b")]);
        assert!(!both.number_complete("123", None, 1));
        assert!(both.number_complete("1234", None, 1));
    }

    #[test]
    fn completeness_follows_the_rule_conditions_and_min_digits() {
        // The catch-all is only for span 2 and for callers in 0207.
        let router = Router::with_limits(
            vec![
                r("999", None, None, "a"),
                r("*", None, Some(2), "b"),
                r("9*", Some("0207*"), None, "c"),
                r("0*", None, None, "d"),
            ],
            vec![limits(1, 32), limits(1, 32), limits(1, 32), limits(11, 11)],
        );
        assert!(router.number_complete("999", Some("01632960000"), 1));
        assert!(router.number_complete("999", None, 1));
        assert!(!router.number_complete("999", None, 2));
        assert!(!router.number_complete("999", Some("02079460000"), 1));
        // Below the route's min_digits: never complete.
        assert!(!router.number_complete("0163296000", None, 1));
        assert!(router.number_complete("01632960000", None, 1));
        // No route matches yet: keep collecting.
        assert!(!router.number_complete("5", None, 1));
    }
}
