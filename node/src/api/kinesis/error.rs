//! Errors of the Kinesis HTTP API and their bodies, as AWS sends them.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::ApiError;

/// An error answered to a Kinesis client: an [`ApiError`] from the service, or one the JSON 1.1
/// protocol itself raises before any operation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KinesisError {
    /// The body is not a JSON object, or a member has the wrong JSON type. AWS writes this
    /// error's text under `Message` (capital M), unlike every other error.
    Serialization(Option<String>),
    /// The `X-Amz-Target` header names no known operation. AWS sends no message.
    UnknownOperation,
    /// The request carries no credentials this node accepts.
    MissingAuthenticationToken,
    /// The request is signed by an access key this node does not know (or carries a session
    /// token, which this node never issues).
    UnrecognizedClient,
    /// The signature does not verify, its date is too far from the node's clock, or its scope
    /// names another region or service.
    InvalidSignature(String),
    /// The `Authorization` header lacks a part (the message names it).
    IncompleteSignature(String),
    /// The access key may not call this operation on this stream.
    AccessDenied(String),
    Api(ApiError),
}

impl From<ApiError> for KinesisError {
    fn from(error: ApiError) -> KinesisError {
        KinesisError::Api(error)
    }
}

impl KinesisError {
    /// A member is missing: `Value null at '<member>' failed to satisfy constraint: Member must
    /// not be null`, as AWS words it (no quotes around `null`).
    pub fn missing(member: &str) -> KinesisError {
        KinesisError::Api(ApiError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        )))
    }

    /// The `__type` on the wire.
    pub fn error_type(&self) -> &'static str {
        match self {
            KinesisError::Serialization(_) => "SerializationException",
            KinesisError::UnknownOperation => "UnknownOperationException",
            KinesisError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            KinesisError::UnrecognizedClient => "UnrecognizedClientException",
            KinesisError::InvalidSignature(_) => "InvalidSignatureException",
            KinesisError::IncompleteSignature(_) => "IncompleteSignatureException",
            KinesisError::AccessDenied(_) => "AccessDeniedException",
            KinesisError::Api(error) => error.error_type(),
        }
    }

    /// 500 for an internal failure (the client may retry), 400 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            KinesisError::Api(ApiError::Internal(_)) => 500,
            _ => 400,
        }
    }

    /// The text under `message`, for every error but `SerializationException`.
    fn message(&self) -> Option<String> {
        match self {
            KinesisError::Serialization(_) | KinesisError::UnknownOperation => None,
            KinesisError::MissingAuthenticationToken => Some("Missing Authentication Token".to_string()),
            KinesisError::UnrecognizedClient => {
                Some("The security token included in the request is invalid.".to_string())
            }
            KinesisError::InvalidSignature(message)
            | KinesisError::IncompleteSignature(message)
            | KinesisError::AccessDenied(message) => Some(message.clone()),
            KinesisError::Api(error) => Some(error.message()),
        }
    }

    /// The JSON body bytes, `__type` first as AWS writes it.
    pub fn body_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            #[serde(rename = "__type")]
            error_type: &'a str,
            #[serde(rename = "message", skip_serializing_if = "Option::is_none")]
            message: Option<String>,
            #[serde(rename = "Message", skip_serializing_if = "Option::is_none")]
            serialization_message: Option<&'a str>,
        }
        let serialization_message = match self {
            KinesisError::Serialization(message) => message.as_deref(),
            _ => None,
        };
        let message = self.message();
        let body = ErrorBody { error_type: self.error_type(), message, serialization_message };
        serde_json::to_vec(&body).expect("an error body holds only strings")
    }

    /// The JSON body: `{"__type": ..., "message": ...}`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("__type".to_string(), json!(self.error_type()));
        if let KinesisError::Serialization(Some(message)) = self {
            body.insert("Message".to_string(), json!(message));
        }
        if let Some(message) = self.message() {
            body.insert("message".to_string(), json!(message));
        }
        Value::Object(body)
    }
}

/// The XML-ish body AWS answers a request that is not a JSON 1.1 call at all (a GET, or a POST
/// with neither a known content type nor a target), always with HTTP 403.
pub fn access_denied_body() -> &'static str {
    "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_type_and_the_message_member_aws_uses() {
        let not_found =
            KinesisError::from(ApiError::ResourceNotFound("Stream s under account 000000000000 not found.".into()));
        assert_eq!(
            not_found.body(),
            json!({"__type": "ResourceNotFoundException", "message": "Stream s under account 000000000000 not found."})
        );
        assert_eq!(not_found.status(), 400);

        let serialization =
            KinesisError::Serialization(Some("class java.lang.Boolean can not be converted to an String".into()));
        assert_eq!(
            serialization.body(),
            json!({"__type": "SerializationException", "Message": "class java.lang.Boolean can not be converted to an String"})
        );

        assert_eq!(KinesisError::UnknownOperation.body(), json!({"__type": "UnknownOperationException"}));
        assert_eq!(
            String::from_utf8(serialization.body_bytes()).expect("utf-8"),
            r#"{"__type":"SerializationException","Message":"class java.lang.Boolean can not be converted to an String"}"#
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&not_found.body_bytes()).expect("json"),
            not_found.body(),
            "the bytes and the value agree"
        );
        assert_eq!(
            KinesisError::MissingAuthenticationToken.body(),
            json!({"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"})
        );

        let internal = KinesisError::from(ApiError::Internal("no leader".into()));
        assert_eq!(internal.status(), 500);
        assert_eq!(internal.body(), json!({"__type": "InternalFailure", "message": "no leader"}));
    }

    #[test]
    fn a_missing_member_is_a_coral_validation_error() {
        assert_eq!(
            KinesisError::missing("records.2.member.partitionKey").body(),
            json!({
                "__type": "ValidationException",
                "message": "1 validation error detected: Value null at 'records.2.member.partitionKey' failed to satisfy constraint: Member must not be null"
            })
        );
    }
}
