//! The enhanced fan-out consumer registry: register, deregister, describe, list.

use riffle_proto::peer::{meta_command, DeregisterConsumer, RegisterConsumer};

use super::validation::*;
use super::*;

impl StreamService {
    /// RegisterStreamConsumer: ACTIVE as soon as the command is applied (AWS shows CREATING
    /// for a few seconds first). Uniqueness and the per-stream limit are checked on apply.
    pub async fn register_consumer(
        &self,
        stream: &str,
        consumer: &str,
        tags: Vec<(String, String)>,
    ) -> Result<ConsumerDescription, ApiError> {
        validate_stream_name(consumer, "consumerName")?;
        if !tags.is_empty() {
            validate_tags(&tags, TAG_RESOURCE_PER_CALL_MAX)?;
        }
        validate_stream_name(stream, "streamName")?;
        let known = self.stream(stream).await?;
        if known.consumers.contains_key(consumer) {
            return Err(self.rejection(MetaRejection::ConsumerExists {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
            }));
        }
        let created_ms = self.node.seams.clock.now_ms();
        let command = meta_command::Command::RegisterConsumer(RegisterConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            created_ms,
            tags: stream_tags(&tags),
        });
        self.change_stream(command, stream).await?;
        let registered = ConsumerMeta { name: consumer.to_string(), created_ms, tags: tags.into_iter().collect() };
        Ok(self.consumer_description(stream, &registered))
    }

    /// DeregisterStreamConsumer; `created_seconds` (from a ConsumerARN) picks one registration.
    pub async fn deregister_consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<(), ApiError> {
        self.consumer(stream, consumer, created_seconds).await?;
        let command = meta_command::Command::DeregisterConsumer(DeregisterConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            created_seconds,
        });
        self.change_stream(command, stream).await
    }

    /// DescribeStreamConsumer, by stream and name, and by creation second for a ConsumerARN.
    pub async fn describe_consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<ConsumerDescription, ApiError> {
        let found = self.consumer(stream, consumer, created_seconds).await?;
        Ok(self.consumer_description(stream, &found))
    }

    /// ListStreamConsumers: consumers in name order after `exclusive_start`, at most `limit`,
    /// and whether more follow.
    pub async fn list_consumers(
        &self,
        stream: &str,
        exclusive_start: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ConsumerDescription>, bool), ApiError> {
        let known = self.stream_meta(stream).await?;
        let mut after = known
            .consumers
            .values()
            .filter(|consumer| exclusive_start.is_none_or(|start| consumer.name.as_str() > start));
        let page = after.by_ref().take(limit).map(|consumer| self.consumer_description(stream, consumer)).collect();
        Ok((page, after.next().is_some()))
    }

    /// A registered consumer, as of now.
    pub(super) async fn consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<ConsumerMeta, ApiError> {
        validate_stream_name(consumer, "consumerName")?;
        validate_stream_name(stream, "streamName")?;
        let matching = |meta: &StreamMeta| {
            meta.consumers
                .get(consumer)
                .filter(|found| created_seconds.is_none_or(|seconds| found.created_seconds() == seconds))
                .cloned()
        };
        let known = self.stream(stream).await?;
        matching(&known).ok_or_else(|| self.consumer_not_found(stream, consumer))
    }
}
