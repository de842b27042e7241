//! The tonic services: the agent link and the control API. Each holds the
//! handles it uses, given by `server.rs`, and converts at the wire's edge.

pub(crate) mod agent;
pub(crate) mod control;

#[cfg(test)]
mod tests;
