//! Operations: the systemd lifecycle, the supervisor and its watchdogs,
//! logging, metrics and health over HTTP, the admin socket, traces and NOC events.

pub mod admin;
pub mod board;
pub mod daemon;
pub mod dchannel;
pub mod events;
pub mod gateway;
pub mod http;
pub mod hwdog;
pub mod layer_metrics;
pub mod layers;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pcap;
pub mod sip;
pub mod status_view;
pub mod supervisor;
