//! Reading JSON 1.1 request bodies member by member, with AWS's type errors.
//!
//! AWS checks every member's JSON type first (a wrong type is a `SerializationException` whose
//! text names the Java types Coral tried to convert) and only then the constraints (missing
//! members, lengths, patterns: `ValidationException`). Operations therefore read all their
//! members through [`Members`] before calling [`required`]. Members the operation does not know
//! are ignored and a JSON `null` counts as absent, as on AWS.

use base64::Engine;
use serde_json::{Map, Value};

use super::error::KinesisError;

/// The members of one JSON structure, and where it sits in the request (`records.3.member`),
/// for validation messages.
#[derive(Debug, Clone, Copy)]
pub struct Members<'a> {
    object: &'a Map<String, Value>,
    path: &'a str,
}

/// Parses a request body, which must be a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, KinesisError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(KinesisError::Serialization(Some("Start of structure or map expected".into()))),
        Err(error) => Err(KinesisError::Serialization(Some(format!("The request body is not valid JSON: {error}")))),
    }
}

fn serialization(message: impl Into<String>) -> KinesisError {
    KinesisError::Serialization(Some(message.into()))
}

/// The error for a structure or list where a scalar was expected.
/// One string element of a map or list member, with AWS's wording for other JSON types.
fn string_member(value: &Value) -> Result<String, KinesisError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Bool(_) => Err(serialization("class java.lang.Boolean can not be converted to an String")),
        Value::Number(_) => Err(serialization("class java.math.BigDecimal can not be converted to an String")),
        other => Err(not_scalar(other)),
    }
}

fn not_scalar(value: &Value) -> KinesisError {
    match value {
        Value::Array(_) => serialization("Start of list found where not expected"),
        _ => serialization("Start of structure or map found where not expected."),
    }
}

/// The value a required member must have; absent gives AWS's "must not be null".
pub fn required<T>(value: Option<T>, member_path: &str) -> Result<T, KinesisError> {
    value.ok_or_else(|| KinesisError::missing(member_path))
}

/// `ShardCount` → `shardCount`: Coral names members in messages with a lower-case first letter.
fn lower_first(name: &str) -> String {
    let mut characters = name.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

impl<'a> Members<'a> {
    /// The top-level members of a request.
    pub fn top(object: &'a Map<String, Value>) -> Members<'a> {
        Members { object, path: "" }
    }

    /// How validation messages name member `name` of this structure: `records.1.member.data`.
    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            lower_first(name)
        } else {
            format!("{}.{}", self.path, lower_first(name))
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Bool(_)) => Err(serialization("class java.lang.Boolean can not be converted to an String")),
            Some(Value::Number(_)) => {
                Err(serialization("class java.math.BigDecimal can not be converted to an String"))
            }
            Some(other) => Err(not_scalar(other)),
        }
    }

    /// An integer member. Fractions are dropped, as Coral does; values beyond `i64` saturate.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => Ok(Some(match number.as_i64() {
                Some(integer) => integer,
                None => number.as_f64().unwrap_or(0.0).floor() as i64,
            })),
            Some(Value::Bool(_)) => Err(serialization("class java.lang.Boolean can not be converted to an Integer")),
            Some(Value::String(_)) => Err(serialization("class java.lang.String can not be converted to an Integer")),
            Some(other) => Err(not_scalar(other)),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(Value::Number(_)) => {
                Err(serialization("class java.math.BigDecimal can not be converted to an Boolean"))
            }
            Some(Value::String(text)) => {
                Err(serialization(format!("'{}' can not be converted to an Boolean", text.to_uppercase())))
            }
            Some(other) => Err(not_scalar(other)),
        }
    }

    /// A blob: standard base64 with padding, as the JSON protocol sends blobs.
    pub fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, KinesisError> {
        let text = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(text)) => text,
            Some(Value::Bool(_)) => {
                return Err(serialization("class java.lang.Boolean can not be converted to a Blob"))
            }
            Some(Value::Number(_)) => {
                return Err(serialization("class java.math.BigDecimal can not be converted to a Blob"))
            }
            Some(other) => return Err(not_scalar(other)),
        };
        let refuse = |reason: String| serialization(format!("'{text}' can not be converted to a Blob: {reason}"));
        if text.len() % 4 != 0 {
            return Err(refuse(format!(
                "Base64 encoded length is expected a multiple of 4 bytes but found: {}",
                text.len()
            )));
        }
        if let Some(character) =
            text.chars().find(|character| !(character.is_ascii_alphanumeric() || matches!(character, '+' | '/' | '=')))
        {
            return Err(refuse(format!("Invalid Base64 character: '{character}'")));
        }
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Some)
            .map_err(|_| refuse("Invalid last non-pad Base64 character dectected".to_string()))
    }

    /// A timestamp: epoch seconds as a JSON number (fractions are milliseconds), returned in
    /// milliseconds.
    pub fn timestamp_ms(&self, name: &str) -> Result<Option<i64>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => {
                let seconds = number.as_f64().unwrap_or(0.0);
                Ok(Some((seconds * 1000.0).round() as i64))
            }
            Some(Value::Bool(_)) => Err(serialization("class java.lang.Boolean can not be converted to a Timestamp")),
            Some(Value::String(_)) => Err(serialization("class java.lang.String can not be converted to a Timestamp")),
            Some(other) => Err(not_scalar(other)),
        }
    }

    /// A nested structure, named in messages as `<path>.<member>`.
    pub fn structure(&self, name: &str, path: &'a str) -> Result<Option<Members<'a>>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(Members { object, path })),
            Some(Value::Array(_)) => Err(serialization("Start of list found where not expected")),
            Some(_) => Err(serialization("Expected null")),
        }
    }

    /// A map of strings to strings (`Tags`), in the request's order.
    pub fn string_map(&self, name: &str) -> Result<Option<Vec<(String, String)>>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(object)) => object
                .iter()
                .map(|(key, value)| match value {
                    Value::Null => Ok((key.clone(), String::new())),
                    other => string_member(other).map(|text| (key.clone(), text)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::Array(_)) => Err(serialization("Start of list found where not expected")),
            Some(_) => Err(serialization("Expected map or null")),
        }
    }

    /// A list of strings (`TagKeys`, `ShardLevelMetrics`).
    pub fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(elements)) => elements
                .iter()
                .filter(|element| !element.is_null())
                .map(string_member)
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::Object(_)) => Err(serialization("Start of structure or map found where not expected.")),
            Some(_) => Err(serialization("Expected list or null")),
        }
    }

    /// A list of structures, returned as the raw elements; read each with [`Members::element`].
    pub fn structure_list(&self, name: &str) -> Result<Option<&'a [Value]>, KinesisError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(elements)) => {
                for element in elements {
                    match element {
                        Value::Object(_) | Value::Null => {}
                        Value::Array(_) => return Err(serialization("Start of list found where not expected")),
                        _ => return Err(serialization("Expected null")),
                    }
                }
                Ok(Some(elements))
            }
            Some(Value::Object(_)) => Err(serialization("Start of structure or map found where not expected.")),
            Some(_) => Err(serialization("Expected list or null")),
        }
    }

    /// Element `element` of a list from [`Members::structure_list`] (checked there to be a
    /// structure or null; a null element reads as an empty structure), at `path`.
    pub fn element(element: &'a Value, path: &'a str) -> Members<'a> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match element {
            Value::Object(object) => Members { object, path },
            _ => Members { object: EMPTY.get_or_init(Map::new), path },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn message(error: KinesisError) -> String {
        match error {
            KinesisError::Serialization(Some(message)) => message,
            other => panic!("not a serialization error with a message: {other:?}"),
        }
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_body(br#"{"StreamName":"s"}"#).is_ok());
        for body in [&b"[]"[..], b"1", b"\"s\"", b"{", b"not json", b""] {
            let error = parse_body(body).expect_err("refused");
            assert_eq!(error.error_type(), "SerializationException", "{body:?}");
        }
    }

    #[test]
    fn scalars_of_the_wrong_json_type_are_serialization_errors_worded_as_coral() {
        let body = object(json!({"S": true, "N": 5, "L": [1], "M": {"a": 1}, "I": "7", "B": 1}));
        let members = Members::top(&body);
        assert_eq!(
            message(members.string("S").unwrap_err()),
            "class java.lang.Boolean can not be converted to an String"
        );
        assert_eq!(
            message(members.string("N").unwrap_err()),
            "class java.math.BigDecimal can not be converted to an String"
        );
        assert_eq!(message(members.string("L").unwrap_err()), "Start of list found where not expected");
        assert_eq!(message(members.string("M").unwrap_err()), "Start of structure or map found where not expected.");
        assert_eq!(
            message(members.integer("I").unwrap_err()),
            "class java.lang.String can not be converted to an Integer"
        );
        assert_eq!(
            message(members.blob("B").unwrap_err()),
            "class java.math.BigDecimal can not be converted to a Blob"
        );
        assert_eq!(message(members.structure_list("N").unwrap_err()), "Expected list or null");
        assert_eq!(message(members.structure("N", "x").unwrap_err()), "Expected null");
    }

    #[test]
    fn null_and_absent_members_read_as_none_and_unknown_members_are_ignored() {
        let body = object(json!({"StreamName": null, "Unknown": {"deep": [1, 2]}}));
        let members = Members::top(&body);
        assert_eq!(members.string("StreamName").unwrap(), None);
        assert_eq!(members.integer("Limit").unwrap(), None);
        let error = required(members.string("StreamName").unwrap(), &members.path_of("StreamName")).unwrap_err();
        assert_eq!(error.error_type(), "ValidationException");
        assert_eq!(
            error.body()["message"],
            "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn blobs_are_padded_standard_base64() {
        let body =
            object(json!({"Ok": "aGVsbG8=", "Empty": "", "Short": "aGVsbG8", "Bad": "aGV$bG8=", "Bits": "aGVsbG9="}));
        let members = Members::top(&body);
        assert_eq!(members.blob("Ok").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(members.blob("Empty").unwrap(), Some(Vec::new()));
        assert_eq!(
            message(members.blob("Short").unwrap_err()),
            "'aGVsbG8' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 7"
        );
        assert_eq!(
            message(members.blob("Bad").unwrap_err()),
            "'aGV$bG8=' can not be converted to a Blob: Invalid Base64 character: '$'"
        );
        assert_eq!(
            message(members.blob("Bits").unwrap_err()),
            "'aGVsbG9=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"
        );
    }

    #[test]
    fn timestamps_are_epoch_seconds_numbers_and_integers_drop_fractions() {
        let body = object(json!({"T": 1795360321.597, "W": 1795360321, "S": "2026-11-23", "L": 25.9, "Big": 1e30}));
        let members = Members::top(&body);
        assert_eq!(members.timestamp_ms("T").unwrap(), Some(1_795_360_321_597));
        assert_eq!(members.timestamp_ms("W").unwrap(), Some(1_795_360_321_000));
        assert_eq!(members.timestamp_ms("S").unwrap_err().error_type(), "SerializationException");
        assert_eq!(members.integer("L").unwrap(), Some(25));
        assert_eq!(members.integer("Big").unwrap(), Some(i64::MAX));
    }

    #[test]
    fn string_maps_and_lists_check_their_element_types() {
        let body =
            object(json!({"Tags": {"a": "1", "b": ""}, "Keys": ["a", "b"], "BadMap": {"a": 1}, "BadList": [true]}));
        let members = Members::top(&body);
        assert_eq!(
            members.string_map("Tags").unwrap(),
            Some(vec![("a".to_string(), "1".to_string()), ("b".to_string(), String::new())])
        );
        assert_eq!(members.string_list("Keys").unwrap(), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(members.string_map("BadMap").unwrap_err().error_type(), "SerializationException");
        assert_eq!(members.string_list("BadList").unwrap_err().error_type(), "SerializationException");
        assert_eq!(members.string_list("Tags").unwrap_err().error_type(), "SerializationException");
        assert_eq!(members.string_map("Keys").unwrap_err().error_type(), "SerializationException");
        assert_eq!(members.string_map("Absent").unwrap(), None);
    }

    #[test]
    fn nested_members_are_named_by_their_path() {
        let body = object(json!({"Records": [{"Data": "AA=="}, null]}));
        let members = Members::top(&body);
        let records = members.structure_list("Records").unwrap().unwrap();
        let first = Members::element(&records[0], "records.1.member");
        assert_eq!(first.path_of("PartitionKey"), "records.1.member.partitionKey");
        assert_eq!(first.blob("Data").unwrap(), Some(vec![0]));
        let second = Members::element(&records[1], "records.2.member");
        assert_eq!(second.string("PartitionKey").unwrap(), None);
    }
}
