//! The one error type of the client library.

use std::error::Error as _;

use tonic::{Code, Status};

/// The gRPC metadata key under which a Riffle node puts the Kinesis error type of a failure.
pub const ERROR_TYPE_METADATA_KEY: &str = "riffle-error-type";

/// Why a call failed.
///
/// Errors the service answered with carry the Kinesis error type (`ResourceNotFoundException`,
/// `ValidationException`, …) read from the status; errors where no answer came back are
/// [`ClientError::Transport`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service rejected the request with a Kinesis error.
    #[error("{error_type}: {message}")]
    Service {
        /// The Kinesis error type, e.g. `ResourceNotFoundException`.
        error_type: String,
        /// The message after the error type.
        message: String,
        /// The gRPC status code it came with.
        code: Code,
    },
    /// A gRPC status without a Kinesis error type (from a proxy, or a node fault).
    #[error("gRPC status {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// No answer came back from `endpoint`: the connection could not be made, or it broke.
    #[error("transport error with {endpoint}: {message}")]
    Transport {
        /// The endpoint the call went to.
        endpoint: String,
        /// What the transport reported.
        message: String,
        /// True when the connection could not be established, so the request was never sent
        /// and retrying it cannot duplicate it.
        before_request: bool,
    },
    /// An endpoint string is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The client configuration is out of bounds.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// [`crate::Client::wait_for_stream_active`] ran out of attempts.
    #[error("stream {stream_name} is still {status} after {attempts} polls, not ACTIVE")]
    StreamNotActive {
        /// The stream polled.
        stream_name: String,
        /// The last status seen, e.g. `CREATING`.
        status: String,
        /// How many times it was polled.
        attempts: u32,
    },
    /// The service answered with something that breaks the API's contract.
    #[error("malformed response to {rpc}: {reason}")]
    MalformedResponse {
        /// The RPC that got the response.
        rpc: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

impl ClientError {
    /// Classifies a failed call's status; `endpoint` is where the call went.
    ///
    /// The Kinesis error type comes from the `riffle-error-type` metadata if present, else from
    /// a `SomethingException: ` prefix of the message; the prefix is removed from the message.
    /// An `Unavailable` status without an error type is a transport error.
    pub fn from_status(status: &Status, endpoint: &str) -> ClientError {
        let message = status.message();
        let error_type = status
            .metadata()
            .get(ERROR_TYPE_METADATA_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|error_type| !error_type.is_empty())
            .map(str::to_owned)
            .or_else(|| error_type_prefix(message).map(str::to_owned));
        if let Some(error_type) = error_type {
            let message = message
                .strip_prefix(error_type.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim_start)
                .unwrap_or(message)
                .to_owned();
            return ClientError::Service { error_type, message, code: status.code() };
        }
        // A connection dropped mid-call surfaces as `Unknown: transport error` with the tonic
        // transport error as its source: no answer came back, so it is a transport error too.
        let dropped_connection = status.code() == Code::Unknown && has_transport_source(status);
        if status.code() == Code::Unavailable || dropped_connection {
            return ClientError::Transport {
                endpoint: endpoint.to_owned(),
                message: with_causes(status),
                before_request: is_connect_failure(status),
            };
        }
        ClientError::Status { code: status.code(), message: message.to_owned() }
    }

    /// The Kinesis error type, e.g. `ResourceNotFoundException`, if the service sent one.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            ClientError::Service { error_type, .. } => Some(error_type),
            _ => None,
        }
    }

    /// True when no answer came back (see [`ClientError::Transport`]).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    /// True when the request is known never to have been sent.
    pub(crate) fn is_before_request(&self) -> bool {
        matches!(self, ClientError::Transport { before_request: true, .. })
    }
}

/// `ResourceNotFoundException` from `"ResourceNotFoundException: Stream s not found."`.
fn error_type_prefix(message: &str) -> Option<&str> {
    let (prefix, _) = message.split_once(':')?;
    let is_type = prefix.len() > "Exception".len()
        && prefix.ends_with("Exception")
        && prefix.chars().all(|c| c.is_ascii_alphanumeric());
    is_type.then_some(prefix)
}

/// The status message followed by its source chain ("tcp connect error: Connection refused"),
/// skipping causes whose text the message already holds.
fn with_causes(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = status.source();
    while let Some(error) = source {
        let cause = error.to_string();
        // tonic's transport::Error only says "transport error"; its own source says what.
        let generic = error.downcast_ref::<tonic::transport::Error>().is_some();
        if !generic && !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = error.source();
    }
    text
}

/// Whether the status carries a tonic transport error (or says it is one).
fn has_transport_source(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.downcast_ref::<tonic::transport::Error>().is_some() {
            return true;
        }
        source = error.source();
    }
    status.message() == "transport error"
}

/// tonic keeps the transport error as the status' source; a `ConnectError` in that chain means
/// no connection existed, so nothing was sent.
fn is_connect_failure(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn error_type_from_metadata_and_message_prefix() {
        let mut status =
            Status::new(Code::NotFound, "ResourceNotFoundException: Stream s under account 000000000000 not found.");
        status.metadata_mut().insert(ERROR_TYPE_METADATA_KEY, MetadataValue::from_static("ResourceNotFoundException"));

        let error = ClientError::from_status(&status, "http://a:1");

        assert_eq!(error.error_type(), Some("ResourceNotFoundException"));
        assert!(!error.is_transport());
        match &error {
            ClientError::Service { message, code, .. } => {
                assert_eq!(message, "Stream s under account 000000000000 not found.");
                assert_eq!(*code, Code::NotFound);
            }
            other => panic!("expected a service error, got {other:?}"),
        }
        assert_eq!(error.to_string(), "ResourceNotFoundException: Stream s under account 000000000000 not found.");
    }

    #[test]
    fn error_type_from_message_prefix_alone() {
        let status = Status::invalid_argument("ValidationException: shard count 0 is below 1");

        let error = ClientError::from_status(&status, "http://a:1");

        assert_eq!(error.error_type(), Some("ValidationException"));
        assert_eq!(error.to_string(), "ValidationException: shard count 0 is below 1");
    }

    #[test]
    fn metadata_type_without_message_prefix_keeps_message() {
        let mut status = Status::resource_exhausted("Rate exceeded for shard shardId-000000000001");
        status
            .metadata_mut()
            .insert(ERROR_TYPE_METADATA_KEY, MetadataValue::from_static("ProvisionedThroughputExceededException"));

        let error = ClientError::from_status(&status, "http://a:1");

        assert_eq!(error.error_type(), Some("ProvisionedThroughputExceededException"));
        assert_eq!(
            error.to_string(),
            "ProvisionedThroughputExceededException: Rate exceeded for shard shardId-000000000001"
        );
    }

    #[test]
    fn untyped_statuses() {
        let unavailable = ClientError::from_status(&Status::unavailable("connection reset"), "http://a:1");
        assert!(unavailable.is_transport());
        assert!(!unavailable.is_before_request());
        assert_eq!(unavailable.error_type(), None);

        let internal = ClientError::from_status(&Status::internal("Something went wrong: details"), "http://a:1");
        assert!(!internal.is_transport());
        assert_eq!(internal.error_type(), None);
    }

    #[test]
    fn connect_error_in_source_chain_means_never_sent() {
        let status = Status::from_error(Box::new(tonic::ConnectError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )));

        let error = ClientError::from_status(&status, "http://a:1");

        assert!(error.is_transport());
        assert!(error.is_before_request());
    }
}
