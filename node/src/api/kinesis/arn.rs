//! Stream ARNs: `arn:aws:kinesis:<region>:<account>:stream/<name>`.

/// Longest `StreamARN` the model allows.
pub const STREAM_ARN_CHARS_MAX: usize = 2048;

/// The model's pattern for `StreamARN`, quoted in validation messages.
pub const STREAM_ARN_PATTERN: &str = r"arn:aws.*:kinesis:.*:\d{12}:stream/\S+";

/// The parts of a stream ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamArn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub stream_name: &'a str,
}

/// Parses a stream ARN; `None` when it does not match [`STREAM_ARN_PATTERN`]. The stream name
/// is returned as written (its own constraints are checked where every stream name is).
pub fn parse_stream_arn(text: &str) -> Option<StreamArn<'_>> {
    let mut parts = text.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != "arn" || !partition.starts_with("aws") || service != "kinesis" {
        return None;
    }
    if account.len() != 12 || !account.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let stream_name = resource.strip_prefix("stream/")?;
    if stream_name.is_empty() || stream_name.chars().any(char::is_whitespace) {
        return None;
    }
    Some(StreamArn { partition, region, account, stream_name })
}

/// The model's pattern for `ConsumerARN`, quoted in validation messages.
pub const CONSUMER_ARN_PATTERN: &str =
    r"^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+";

/// The parts of a consumer ARN, `…:stream/<stream>/consumer/<consumer>:<creation epoch seconds>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerArn<'a> {
    pub stream: StreamArn<'a>,
    pub consumer_name: &'a str,
    pub created_seconds: i64,
}

/// Parses a consumer ARN; `None` when it is not one.
pub fn parse_consumer_arn(text: &str) -> Option<ConsumerArn<'_>> {
    let mut stream = parse_stream_arn(text)?;
    let (stream_name, consumer) = stream.stream_name.split_once("/consumer/")?;
    let (consumer_name, seconds) = consumer.rsplit_once(':')?;
    let name_chars = |name: &str| {
        !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
    };
    if !name_chars(stream_name) || !name_chars(consumer_name) || seconds.is_empty() {
        return None;
    }
    if !seconds.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stream.stream_name = stream_name;
    Some(ConsumerArn { stream, consumer_name, created_seconds: seconds.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_arn_gives_its_stream_name_and_creation_second() {
        let arn = parse_consumer_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s.1/consumer/c-2:1795360321")
            .expect("matches");
        assert_eq!((arn.stream.stream_name, arn.consumer_name, arn.created_seconds), ("s.1", "c-2", 1_795_360_321));
        assert_eq!(arn.stream.account, "000000000000");
        for bad in [
            "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:x1",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/:1",
            "arn:aws:kinesis:us-east-1:000000000000:stream//consumer/c:1",
        ] {
            assert_eq!(parse_consumer_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_stream_arn_gives_its_parts() {
        assert_eq!(
            parse_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/orders.v1"),
            Some(StreamArn {
                partition: "aws",
                region: "us-east-1",
                account: "000000000000",
                stream_name: "orders.v1"
            })
        );
        assert_eq!(
            parse_stream_arn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s").map(|arn| arn.partition),
            Some("aws-cn")
        );
    }

    #[test]
    fn malformed_arns_are_refused() {
        for text in [
            "",
            "orders",
            "arn:aws:kinesis:us-east-1:000000000000:stream/",
            "arn:aws:kinesis:us-east-1:000000000000:orders",
            "arn:aws:sqs:us-east-1:000000000000:stream/orders",
            "arn:gcp:kinesis:us-east-1:000000000000:stream/orders",
            "arn:aws:kinesis:us-east-1:00000000000:stream/orders",
            "arn:aws:kinesis:us-east-1:00000000000x:stream/orders",
            "arn:aws:kinesis:us-east-1:000000000000:stream/or ders",
        ] {
            assert_eq!(parse_stream_arn(text), None, "{text}");
        }
    }

    #[test]
    fn a_consumer_arn_keeps_its_suffix_in_the_name_so_the_name_check_refuses_it() {
        let arn = parse_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1").expect("matches");
        assert_eq!(arn.stream_name, "s/consumer/c:1");
    }
}
