//! ISDN PRI signalling: Q.921 (LAPD) and Q.931 call control (ETSI EN 300 403).

pub mod cause;
pub mod dchannel;
pub mod port;
pub mod q921;
pub mod q931;
pub mod task;
pub mod timers;
