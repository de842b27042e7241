//! The coordinator's error type and its mapping to gRPC status codes.

use rollguard_proto::WireError;

/// The source of a store or server failure, kept whole for the error chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong serving a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded store failed; the write did not happen.
    #[error("store failure: {context}")]
    Store {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The store's writer is gone (the coordinator is stopping).
    #[error("the store is closed")]
    StoreClosed,
    /// A peer sent something malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A request that is well-formed but not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server could not start or stopped with an error.
    #[error("server failure: {context}")]
    Server {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The coordinator is stopping.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
}

impl Error {
    /// A store failure while doing `context`, caused by `source`.
    pub(crate) fn store(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Store {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A server failure while doing `context`, caused by `source`.
    pub(crate) fn server(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Server {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! store_error_from {
    ($($ty:ty => $context:literal),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Error::store($context, err)
            }
        }
    )*};
}
store_error_from!(
    redb::Error => "redb",
    redb::DatabaseError => "opening the database",
    redb::TransactionError => "starting a transaction",
    redb::TableError => "opening a table",
    redb::StorageError => "reading or writing",
    redb::CommitError => "committing",
    serde_json::Error => "encoding or decoding a record",
);

/// The error and each of its sources, `: `-separated (as anyhow's `{:#}`).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = chain(&err);
        match err {
            Error::Wire(_) | Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::ShuttingDown | Error::StoreClosed => tonic::Status::unavailable(message),
            Error::Store { .. } | Error::Server { .. } => tonic::Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_keeps_its_source_in_the_status() {
        let io = std::io::Error::other("disk full");
        let err = Error::store("committing", io);
        assert!(std::error::Error::source(&err).is_some());
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "store failure: committing: disk full");
    }

    #[test]
    fn each_kind_maps_to_its_code() {
        let cases = [
            (
                Error::InvalidArgument("x".into()),
                tonic::Code::InvalidArgument,
            ),
            (Error::NotFound("x".into()), tonic::Code::NotFound),
            (
                Error::FailedPrecondition("x".into()),
                tonic::Code::FailedPrecondition,
            ),
            (Error::StoreClosed, tonic::Code::Unavailable),
            (Error::ShuttingDown, tonic::Code::Unavailable),
            (
                Error::server("starting", std::io::Error::other("x")),
                tonic::Code::Internal,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }
}
