//! The checks every request passes before anything is proposed, worded as Kinesis words them.

use riffle_proto::peer::StreamTag;

use super::*;

pub(super) fn validate_stream_name(name: &str, member: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::validation(name, member, "Member must have length greater than or equal to 1"));
    }
    if name.chars().count() > STREAM_NAME_CHARS_MAX {
        return Err(ApiError::validation(name, member, "Member must have length less than or equal to 128"));
    }
    if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')) {
        return Err(ApiError::validation(
            name,
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// Checks tags being added: count per call, key and value lengths.
pub fn validate_tags(tags: &[(String, String)], per_call_max: usize) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Err(ApiError::validation("{}", "tags", "Member must have length greater than or equal to 1"));
    }
    if tags.len() > per_call_max {
        return Err(ApiError::InvalidArgument(format!(
            "Number of tags in the request ({}) exceeds the limit of {per_call_max} tags per request.",
            tags.len()
        )));
    }
    for (key, value) in tags {
        validate_tag_key(key, "tags")?;
        if value.chars().count() > TAG_VALUE_CHARS_MAX {
            return Err(ApiError::InvalidArgument(format!(
                "Tag value for key {key} exceeds the maximum length of {TAG_VALUE_CHARS_MAX} characters."
            )));
        }
    }
    Ok(())
}

pub(super) fn validate_tag_key(key: &str, member: &str) -> Result<(), ApiError> {
    let length = key.chars().count();
    if length == 0 {
        return Err(ApiError::InvalidArgument(format!("A tag key in {member} must be at least 1 character long.")));
    }
    if length > TAG_KEY_CHARS_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Tag key {key} exceeds the maximum length of {TAG_KEY_CHARS_MAX} characters."
        )));
    }
    Ok(())
}

pub(super) fn stream_tags(tags: &[(String, String)]) -> Vec<StreamTag> {
    tags.iter().map(|(key, value)| StreamTag { key: key.clone(), value: value.clone() }).collect()
}

/// Page sizes (`Limit`, `MaxResults`) are 1–10,000 on every listing and read.
pub(super) fn validate_page_size(value: u32, member: &str) -> Result<(), ApiError> {
    if (1..=10_000).contains(&value) {
        return Ok(());
    }
    Err(ApiError::validation(&value.to_string(), member, "Member must have value between 1 and 10000"))
}

pub(super) fn validate_partition_key(key: &str, member: &str) -> Result<(), ApiError> {
    let length = key.chars().count();
    if length == 0 {
        return Err(ApiError::validation(key, member, "Member must have length greater than or equal to 1"));
    }
    if length > PARTITION_KEY_CHARS_MAX {
        return Err(ApiError::validation(key, member, "Member must have length less than or equal to 256"));
    }
    Ok(())
}

pub(super) fn validate_record_size(data: &[u8], key: &str, member: &str) -> Result<(), ApiError> {
    if data.len() > RECORD_BYTES_MAX {
        return Err(ApiError::validation(
            "java.nio.HeapByteBuffer",
            member,
            "Member must have length less than or equal to 1048576",
        ));
    }
    if data.len() + key.len() > RECORD_BYTES_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Record size of {} bytes (data plus partition key) exceeds the limit of 1048576 bytes.",
            data.len() + key.len()
        )));
    }
    Ok(())
}

pub(super) fn hash_key_for(partition_key: &str, explicit: Option<&str>) -> Result<u128, ApiError> {
    match explicit {
        Some(text) => keys::parse_hash_key(text).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        }),
        None => Ok(keys::hash_key_of(partition_key)),
    }
}

/// A shard id member: 1–128 characters of `[a-zA-Z0-9_.-]`.
pub(super) fn validate_shard_id(shard_id: &str, member: &str) -> Result<(), ApiError> {
    validate_stream_name(shard_id, member)
}
