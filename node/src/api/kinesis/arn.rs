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

#[cfg(test)]
mod tests {
    use super::*;

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
