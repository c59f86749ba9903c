//! ISDN PRI signalling: Q.921 (LAPD) and Q.931 call control (ETSI EN 300 403).
//!
//! Sans-IO cores: [`q921`] (LAPD), [`q931`] (codec, call control, restart),
//! [`timers`] (the per-span timer table), joined per span by
//! [`dchannel::DChannel`]. The control plane runs each span's stack in a
//! [`task`] (tokio) over a [`port::FramePort`] (in-memory pair, DAHDI
//! D-channel fd; the raw drivers' frame rings plug in the same way); the
//! call module drives it with [`task::DChannelHandle`] and reads
//! [`task::SpanEvent`]s and the [`task::DChannelStatus`] watch.

pub mod cause;
pub mod dchannel;
pub mod port;
pub mod q921;
pub mod q931;
pub mod task;
pub mod timers;
