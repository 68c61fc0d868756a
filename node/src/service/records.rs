//! Records: PutRecord and PutRecords (routed per shard, acknowledged once committed), and
//! reads through signed shard iterators.

use std::collections::BTreeMap;

use riffle_proto::peer::{self as wire, RecordInput};
use riffle_proto::v1;

use super::validation::*;
use super::*;
use crate::routing::{route_failure, RouteError};
use crate::shard::iterator::{Position, ShardIterator, ITERATOR_TTL_MS};

/// Times a record refused by a sealed shard is routed again before the call gives up.
const RESHARD_REROUTES_MAX: usize = 4;

/// A record on its way to a shard, with its place in the request.
struct PendingRecord {
    position: usize,
    hash: u128,
    record: RecordInput,
}

impl StreamService {
    pub async fn put_record(&self, request: v1::PutRecordRequest) -> Result<v1::PutRecordResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        validate_partition_key(&request.partition_key, "partitionKey")?;
        validate_record_size(&request.data, &request.partition_key, "data")?;
        if let Some(ordering) = &request.sequence_number_for_ordering {
            // Kinesis' pattern: 0|([1-9]\d{0,128}). Ordering itself needs nothing more: a put is
            // acknowledged only once committed, so a serial writer's records always increase.
            let well_formed = ordering == "0"
                || (!ordering.is_empty()
                    && ordering.len() <= 129
                    && !ordering.starts_with('0')
                    && ordering.bytes().all(|byte| byte.is_ascii_digit()));
            if !well_formed {
                return Err(ApiError::validation(
                    ordering,
                    "sequenceNumberForOrdering",
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
                ));
            }
        }
        let hash = hash_key_for(&request.partition_key, request.explicit_hash_key.as_deref())?;
        let stream = self.stream_for_records(&request.stream_name).await?;
        let record = RecordInput { partition_key: request.partition_key, data: request.data };
        let mut outcomes = self.append_records(stream, vec![PendingRecord { position: 0, hash, record }]).await;
        let (shard_index, sequence) = outcomes
            .pop()
            .map(|(_, outcome)| outcome)
            .unwrap_or_else(|| Err(ApiError::Internal("the record was not appended".into())))?;
        Ok(v1::PutRecordResponse {
            shard_id: keys::shard_id(shard_index),
            sequence_number: sequence::render(shard_index, sequence),
        })
    }

    pub async fn put_records(&self, request: v1::PutRecordsRequest) -> Result<v1::PutRecordsResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        if request.records.is_empty() {
            return Err(ApiError::validation("[]", "records", "Member must have length greater than or equal to 1"));
        }
        if request.records.len() > PUT_RECORDS_MAX {
            return Err(ApiError::validation(
                &format!("{} records", request.records.len()),
                "records",
                "Member must have length less than or equal to 500",
            ));
        }
        let mut total = 0usize;
        let mut hashes = Vec::with_capacity(request.records.len());
        for (position, record) in request.records.iter().enumerate() {
            let member = format!("records.{}.member", position + 1);
            validate_partition_key(&record.partition_key, &format!("{member}.partitionKey"))?;
            validate_record_size(&record.data, &record.partition_key, &format!("{member}.data"))?;
            total += record.data.len() + record.partition_key.len();
            hashes.push(hash_key_for(&record.partition_key, record.explicit_hash_key.as_deref())?);
        }
        if total > PUT_RECORDS_BYTES_MAX {
            return Err(ApiError::InvalidArgument(format!(
                "Records size exceeds 5 MB limit: the request holds {total} bytes of data and partition keys."
            )));
        }
        let stream = self.stream_for_records(&request.stream_name).await?;
        let count = request.records.len();
        let pending = request
            .records
            .into_iter()
            .zip(hashes)
            .enumerate()
            .map(|(position, (record, hash))| PendingRecord {
                position,
                hash,
                record: RecordInput { partition_key: record.partition_key, data: record.data },
            })
            .collect();
        let mut results = vec![v1::PutRecordsResultEntry::default(); count];
        let mut failed = 0u32;
        for (position, outcome) in self.append_records(stream, pending).await {
            results[position] = match outcome {
                Ok((shard_index, sequence)) => v1::PutRecordsResultEntry {
                    sequence_number: Some(sequence::render(shard_index, sequence)),
                    shard_id: Some(keys::shard_id(shard_index)),
                    error_code: None,
                    error_message: None,
                },
                Err(error) => {
                    failed += 1;
                    v1::PutRecordsResultEntry {
                        sequence_number: None,
                        shard_id: None,
                        error_code: Some(error.error_type().to_string()),
                        error_message: Some(error.message()),
                    }
                }
            };
        }
        Ok(v1::PutRecordsResponse { failed_record_count: failed, records: results })
    }

    /// Appends records, one concurrent append per shard, keeping each shard's records in
    /// request order; answers (position, shard, internal sequence) per record.
    ///
    /// A shard sealed by a reshard refuses its records without storing them; they are routed
    /// again, by hash, to the shards that took over once the metadata shows them taking writes
    /// (at most [`RESHARD_REROUTES_MAX`] times). Records of one key therefore land in a child
    /// only after every record of that key its parent acknowledged.
    async fn append_records(
        &self,
        mut stream: StreamMeta,
        mut pending: Vec<PendingRecord>,
    ) -> Vec<(usize, Result<(u32, u64), ApiError>)> {
        let mut answered = Vec::with_capacity(pending.len());
        for round in 0..=RESHARD_REROUTES_MAX {
            let mut by_shard: BTreeMap<u32, Vec<PendingRecord>> = BTreeMap::new();
            let mut waiting = Vec::new();
            for record in pending.drain(..) {
                match stream.shard_for_hash(record.hash) {
                    Some(shard) => by_shard.entry(shard.index).or_default().push(record),
                    None => waiting.push(record),
                }
            }
            let appends = by_shard.into_iter().map(|(index, records)| {
                let shard = stream.shards[index as usize].clone();
                async move {
                    // Kept until the append answers: a sealed shard hands them back for rerouting.
                    let inputs = records.iter().map(|pending| pending.record.clone()).collect();
                    let outcome = self.node.append(&shard, inputs).await;
                    (shard, records, outcome)
                }
            });
            let mut sealed = Vec::new();
            for (shard, records, outcome) in futures::future::join_all(appends).await {
                match outcome {
                    Ok(result) => {
                        for (offset, record) in records.into_iter().enumerate() {
                            let position = result.first_position as usize + offset;
                            let sequence = sequence::checked_of_record(result.log_index, position)
                                .map(|sequence| (shard.index, sequence))
                                .ok_or_else(|| {
                                    ApiError::Internal(format!("a node answered with an invalid position {result:?}"))
                                });
                            answered.push((record.position, sequence));
                        }
                    }
                    Err(RouteError::Closed) => {
                        sealed.push(shard.index);
                        pending.extend(records);
                    }
                    Err(error) => {
                        let error = self.rate_exceeded(route_failure(&shard, error), &stream.name, shard.index);
                        answered.extend(records.into_iter().map(|record| (record.position, Err(error.clone()))));
                    }
                }
            }
            pending.extend(waiting);
            if pending.is_empty() {
                break;
            }
            let hashes: Vec<u128> = pending.iter().map(|record| record.hash).collect();
            match self.await_successors(&stream.name, &sealed, &hashes, round == RESHARD_REROUTES_MAX).await {
                Ok(fresh) => stream = fresh,
                Err(error) => {
                    answered.extend(pending.drain(..).map(|record| (record.position, Err(error.clone()))));
                    break;
                }
            }
        }
        answered
    }

    /// The stream once every one of `hashes` routes to a shard taking writes other than the
    /// `sealed` ones, waiting (at most `leader_wait_ms`) for the metadata to get there.
    async fn await_successors(
        &self,
        name: &str,
        sealed: &[u32],
        hashes: &[u128],
        last_round: bool,
    ) -> Result<StreamMeta, ApiError> {
        let resharding = || {
            ApiError::Internal(format!(
                "stream {name} is resharding and the shards taking over have not opened in time; retry"
            ))
        };
        if last_round {
            return Err(resharding());
        }
        let Some(mut changes) = self.node.meta_watch() else { return Err(resharding()) };
        let wait = std::time::Duration::from_millis(self.node.options.limits.leader_wait_ms);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            changes.borrow_and_update();
            let stream = self.stream(name).await?;
            let routable = hashes
                .iter()
                .all(|hash| stream.shard_for_hash(*hash).is_some_and(|shard| !sealed.contains(&shard.index)));
            if routable {
                return Ok(stream);
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.map_or(true, |changed| changed.is_err()) {
                return Err(resharding());
            }
        }
    }

    pub async fn get_shard_iterator(
        &self,
        request: v1::GetShardIteratorRequest,
    ) -> Result<v1::GetShardIteratorResponse, ApiError> {
        use v1::ShardIteratorType as Type;
        validate_stream_name(&request.stream_name, "streamName")?;
        let iterator_type = Type::try_from(request.shard_iterator_type).unwrap_or(Type::Unspecified);
        let stream = self.stream(&request.stream_name).await?;
        let shard = self.shard(&stream, &request.shard_id)?.clone();
        let sequence = |text: &Option<String>| -> Result<u64, ApiError> {
            let text = text.as_deref().ok_or_else(|| {
                ApiError::InvalidArgument(
                    "Must specify a StartingSequenceNumber for AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER iterators."
                        .into(),
                )
            })?;
            sequence::parse(text, shard.index).map_err(|error| {
                ApiError::InvalidArgument(format!(
                    "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} {error}.",
                    keys::shard_id(shard.index),
                    stream.name,
                    self.settings.account
                ))
            })
        };
        let position = match iterator_type {
            Type::AtSequenceNumber => Position::AtSequence(sequence(&request.starting_sequence_number)?),
            Type::AfterSequenceNumber => Position::AtSequence(sequence(&request.starting_sequence_number)?.saturating_add(1)),
            Type::TrimHorizon => Position::TrimHorizon,
            Type::AtTimestamp => Position::AtTimestamp(request.timestamp_ms.ok_or_else(|| {
                ApiError::InvalidArgument("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP.".into())
            })?),
            Type::Latest => {
                let read = wire::ForwardRead {
                    start: Some(wire::forward_read::Start::Latest(wire::Blank {})),
                    limit: 0,
                    bytes_max: 0,
                };
                Position::AtSequence(self.node.read(&shard, read).await?.next_sequence)
            }
            Type::Unspecified => {
                return Err(ApiError::validation(
                    &request.shard_iterator_type.to_string(),
                    "shardIteratorType",
                    "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
                ))
            }
        };
        let iterator = ShardIterator {
            stream: stream.name.clone(),
            stream_created_ms: stream.created_ms,
            shard_index: shard.index,
            position,
            issued_ms: self.node.seams.clock.now_ms(),
        };
        Ok(v1::GetShardIteratorResponse { shard_iterator: self.iterators.encode(&iterator) })
    }

    /// The records of one shard as this node's own replica holds them (its applied prefix),
    /// without asking the leader: `ReadReplica`, for comparing replicas.
    pub async fn read_replica(&self, request: v1::ReadReplicaRequest) -> Result<v1::ReadReplicaResponse, ApiError> {
        let limit = request.limit.unwrap_or(GET_RECORDS_MAX);
        validate_page_size(limit, "limit")?;
        let stream = self.stream_for_records(&request.stream_name).await?;
        let not_held = || {
            ApiError::ResourceNotFound(format!(
                "Node {} holds no replica of shard {} in stream {}.",
                self.node.id(),
                request.shard_id,
                request.stream_name
            ))
        };
        let shard_index = keys::parse_shard_id(&request.shard_id).ok_or_else(|| {
            ApiError::ResourceNotFound(format!(
                "Could not find shard {} in stream {} under account {}.",
                request.shard_id, request.stream_name, self.settings.account
            ))
        })?;
        let shard = stream.shard(shard_index).ok_or_else(not_held)?;
        let group = self.node.group(shard.group_id).ok_or_else(not_held)?;
        let shard_group = group.shard.as_ref().ok_or_else(not_held)?;
        let from = match &request.starting_sequence_number {
            None => 0,
            Some(text) => sequence::parse(text, shard_index)
                .map_err(|error| ApiError::InvalidArgument(format!("StartingSequenceNumber {text}: {error}")))?,
        };
        let outcome = shard_group
            .segments
            .read(from, limit as usize, GET_RECORDS_BYTES_MAX as usize)
            .map_err(|error| ApiError::Internal(format!("reading the replica of {}: {error}", request.shard_id)))?;
        let records = outcome
            .records
            .into_iter()
            .map(|record| v1::Record {
                sequence_number: sequence::render(shard_index, record.sequence),
                approximate_arrival_timestamp_ms: record.timestamp_ms,
                data: record.data,
                partition_key: record.partition_key,
            })
            .collect::<Vec<_>>();
        Ok(v1::ReadReplicaResponse {
            next_sequence_number: (!records.is_empty()).then(|| sequence::render(shard_index, outcome.next_sequence)),
            records,
            node_id: self.node.id(),
        })
    }

    pub async fn get_records(&self, request: v1::GetRecordsRequest) -> Result<v1::GetRecordsResponse, ApiError> {
        let limit = request.limit.unwrap_or(GET_RECORDS_MAX);
        validate_page_size(limit, "limit")?;
        if request.shard_iterator.is_empty() || request.shard_iterator.len() > 512 {
            return Err(ApiError::validation(
                &request.shard_iterator,
                "shardIterator",
                "Member must have length between 1 and 512",
            ));
        }
        let iterator = self
            .iterators
            .decode(&request.shard_iterator)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let now = self.node.seams.clock.now_ms();
        if now - iterator.issued_ms > ITERATOR_TTL_MS {
            return Err(ApiError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                aws_time(iterator.issued_ms),
                aws_time(now)
            )));
        }
        let mut stream = self.stream_for_records(&iterator.stream).await?;
        if stream.created_ms != iterator.stream_created_ms {
            // This node may not have applied the stream's re-creation yet.
            stream = self.stream(&iterator.stream).await?;
        }
        if stream.created_ms != iterator.stream_created_ms {
            return Err(self.stream_not_found(&iterator.stream));
        }
        let shard = stream
            .shard(iterator.shard_index)
            .ok_or_else(|| ApiError::InvalidArgument("Invalid ShardIterator.".into()))?
            .clone();
        let start = match iterator.position {
            Position::AtSequence(sequence) => wire::forward_read::Start::AtSequence(sequence),
            Position::AtTimestamp(timestamp) => wire::forward_read::Start::AtTimestampMs(timestamp),
            Position::TrimHorizon => wire::forward_read::Start::TrimHorizon(wire::Blank {}),
        };
        let read = wire::ForwardRead { start: Some(start), limit, bytes_max: GET_RECORDS_BYTES_MAX };
        let result =
            self.node.read(&shard, read).await.map_err(|error| self.rate_exceeded(error, &stream.name, shard.index))?;
        let records: Vec<v1::Record> = result
            .records
            .into_iter()
            .map(|record| v1::Record {
                sequence_number: sequence::render(shard.index, record.sequence),
                approximate_arrival_timestamp_ms: record.timestamp_ms,
                data: record.data,
                partition_key: record.partition_key,
            })
            .collect();
        // At a sealed shard's end the reader moves on to the children, as Kinesis tells it.
        let ended = result.sealed_at_index.is_some_and(|index| result.next_sequence >= sequence::first_of_batch(index))
            || (crate::planted::active(crate::planted::Bug::EndShardEarly)
                && result.sealed_at_index.is_some()
                && !records.is_empty());
        if ended {
            let mut children: Vec<v1::ChildShard> =
                stream.children_of(shard.index).map(|child| self.child_shard(child)).collect();
            if children.is_empty() {
                // This node has not applied the reshard yet; the leader that sealed it has.
                let current = self.stream(&stream.name).await?;
                children = current.children_of(shard.index).map(|child| self.child_shard(child)).collect();
            }
            return Ok(v1::GetRecordsResponse {
                records,
                next_shard_iterator: None,
                millis_behind_latest: 0,
                child_shards: children,
            });
        }
        let next = ShardIterator { position: Position::AtSequence(result.next_sequence), issued_ms: now, ..iterator };
        Ok(v1::GetRecordsResponse {
            records,
            next_shard_iterator: Some(self.iterators.encode(&next)),
            millis_behind_latest: result.millis_behind_latest,
            child_shards: Vec::new(),
        })
    }
}
