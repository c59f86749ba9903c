//! Calls: where ISDN and SIP meet. Routing, cause and number mapping between
//! Q.931 and SIP, and call detail records.

pub mod cause_map;
pub mod cdr;
pub mod numbers;
pub mod routing;
