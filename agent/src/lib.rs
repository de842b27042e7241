//! rollguard-agent (being built).
#![forbid(unsafe_code)]
