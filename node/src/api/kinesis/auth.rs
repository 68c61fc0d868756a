//! AWS Signature Version 4 on the Kinesis API: which requests are signed by a configured key,
//! and what that key may do.
//!
//! Verification rebuilds the canonical request from what was received (method, path, query,
//! the signed headers' values and the SHA-256 of the body), the string to sign and the signing
//! key (kSecret → kDate → kRegion → kService → kSigning, HMAC-SHA256), as the AWS
//! documentation describes, and compares the signatures in constant time. The request date must
//! be within [`CLOCK_SKEW_MAX_MS`] of the node's clock, and the credential scope must name the
//! node's region and the `kinesis` service.
//!
//! Anonymous access (`kinesis_allow_anonymous`): an unsigned request is served; a request signed
//! by a configured key must verify; a request signed by any other key is served as anonymous, so
//! that a developer's own AWS profile works against a local cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use hyper::header::{HeaderMap, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::arn::parse_stream_arn;
use super::error::KinesisError;
use super::operations::Target;
use crate::seam::Clock;
use crate::shard::iterator::IteratorCodec;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service a credential scope must name.
pub const SERVICE: &str = "kinesis";
/// How far a request's `X-Amz-Date` may be from the node's clock, either way (AWS: 15 minutes).
pub const CLOCK_SKEW_MAX_MS: i64 = 15 * 60 * 1000;

type HmacSha256 = Hmac<Sha256>;

/// One access key of the Kinesis API: `[[kinesis_credentials]]` in the node configuration.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Stream names this key may touch, or `["*"]`. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_streams: Option<Vec<String>>,
    /// Operation names (`PutRecord`, …) this key may call, or `["*"]`. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<String>>,
}

impl std::fmt::Debug for KinesisCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KinesisCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allowed_streams", &self.allowed_streams)
            .field("allowed_actions", &self.allowed_actions)
            .finish()
    }
}

fn allows(list: &Option<Vec<String>>, name: &str) -> bool {
    list.as_ref().is_none_or(|list| list.iter().any(|entry| entry == "*" || entry == name))
}

fn allows_all(list: &Option<Vec<String>>) -> bool {
    list.as_ref().is_none_or(|list| list.iter().any(|entry| entry == "*"))
}

impl KinesisCredential {
    pub fn allows_action(&self, action: &str) -> bool {
        allows(&self.allowed_actions, action)
    }

    pub fn allows_stream(&self, stream: &str) -> bool {
        allows(&self.allowed_streams, stream)
    }

    pub fn allows_every_stream(&self) -> bool {
        allows_all(&self.allowed_streams)
    }
}

/// Whether `name` is a Kinesis operation name (served or not).
pub fn is_kinesis_action(name: &str) -> bool {
    Target::parse(&format!("Kinesis_20131202.{name}")).is_some()
}

fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

/// Checks `[[kinesis_credentials]]`; the message names the key that is wrong.
pub fn validate_credentials(credentials: &[KinesisCredential]) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for (position, credential) in credentials.iter().enumerate() {
        let key = format!("kinesis_credentials[{position}]");
        let id = &credential.access_key_id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|byte| byte.is_ascii_graphic() && !b"/,=".contains(&byte))
        {
            return Err(format!(
                "{key}.access_key_id: {id:?} must be 1 to 128 printable characters without '/', ',' or '='"
            ));
        }
        if !ids.insert(id.as_str()) {
            return Err(format!("{key}.access_key_id: {id:?} appears twice"));
        }
        if credential.secret_access_key.is_empty() {
            return Err(format!("{key}.secret_access_key: must not be empty"));
        }
        if let Some(streams) = &credential.allowed_streams {
            if let Some(bad) = streams.iter().find(|name| *name != "*" && !is_stream_name(name)) {
                return Err(format!("{key}.allowed_streams: {bad:?} is neither \"*\" nor a stream name"));
            }
        }
        if let Some(actions) = &credential.allowed_actions {
            if let Some(bad) = actions.iter().find(|name| *name != "*" && !is_kinesis_action(name)) {
                return Err(format!("{key}.allowed_actions: {bad:?} is neither \"*\" nor a Kinesis operation name"));
            }
        }
    }
    Ok(())
}

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    Anonymous,
    Key(&'a KinesisCredential),
}

/// The parts of a received request that a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The query string as received, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a signature is computed over, besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `YYYYMMDD'T'HHMMSS'Z'`
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Verifies signatures and applies key permissions.
pub struct Authenticator {
    region: String,
    account: String,
    allow_anonymous: bool,
    keys: HashMap<String, KinesisCredential>,
    clock: Arc<dyn Clock>,
    iterators: IteratorCodec,
}

impl Authenticator {
    pub fn new(
        region: String,
        account: String,
        allow_anonymous: bool,
        credentials: &[KinesisCredential],
        clock: Arc<dyn Clock>,
        iterator_secret: &[u8],
    ) -> Authenticator {
        Authenticator {
            region,
            account,
            allow_anonymous,
            keys: credentials.iter().map(|key| (key.access_key_id.clone(), key.clone())).collect(),
            clock,
            iterators: IteratorCodec::new(iterator_secret),
        }
    }

    /// Who signed `request`, or the error AWS answers.
    pub fn authenticate(&self, request: &SignedRequest<'_>) -> Result<Principal<'_>, KinesisError> {
        let Some(header) = request.headers.get(AUTHORIZATION) else {
            return if self.allow_anonymous {
                Ok(Principal::Anonymous)
            } else {
                Err(KinesisError::MissingAuthenticationToken)
            };
        };
        let header = String::from_utf8_lossy(header.as_bytes());
        let amz_date = header_text(request.headers, "x-amz-date");
        let parsed = parse_authorization(&header, amz_date.is_some() || request.headers.contains_key("date"))?;
        let Some(key) = self.keys.get(parsed.access_key_id) else {
            return if self.allow_anonymous { Ok(Principal::Anonymous) } else { Err(KinesisError::UnrecognizedClient) };
        };
        if request.headers.contains_key("x-amz-security-token") {
            // Temporary credentials are not issued here, so no session token can be valid.
            return Err(KinesisError::UnrecognizedClient);
        }
        let Some(amz_date) = amz_date else {
            return Err(KinesisError::IncompleteSignature(format!(
                "Authorization header requires existence of an 'X-Amz-Date' header (a 'Date' header alone is not supported by this server). Authorization={header}"
            )));
        };
        let Some(request_ms) = parse_amz_date(&amz_date) else {
            return Err(KinesisError::IncompleteSignature(format!(
                "X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z', not '{amz_date}'."
            )));
        };
        let [date, region, service, terminator] = parsed.scope;
        if date != &amz_date[..8] {
            return Err(KinesisError::InvalidSignature(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from '{amz_date}'.",
                &amz_date[..8]
            )));
        }
        if region != self.region {
            return Err(KinesisError::InvalidSignature(format!(
                "Credential should be scoped to a valid region, not '{region}'. "
            )));
        }
        if service != SERVICE {
            return Err(KinesisError::InvalidSignature(format!(
                "Credential should be scoped to correct service: '{SERVICE}'. "
            )));
        }
        if terminator != "aws4_request" {
            return Err(KinesisError::InvalidSignature(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
            )));
        }
        let now_ms = self.clock.now_ms();
        if request_ms < now_ms - CLOCK_SKEW_MAX_MS {
            return Err(KinesisError::InvalidSignature(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
                format_amz_date(now_ms - CLOCK_SKEW_MAX_MS),
                format_amz_date(now_ms)
            )));
        }
        if request_ms > now_ms + CLOCK_SKEW_MAX_MS {
            return Err(KinesisError::InvalidSignature(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
                format_amz_date(now_ms + CLOCK_SKEW_MAX_MS),
                format_amz_date(now_ms)
            )));
        }
        let body_hash = hex(&Sha256::digest(request.body));
        if let Some(declared) = header_text(request.headers, "x-amz-content-sha256") {
            if !declared.eq_ignore_ascii_case(&body_hash) {
                return Err(KinesisError::InvalidSignature(
                    "The provided 'x-amz-content-sha256' header does not match what was computed.".to_string(),
                ));
            }
        }
        let Some(provided) = unhex(parsed.signature) else {
            return Err(KinesisError::InvalidSignature(SIGNATURE_MISMATCH.to_string()));
        };
        let scope = Scope { amz_date: &amz_date, region, service };
        let mut mac = signing_mac(&key.secret_access_key, &scope);
        mac.update(string_to_sign(request, &parsed.signed_headers, &body_hash, &scope).as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&provided).map_err(|_| KinesisError::InvalidSignature(SIGNATURE_MISMATCH.to_string()))?;
        Ok(Principal::Key(key))
    }

    /// Whether `principal` may call `action` on the streams `members` name.
    pub fn authorize(
        &self,
        principal: Principal<'_>,
        action: &str,
        members: &Map<String, Value>,
    ) -> Result<(), KinesisError> {
        let Principal::Key(key) = principal else { return Ok(()) };
        let streams = self.streams_named(members);
        let account_wide = format!("arn:aws:kinesis:{}:{}:*", self.region, self.account);
        let denied = |resource: String| {
            KinesisError::AccessDenied(format!(
                "User: arn:aws:iam::{}:user/{} is not authorized to perform: kinesis:{action} on resource: {resource}",
                self.account, key.access_key_id
            ))
        };
        let stream_arn = |stream: &str| format!("arn:aws:kinesis:{}:{}:stream/{stream}", self.region, self.account);
        if !key.allows_action(action) {
            return Err(denied(streams.first().map(|stream| stream_arn(stream)).unwrap_or(account_wide)));
        }
        if action == "ListStreams" && !key.allows_every_stream() {
            // Listing shows every stream's name, so it takes a key allowed every stream.
            return Err(denied(account_wide));
        }
        match streams.iter().find(|stream| !key.allows_stream(stream)) {
            Some(stream) => Err(denied(stream_arn(stream))),
            None => Ok(()),
        }
    }

    /// The streams a request names: `StreamName`, `StreamARN`, and the stream of a valid
    /// `ShardIterator`. Members of the wrong type are left to the operation to refuse.
    fn streams_named(&self, members: &Map<String, Value>) -> Vec<String> {
        let mut streams = Vec::new();
        if let Some(Value::String(name)) = members.get("StreamName") {
            streams.push(name.clone());
        }
        if let Some(Value::String(arn)) = members.get("StreamARN") {
            if let Some(arn) = parse_stream_arn(arn) {
                streams.push(arn.stream_name.to_string());
            }
        }
        if let Some(Value::String(token)) = members.get("ShardIterator") {
            if let Ok(iterator) = self.iterators.decode(token) {
                streams.push(iterator.stream);
            }
        }
        streams
    }
}

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The parts of an `Authorization` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    /// date, region, service, terminator
    scope: [&'a str; 4],
    signed_headers: Vec<String>,
    signature: &'a str,
}

fn parse_authorization(header: &str, has_date: bool) -> Result<Authorization<'_>, KinesisError> {
    let incomplete = |message: String| KinesisError::IncompleteSignature(format!("{message}Authorization={header}"));
    let (algorithm, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut parameters: HashMap<&str, &str> = HashMap::new();
    for part in rest.split([',', ' ']).filter(|part| !part.is_empty()) {
        if let Some((name, value)) = part.split_once('=') {
            parameters.insert(name, value);
        }
    }
    let mut message = String::new();
    if algorithm != ALGORITHM {
        message += &format!("Unsupported AWS 'algorithm': '{algorithm}'; only '{ALGORITHM}' is accepted. ");
    }
    for name in ["Credential", "Signature", "SignedHeaders"] {
        if parameters.get(name).is_none_or(|value| value.is_empty()) {
            message += &format!("Authorization header requires '{name}' parameter. ");
        }
    }
    if !has_date {
        message += "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ";
    }
    if !message.is_empty() {
        return Err(incomplete(message));
    }
    let credential: Vec<&str> = parameters["Credential"].split('/').collect();
    let [access_key_id, date, region, service, terminator] = credential[..] else {
        return Err(incomplete(format!(
            "Credential must have the form <access key id>/<date>/<region>/<service>/aws4_request, not '{}'. ",
            parameters["Credential"]
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential names no access key id. ".to_string()));
    }
    Ok(Authorization {
        access_key_id,
        scope: [date, region, service, terminator],
        signed_headers: parameters["SignedHeaders"].split(';').map(str::to_ascii_lowercase).collect(),
        signature: parameters["Signature"],
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
}

/// Percent-encodes everything but the unreserved characters, as SigV4 requires.
fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for &byte in text {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || (keep_slash && byte == b'/') {
            encoded.push(byte as char);
        } else {
            encoded += &format!("%{byte:02X}");
        }
    }
    encoded
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let pair = bytes.get(index + 1..index + 3);
        let escaped = pair.and_then(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok());
        match (bytes[index], escaped) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    decoded
}

/// The canonical request of SigV4 for a service other than S3: the path as received is
/// encoded once more; query parameters are decoded, re-encoded and sorted.
pub fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[String], body_hash: &str) -> String {
    let path = if request.path.is_empty() { "/" } else { request.path };
    let mut query: Vec<(String, String)> = request
        .query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&percent_decode(name), false), uri_encode(&percent_decode(value), false))
        })
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(name, value)| format!("{name}={value}")).collect();
    let mut canonical = format!("{}\n{}\n{}\n", request.method, uri_encode(path.as_bytes(), true), query.join("&"));
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical += &format!("{name}:{}\n", values.join(","));
    }
    canonical += &format!("\n{}\n{body_hash}", signed_headers.join(";"));
    canonical
}

/// The string to sign for `request`.
pub fn string_to_sign(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    body_hash: &str,
    scope: &Scope<'_>,
) -> String {
    let canonical = canonical_request(request, signed_headers, body_hash);
    format!(
        "{ALGORITHM}\n{}\n{}/{}/{}/aws4_request\n{}",
        scope.amz_date,
        scope.amz_date.get(..8).unwrap_or_default(),
        scope.region,
        scope.service,
        hex(&Sha256::digest(canonical.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// An HMAC keyed with the signing key kSigning derived from `secret` for `scope`.
fn signing_mac(secret: &str, scope: &Scope<'_>) -> HmacSha256 {
    let date = hmac(format!("AWS4{secret}").as_bytes(), scope.amz_date.get(..8).unwrap_or_default().as_bytes());
    let region = hmac(&date, scope.region.as_bytes());
    let service = hmac(&region, scope.service.as_bytes());
    let signing = hmac(&service, b"aws4_request");
    HmacSha256::new_from_slice(&signing).expect("HMAC takes a key of any length")
}

/// The hex signature of a string to sign.
pub fn signature(secret: &str, scope: &Scope<'_>, string_to_sign: &str) -> String {
    let mut mac = signing_mac(secret, scope);
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Signs `request` (its headers must already hold every header in `signed_headers`, including
/// `x-amz-date`) and returns the `Authorization` header value. For tests and tools.
pub fn authorization_header(
    request: &SignedRequest<'_>,
    signed_headers: &[&str],
    access_key_id: &str,
    secret: &str,
    scope: &Scope<'_>,
) -> String {
    let mut names: Vec<String> = signed_headers.iter().map(|name| name.to_ascii_lowercase()).collect();
    names.sort();
    let body_hash = hex(&Sha256::digest(request.body));
    let signature = signature(secret, scope, &string_to_sign(request, &names, &body_hash, scope));
    format!(
        "{ALGORITHM} Credential={access_key_id}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
        scope.amz_date.get(..8).unwrap_or_default(),
        scope.region,
        scope.service,
        names.join(";")
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok()).collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch of `YYYYMMDD'T'HHMMSS'Z'`.
pub fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        if digits.bytes().all(|byte| byte.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// `YYYYMMDD'T'HHMMSS'Z'` of milliseconds since the epoch.
pub fn format_amz_date(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::shard::iterator::{Position, ShardIterator};

    #[derive(Debug)]
    struct FixedClock(i64);

    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    const NOW: &str = "20150830T123600Z";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn key(id: &str, streams: Option<&[&str]>, actions: Option<&[&str]>) -> KinesisCredential {
        let list = |names: Option<&[&str]>| names.map(|names| names.iter().map(|name| name.to_string()).collect());
        KinesisCredential {
            access_key_id: id.to_string(),
            secret_access_key: SECRET.to_string(),
            allowed_streams: list(streams),
            allowed_actions: list(actions),
        }
    }

    fn authenticator(allow_anonymous: bool, now: &str) -> Authenticator {
        Authenticator::new(
            "us-east-1".into(),
            "000000000000".into(),
            allow_anonymous,
            &[key("AKIDEXAMPLE", None, None), key("LIMITED", Some(&["logs"]), Some(&["PutRecord", "GetRecords"]))],
            Arc::new(FixedClock(parse_amz_date(now).expect("a date"))),
            b"iterator-secret",
        )
    }

    fn kinesis_headers(amz_date: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:4567"));
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        headers.insert("x-amz-target", HeaderValue::from_static("Kinesis_20131202.PutRecord"));
        headers.insert("x-amz-date", HeaderValue::from_str(amz_date).expect("a header value"));
        headers
    }

    /// Signs a Kinesis call with this module's signer, as boto3 signs it.
    fn signed(id: &str, secret: &str, amz_date: &str, region: &str, body: &[u8]) -> HeaderMap {
        let mut headers = kinesis_headers(amz_date);
        let request = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body };
        let scope = Scope { amz_date, region, service: SERVICE };
        let signed_headers = ["content-type", "host", "x-amz-date", "x-amz-target"];
        let value = authorization_header(&request, &signed_headers, id, secret, &scope);
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).expect("a header value"));
        headers
    }

    fn check<'a>(
        auth: &'a Authenticator,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Result<Principal<'a>, KinesisError> {
        auth.authenticate(&SignedRequest { method: "POST", path: "/", query: "", headers, body })
    }

    fn error_of(result: Result<Principal<'_>, KinesisError>) -> Value {
        result.expect_err("refused").body()
    }

    #[test]
    fn the_aws_documentation_example_signs_to_its_published_signature() {
        // "GET /?Param2=value2&Param1=value1" from the SigV4 documentation's test suite.
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static(NOW));
        let request = SignedRequest {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let signed_headers = ["host".to_string(), "x-amz-date".to_string()];
        let body_hash = hex(&Sha256::digest(b""));
        assert_eq!(
            canonical_request(&request, &signed_headers, &body_hash),
            "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let scope = Scope { amz_date: NOW, region: "us-east-1", service: "service" };
        let to_sign = string_to_sign(&request, &signed_headers, &body_hash, &scope);
        assert_eq!(
            signature(SECRET, &scope, &to_sign),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(
            authorization_header(&request, &["x-amz-date", "Host"], "AKIDEXAMPLE", SECRET, &scope),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn a_request_signed_with_the_configured_secret_verifies() {
        let auth = authenticator(false, NOW);
        let body = br#"{"StreamName":"s"}"#;
        let headers = signed("AKIDEXAMPLE", SECRET, NOW, "us-east-1", body);
        assert!(matches!(check(&auth, &headers, body), Ok(Principal::Key(key)) if key.access_key_id == "AKIDEXAMPLE"));
        // Within 15 minutes either way of the node's clock.
        assert!(check(&authenticator(false, "20150830T125000Z"), &headers, body).is_ok());
        assert!(check(&authenticator(false, "20150830T122100Z"), &headers, body).is_ok());
        // A matching x-amz-content-sha256 is accepted, unsigned.
        let mut with_hash = headers.clone();
        let hash = hex(&Sha256::digest(body));
        with_hash.insert("x-amz-content-sha256", HeaderValue::from_str(&hash).expect("a header value"));
        assert!(check(&auth, &with_hash, body).is_ok());
    }

    #[test]
    fn tampering_or_a_wrong_secret_is_an_invalid_signature() {
        let auth = authenticator(false, NOW);
        let mismatch = json!({"__type": "InvalidSignatureException", "message": SIGNATURE_MISMATCH});
        let body = br#"{"StreamName":"s"}"#;
        let wrong_secret = signed("AKIDEXAMPLE", "not-the-secret", NOW, "us-east-1", body);
        assert_eq!(error_of(check(&auth, &wrong_secret, body)), mismatch);
        let headers = signed("AKIDEXAMPLE", SECRET, NOW, "us-east-1", body);
        assert_eq!(error_of(check(&auth, &headers, br#"{"StreamName":"t"}"#)), mismatch);
        let mut retargeted = headers.clone();
        retargeted.insert("x-amz-target", HeaderValue::from_static("Kinesis_20131202.DeleteStream"));
        assert_eq!(error_of(check(&auth, &retargeted, body)), mismatch);
        let mut bad_hash = headers.clone();
        bad_hash.insert("x-amz-content-sha256", HeaderValue::from_static("00"));
        assert_eq!(error_of(check(&auth, &bad_hash, body))["__type"], "InvalidSignatureException");
        let wrong_region = signed("AKIDEXAMPLE", SECRET, NOW, "eu-west-1", body);
        assert_eq!(
            error_of(check(&auth, &wrong_region, body)),
            json!({"__type": "InvalidSignatureException", "message": "Credential should be scoped to a valid region, not 'eu-west-1'. "})
        );
    }

    #[test]
    fn a_stale_or_future_date_is_refused_in_aws_words() {
        let body = b"{}";
        let headers = signed("AKIDEXAMPLE", SECRET, NOW, "us-east-1", body);
        assert_eq!(
            error_of(check(&authenticator(false, "20150830T130100Z"), &headers, body)),
            json!({"__type": "InvalidSignatureException", "message": "Signature expired: 20150830T123600Z is now earlier than 20150830T124600Z (20150830T130100Z - 15 min.)"})
        );
        assert_eq!(
            error_of(check(&authenticator(false, "20150830T120000Z"), &headers, body)),
            json!({"__type": "InvalidSignatureException", "message": "Signature not yet current: 20150830T123600Z is still later than 20150830T121500Z (20150830T120000Z + 15 min.)"})
        );
    }

    #[test]
    fn unknown_keys_and_missing_headers_follow_the_anonymous_setting() {
        let body = b"{}";
        let strict = authenticator(false, NOW);
        let open = authenticator(true, NOW);
        let unsigned = kinesis_headers(NOW);
        assert_eq!(error_of(check(&strict, &unsigned, body)), KinesisError::MissingAuthenticationToken.body());
        assert!(matches!(check(&open, &unsigned, body), Ok(Principal::Anonymous)));
        let stranger = signed("AKIDSTRANGER", "whatever", NOW, "us-east-1", body);
        assert_eq!(
            error_of(check(&strict, &stranger, body)),
            json!({"__type": "UnrecognizedClientException", "message": "The security token included in the request is invalid."})
        );
        assert!(matches!(check(&open, &stranger, body), Ok(Principal::Anonymous)));
        // A configured key must verify even when anonymous access is on.
        let wrong = signed("AKIDEXAMPLE", "wrong", NOW, "us-east-1", body);
        assert_eq!(error_of(check(&open, &wrong, body))["__type"], "InvalidSignatureException");
        let mut with_token = signed("AKIDEXAMPLE", SECRET, NOW, "us-east-1", body);
        with_token.insert("x-amz-security-token", HeaderValue::from_static("token"));
        assert_eq!(error_of(check(&open, &with_token, body))["__type"], "UnrecognizedClientException");
    }

    #[test]
    fn a_malformed_authorization_header_is_incomplete() {
        let auth = authenticator(true, NOW);
        let mut headers = kinesis_headers(NOW);
        let only_credential = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request";
        headers.insert(AUTHORIZATION, HeaderValue::from_static(only_credential));
        let body = error_of(check(&auth, &headers, b"{}"));
        assert_eq!(body["__type"], "IncompleteSignatureException");
        assert_eq!(
            body["message"],
            format!("Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={only_credential}")
        );
        headers.remove("x-amz-date");
        let short_credential = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830, SignedHeaders=host, Signature=00";
        headers.insert(AUTHORIZATION, HeaderValue::from_static(short_credential));
        let message = error_of(check(&auth, &headers, b"{}"))["message"].as_str().expect("a message").to_string();
        assert!(message.contains("requires existence of either a 'X-Amz-Date' or a 'Date' header"), "{message}");
        headers.insert("x-amz-date", HeaderValue::from_static(NOW));
        let message = error_of(check(&auth, &headers, b"{}"))["message"].as_str().expect("a message").to_string();
        assert!(message.starts_with("Credential must have the form"), "{message}");
    }

    #[test]
    fn keys_are_limited_to_their_streams_and_actions() {
        let auth = authenticator(false, NOW);
        let limited = key("LIMITED", Some(&["logs"]), Some(&["PutRecord", "GetRecords"]));
        let principal = Principal::Key(&limited);
        let members = |value: Value| value.as_object().expect("an object").clone();
        assert!(auth.authorize(principal, "PutRecord", &members(json!({"StreamName": "logs"}))).is_ok());
        assert_eq!(
            auth.authorize(principal, "PutRecord", &members(json!({"StreamName": "other"}))).unwrap_err().body(),
            json!({"__type": "AccessDeniedException", "message": "User: arn:aws:iam::000000000000:user/LIMITED is not authorized to perform: kinesis:PutRecord on resource: arn:aws:kinesis:us-east-1:000000000000:stream/other"})
        );
        let by_arn = members(json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/other"}));
        assert!(auth.authorize(principal, "PutRecord", &by_arn).is_err());
        assert!(auth.authorize(principal, "DeleteStream", &members(json!({"StreamName": "logs"}))).is_err());
        assert!(auth.authorize(principal, "ListStreams", &members(json!({}))).is_err());
        let iterator = |stream: &str| {
            let iterator = ShardIterator {
                stream: stream.to_string(),
                stream_created_ms: 1,
                shard_index: 0,
                position: Position::TrimHorizon,
                issued_ms: 2,
            };
            members(json!({"ShardIterator": IteratorCodec::new(b"iterator-secret").encode(&iterator)}))
        };
        assert!(auth.authorize(principal, "GetRecords", &iterator("logs")).is_ok());
        assert!(auth.authorize(principal, "GetRecords", &iterator("other")).is_err());
        assert!(auth.authorize(Principal::Anonymous, "DeleteStream", &members(json!({"StreamName": "x"}))).is_ok());
    }

    #[test]
    fn credentials_are_validated_naming_the_bad_key() {
        assert!(validate_credentials(&[key("a", Some(&["*"]), Some(&["PutRecord", "*"]))]).is_ok());
        let twice = validate_credentials(&[key("a", None, None), key("a", None, None)]).unwrap_err();
        assert!(twice.starts_with("kinesis_credentials[1].access_key_id"), "{twice}");
        let action = validate_credentials(&[key("a", None, Some(&["PutRecordz"]))]).unwrap_err();
        assert!(action.starts_with("kinesis_credentials[0].allowed_actions"), "{action}");
        let stream = validate_credentials(&[key("a", Some(&["no spaces"]), None)]).unwrap_err();
        assert!(stream.starts_with("kinesis_credentials[0].allowed_streams"), "{stream}");
        let mut empty = key("a", None, None);
        empty.secret_access_key.clear();
        assert!(validate_credentials(&[empty]).unwrap_err().starts_with("kinesis_credentials[0].secret_access_key"));
        assert!(validate_credentials(&[key("a/b", None, None)]).is_err());
    }

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(NOW), Some(1_440_938_160_000));
        assert_eq!(format_amz_date(1_440_938_160_000), NOW);
        assert_eq!(format_amz_date(parse_amz_date("20240229T235959Z").expect("a date")), "20240229T235959Z");
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }
}
