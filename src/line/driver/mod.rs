//! Line drivers: how E1 octets and D-channel frames reach the media thread.

pub mod dahdi;
pub mod pair;
pub mod satop;
pub mod serial;
pub mod timing;
