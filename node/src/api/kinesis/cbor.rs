//! The CBOR variant of the protocol (`Content-Type: application/x-amz-cbor-1.1`), what the AWS
//! Java SDKs (v1 and v2) send by default. It carries the same members as JSON 1.1; only the
//! encoding differs:
//!
//! - blobs are CBOR byte strings, not base64 text;
//! - timestamps are CBOR tag 1 around epoch **milliseconds** (an integer), as the Java SDKs
//!   write and read them (`SdkCborGenerator` writes `Instant.toEpochMilli()`), not the seconds
//!   RFC 8949 specifies.
//!
//! Boundaries: operations never see CBOR. A request body is turned into the JSON value the
//! JSON path parses into (byte strings become base64 text, tagged milliseconds become seconds),
//! and a JSON answer (success or error) is turned into CBOR on the way out. The protocol has no
//! schema on the wire, so members are recognised by name: `Data` is the only blob member of
//! Kinesis requests and records, and every timestamp member's name ends in `Timestamp`.

use base64::Engine;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value};

use super::error::KinesisError;

/// CBOR tag 1: an epoch-based date (milliseconds, as the AWS Java SDKs use it).
const TAG_EPOCH: u64 = 1;
/// The member every Kinesis blob is carried in.
const BLOB_MEMBER: &str = "Data";

fn serialization(message: impl Into<String>) -> KinesisError {
    KinesisError::Serialization(Some(message.into()))
}

fn is_timestamp_member(name: &str) -> bool {
    name.ends_with("Timestamp")
}

/// Parses a CBOR request body, which must be one CBOR map with text keys, into the value the
/// JSON path would have parsed.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, KinesisError> {
    let mut reader = body;
    let value: Cbor = ciborium::de::from_reader(&mut reader)
        .map_err(|error| serialization(format!("The request body is not valid CBOR: {error}")))?;
    if !reader.is_empty() {
        return Err(serialization(format!("The request body has {} bytes after its CBOR value", reader.len())));
    }
    match value {
        Cbor::Map(_) => match to_json(value, None)? {
            Value::Object(object) => Ok(object),
            _ => Err(serialization("Start of structure or map expected")),
        },
        _ => Err(serialization("Start of structure or map expected")),
    }
}

fn integer(value: Integer) -> Value {
    let wide = i128::from(value);
    if let Ok(small) = i64::try_from(wide) {
        Value::from(small)
    } else if let Ok(unsigned) = u64::try_from(wide) {
        Value::from(unsigned)
    } else {
        Number::from_f64(wide as f64).map_or(Value::Null, Value::Number)
    }
}

fn float(value: f64) -> Result<Value, KinesisError> {
    Number::from_f64(value).map(Value::Number).ok_or_else(|| serialization(format!("{value} is not a number")))
}

/// One CBOR value as JSON; `member` names the map member it is the value of.
fn to_json(value: Cbor, member: Option<&str>) -> Result<Value, KinesisError> {
    Ok(match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(flag) => Value::Bool(flag),
        Cbor::Integer(number) => integer(number),
        Cbor::Float(number) => float(number)?,
        Cbor::Text(text) if member == Some(BLOB_MEMBER) => {
            return Err(serialization(format!(
                "'{text}' can not be converted to a Blob: CBOR blobs must be byte strings"
            )))
        }
        Cbor::Text(text) => Value::String(text),
        Cbor::Bytes(bytes) if member == Some(BLOB_MEMBER) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Cbor::Bytes(_) => return Err(serialization("class [B can not be converted to an String")),
        Cbor::Tag(TAG_EPOCH, inner) => match *inner {
            Cbor::Integer(milliseconds) => float(i128::from(milliseconds) as f64 / 1000.0)?,
            Cbor::Float(milliseconds) => float(milliseconds / 1000.0)?,
            _ => return Err(serialization("CBOR tag 1 (epoch time) must hold a number")),
        },
        // Other tags (bignums and the like) are not part of the protocol: read the tagged value.
        Cbor::Tag(_, inner) => to_json(*inner, member)?,
        Cbor::Array(elements) => {
            Value::Array(elements.into_iter().map(|element| to_json(element, None)).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err(serialization("CBOR map keys must be text strings"));
                };
                let value = to_json(value, Some(&key))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        _ => return Err(serialization("Unsupported CBOR value")),
    })
}

/// Re-encodes a JSON answer body as CBOR: `Data` members as byte strings, `...Timestamp`
/// members as tag 1 around epoch milliseconds. An empty body (a void operation) stays empty.
pub fn from_json_body(json: &[u8]) -> Vec<u8> {
    if json.is_empty() {
        return Vec::new();
    }
    let value = match serde_json::from_slice::<Value>(json) {
        Ok(value) => from_json(value, None),
        // Answers are always JSON this server wrote; anything else is carried as text.
        Err(_) => Cbor::Text(String::from_utf8_lossy(json).into_owned()),
    };
    let mut out = Vec::with_capacity(json.len());
    ciborium::ser::into_writer(&value, &mut out).expect("writing CBOR to memory cannot fail");
    out
}

fn from_json(value: Value, member: Option<&str>) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(flag) => Cbor::Bool(flag),
        Value::Number(number) if member.is_some_and(is_timestamp_member) => {
            let milliseconds = (number.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            Cbor::Tag(TAG_EPOCH, Box::new(Cbor::Integer(milliseconds.into())))
        }
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(signed), _) => Cbor::Integer(signed.into()),
            (None, Some(unsigned)) => Cbor::Integer(unsigned.into()),
            _ => Cbor::Float(number.as_f64().unwrap_or(0.0)),
        },
        Value::String(text) if member == Some(BLOB_MEMBER) => {
            match base64::engine::general_purpose::STANDARD.decode(&text) {
                Ok(bytes) => Cbor::Bytes(bytes),
                Err(_) => Cbor::Text(text),
            }
        }
        Value::String(text) => Cbor::Text(text),
        Value::Array(elements) => Cbor::Array(elements.into_iter().map(|element| from_json(element, None)).collect()),
        Value::Object(object) => Cbor::Map(
            object
                .into_iter()
                .map(|(key, value)| {
                    let value = from_json(value, Some(&key));
                    (Cbor::Text(key), value)
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cbor(value: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out).expect("encoded");
        out
    }

    fn decoded(bytes: &[u8]) -> Cbor {
        ciborium::de::from_reader(bytes).expect("decoded")
    }

    fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
        Cbor::Map(entries.into_iter().map(|(key, value)| (Cbor::Text(key.to_string()), value)).collect())
    }

    fn message(error: KinesisError) -> String {
        match error {
            KinesisError::Serialization(Some(message)) => message,
            other => panic!("not a serialization error with a message: {other:?}"),
        }
    }

    #[test]
    fn a_java_sdk_request_reads_as_the_json_one() {
        let body = cbor(&map(vec![
            ("StreamName", Cbor::Text("s".into())),
            ("Data", Cbor::Bytes(b"hello".to_vec())),
            ("Timestamp", Cbor::Tag(1, Box::new(Cbor::Integer(1_787_036_486_712i64.into())))),
            ("Limit", Cbor::Integer(25.into())),
            ("Records", Cbor::Array(vec![map(vec![("Data", Cbor::Bytes(vec![0, 255]))])])),
            ("Flag", Cbor::Bool(true)),
            ("Absent", Cbor::Null),
        ]));
        let members = parse_body(&body).expect("parsed");
        assert_eq!(
            Value::Object(members.clone()),
            json!({"StreamName": "s", "Data": "aGVsbG8=", "Timestamp": 1_787_036_486.712, "Limit": 25,
                   "Records": [{"Data": "AP8="}], "Flag": true, "Absent": null})
        );
        let top = super::super::request::Members::top(&members);
        assert_eq!(top.blob("Data").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(top.timestamp_ms("Timestamp").unwrap(), Some(1_787_036_486_712));
    }

    #[test]
    fn malformed_cbor_bodies_are_serialization_errors() {
        for body in [&b"\x01"[..], b"\x80", b"\xbf", b"\xa1\x01\x02", b"\xa0\x00", b"not cbor"] {
            assert_eq!(parse_body(body).expect_err("refused").error_type(), "SerializationException", "{body:?}");
        }
        let text_blob = cbor(&map(vec![("Data", Cbor::Text("aGVsbG8=".into()))]));
        assert!(message(parse_body(&text_blob).unwrap_err()).contains("byte strings"));
        let bytes_name = cbor(&map(vec![("StreamName", Cbor::Bytes(b"s".to_vec()))]));
        assert_eq!(message(parse_body(&bytes_name).unwrap_err()), "class [B can not be converted to an String");
        assert!(parse_body(b"\xbf\xff").expect("an empty indefinite map").is_empty());
    }

    #[test]
    fn answers_carry_blobs_as_bytes_and_timestamps_as_tagged_milliseconds() {
        let json = br#"{"Records":[{"Data":"aGVsbG8=","ApproximateArrivalTimestamp":1795360321.597,"SequenceNumber":"1"}],"MillisBehindLatest":0,"Ratio":0.5}"#;
        let answer = decoded(&from_json_body(json));
        // Members come out in name order: the JSON value keeps no order.
        let expected = map(vec![
            ("MillisBehindLatest", Cbor::Integer(0.into())),
            ("Ratio", Cbor::Float(0.5)),
            (
                "Records",
                Cbor::Array(vec![map(vec![
                    ("ApproximateArrivalTimestamp", Cbor::Tag(1, Box::new(Cbor::Integer(1_795_360_321_597i64.into())))),
                    ("Data", Cbor::Bytes(b"hello".to_vec())),
                    ("SequenceNumber", Cbor::Text("1".into())),
                ])]),
            ),
        ]);
        assert_eq!(answer, expected);
        assert!(from_json_body(b"").is_empty());
    }

    #[test]
    fn errors_keep_their_members() {
        let error = KinesisError::Serialization(Some("bad".into()));
        let answer = decoded(&from_json_body(&error.body_bytes()));
        assert_eq!(
            answer,
            map(vec![("Message", Cbor::Text("bad".into())), ("__type", Cbor::Text("SerializationException".into()))])
        );
    }

    #[test]
    fn a_request_survives_the_round_trip_through_json() {
        let original = map(vec![
            ("Data", Cbor::Bytes(vec![1, 2, 3])),
            ("StreamCreationTimestamp", Cbor::Tag(1, Box::new(Cbor::Integer(1_000_123i64.into())))),
        ]);
        let json = serde_json::to_vec(&Value::Object(parse_body(&cbor(&original)).expect("parsed"))).expect("json");
        assert_eq!(decoded(&from_json_body(&json)), original);
    }
}
