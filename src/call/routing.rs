//! Routing of calls from the exchange to a core peer group: ordered rules from
//! the site config (`[[route]]`), the first match wins.

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
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    /// The first rule matching the called number, and the calling number and
    /// span where the rule names them.
    pub fn route(&self, called: &str, calling: Option<&str>, span: u8) -> Option<RouteMatch<'_>> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| {
                pattern_matches(&r.called, called)
                    && r.calling
                        .as_deref()
                        .is_none_or(|p| calling.is_some_and(|c| pattern_matches(p, c)))
                    && r.span.is_none_or(|s| s == span)
            })
            .map(|(index, route)| RouteMatch { index, route })
    }

    /// Whether some rule could still match once more digits arrive (overlap
    /// receiving): used to decide between waiting and rejecting with cause 1.
    pub fn could_match_later(&self, prefix: &str, span: u8) -> bool {
        self.routes
            .iter()
            .any(|r| r.span.is_none_or(|s| s == span) && pattern_prefix_matches(&r.called, prefix))
    }
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
            called: called.into(),
            calling: calling.map(Into::into),
            span,
            peer_group: g.into(),
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
}
