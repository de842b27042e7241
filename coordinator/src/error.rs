//! The coordinator's error type and its mapping to gRPC status codes.

use rollguard_proto::WireError;

/// Everything that can go wrong serving a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded store failed; the write did not happen.
    #[error("store failure: {0}")]
    Store(String),
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
    #[error("server failure: {0}")]
    Server(String),
    /// The coordinator is stopping.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<redb::Error> for Error {
    fn from(err: redb::Error) -> Self {
        Error::Store(err.to_string())
    }
}

macro_rules! store_error_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Error::Store(err.to_string())
            }
        }
    )*};
}
store_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::Wire(_) | Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::ShuttingDown | Error::StoreClosed => tonic::Status::unavailable(message),
            Error::Store(_) | Error::Server(_) => tonic::Status::internal(message),
        }
    }
}
