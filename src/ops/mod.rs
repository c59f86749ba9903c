//! Operations: the systemd lifecycle, the supervisor and its watchdogs, logging.

pub mod daemon;
pub mod hwdog;
pub mod logging;
pub mod notify;
pub mod supervisor;
