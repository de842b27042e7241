//! Errors of converting wire messages into domain types.

/// A wire message that does not make a valid domain value.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A required field was not set.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field was set to a value that is not allowed.
    #[error("invalid field `{field}`: {message}")]
    Invalid {
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl WireError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        WireError::Invalid {
            field,
            message: message.into(),
        }
    }
}
