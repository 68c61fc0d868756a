//! Errors a client sees, named as Kinesis names them.

/// An operating error returned to a client. The variant is the Kinesis error type; the
/// message says what was wrong. Nothing was changed when one of these is returned, except
/// `Internal`, whose outcome is unknown (the client may retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    ExpiredIterator(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    /// The request may or may not have taken effect (no leader in time, a node failed).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The Kinesis error type (`__type` on the wire).
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
            ApiError::ResourceInUse(_) => "ResourceInUseException",
            ApiError::InvalidArgument(_) => "InvalidArgumentException",
            ApiError::Validation(_) => "ValidationException",
            ApiError::ExpiredIterator(_) => "ExpiredIteratorException",
            ApiError::LimitExceeded(_) => "LimitExceededException",
            ApiError::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            ApiError::Internal(_) => "InternalFailure",
        }
    }

    pub fn message(&self) -> String {
        self.to_string()
    }

    /// A Coral-style validation message, as AWS words them.
    pub fn validation(value: &str, member: &str, constraint: &str) -> ApiError {
        ApiError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ))
    }
}
