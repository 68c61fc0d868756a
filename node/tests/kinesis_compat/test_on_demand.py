"""ON_DEMAND capacity mode through boto3: the mode shown wherever Kinesis shows it, UpdateStreamMode
with its UPDATING phase and AWS's errors, hand resharding refused, the stream splitting a hot
shard and merging cold ones by itself while every record stays in order per key, and DeleteStream's
DELETING phase.

The compatibility cluster runs with low on-demand thresholds (scripts/kinesis-compat sets them with
`riffle-node dev --set on_demand.…`): a shard taking more than 64 KiB/s or 200 records/s over 2 s
splits; two neighbours taking together less than 16 KiB/s and 50 records/s over 3 s merge."""

import time
import uuid

import pytest
from botocore.exceptions import ClientError

from test_resharding import read_lineage, shards_of

WAIT = {"Delay": 0.2, "MaxAttempts": 150}
ACCOUNT = "000000000000"
# Polls for a state the cluster reaches by itself: bounded, each a quarter of a second apart.
POLLS_MAX = 240
# PutRecords calls of the hot phase at most. The split needs the hot load to last 2 s (the
# cluster's split_after_ms), and a call answered at once (throttled) takes a few milliseconds on
# a fast build, so the bound is in calls enough for tens of seconds, not in time.
HOT_CALLS_MAX = 4_000


def error_of(call, **arguments):
    with pytest.raises(ClientError) as excinfo:
        call(**arguments)
    return excinfo.value.response["Error"]


def open_shards(kinesis, stream):
    return [shard for shard in shards_of(kinesis, stream).values() if "EndingSequenceNumber" not in shard["SequenceNumberRange"]]


@pytest.fixture
def on_demand_stream(kinesis):
    name = f"compat-od-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=WAIT)
    yield name
    kinesis.delete_stream(StreamName=name)


def mode_everywhere(kinesis, stream):
    description = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    listed = [
        entry
        for page in kinesis.get_paginator("list_streams").paginate()
        for entry in page["StreamSummaries"]
        if entry["StreamName"] == stream
    ]
    modes = {description["StreamModeDetails"]["StreamMode"], summary["StreamModeDetails"]["StreamMode"]}
    modes.update(entry["StreamModeDetails"]["StreamMode"] for entry in listed)
    assert len(modes) == 1, modes
    return modes.pop()


def test_an_on_demand_stream_starts_with_four_shards_and_says_so(kinesis, on_demand_stream):
    assert mode_everywhere(kinesis, on_demand_stream) == "ON_DEMAND"
    summary = kinesis.describe_stream_summary(StreamName=on_demand_stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    limits = kinesis.describe_limits()
    assert limits["OnDemandStreamCount"] >= 1
    assert limits["OnDemandStreamCountLimit"] == 50


def test_shard_count_with_on_demand_mode_is_refused(kinesis):
    error = error_of(
        kinesis.create_stream,
        StreamName=f"compat-od-{uuid.uuid4().hex[:10]}",
        ShardCount=2,
        StreamModeDetails={"StreamMode": "ON_DEMAND"},
    )
    assert error["Code"] == "InvalidArgumentException"
    assert "ShardCount" in error["Message"]


def test_hand_resharding_of_an_on_demand_stream_is_refused_and_changes_nothing(kinesis, on_demand_stream):
    before = shards_of(kinesis, on_demand_stream)
    shard = before["shardId-000000000000"]
    start, end = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    for call, arguments in [
        (kinesis.split_shard, {"ShardToSplit": "shardId-000000000000", "NewStartingHashKey": str((start + end) // 2)}),
        (kinesis.merge_shards, {"ShardToMerge": "shardId-000000000000", "AdjacentShardToMerge": "shardId-000000000001"}),
        (kinesis.update_shard_count, {"TargetShardCount": 8, "ScalingType": "UNIFORM_SCALING"}),
    ]:
        error = error_of(call, StreamName=on_demand_stream, **arguments)
        assert error["Code"] == "InvalidArgumentException", error
        assert "ON_DEMAND" in error["Message"], error
    assert shards_of(kinesis, on_demand_stream) == before


def test_update_stream_mode_switches_through_updating(kinesis, stream):
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    assert mode_everywhere(kinesis, stream) == "PROVISIONED"
    # The mode a stream has already: nothing changes (tools send it on every refresh).
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
    assert status in ("UPDATING", "ACTIVE")
    # Switching straight back races the completion of the first switch: refused while the stream
    # is UPDATING, taken once it is ACTIVE again. Either way the stream ends PROVISIONED after two
    # switches.
    try:
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
        switched_back = True
    except ClientError as refused:
        error = refused.response["Error"]
        assert error["Code"] == "ResourceInUseException", error
        assert error["Message"] == f"Stream {stream} under account {ACCOUNT} not ACTIVE, instead in state UPDATING"
        switched_back = False
    if not switched_back:
        kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
        assert mode_everywhere(kinesis, stream) == "ON_DEMAND"
        # Switching keeps the shards the stream had.
        assert len(open_shards(kinesis, stream)) == 4
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    assert mode_everywhere(kinesis, stream) == "PROVISIONED"
    assert len(open_shards(kinesis, stream)) == 4
    # Twice a day at most.
    error = error_of(kinesis.update_stream_mode, StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert error["Code"] == "LimitExceededException"
    assert mode_everywhere(kinesis, stream) == "PROVISIONED"


def test_update_stream_mode_bad_requests(kinesis, raw_kinesis, stream):
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    error = error_of(raw_kinesis.update_stream_mode, StreamARN=arn, StreamModeDetails={"StreamMode": "FAST"})
    assert error["Code"] == "ValidationException"
    assert "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]" in error["Message"]
    error = error_of(raw_kinesis.update_stream_mode, StreamARN=arn)
    assert error["Code"] == "ValidationException"
    assert "Value null at 'streamModeDetails'" in error["Message"]
    error = error_of(raw_kinesis.update_stream_mode, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert error["Code"] == "ValidationException"
    assert "Value null at 'streamARN'" in error["Message"]
    missing = arn.replace(stream, "no-such-stream")
    error = error_of(kinesis.update_stream_mode, StreamARN=missing, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert error["Code"] == "ResourceNotFoundException"
    assert mode_everywhere(kinesis, stream) == "PROVISIONED"


def test_a_hot_shard_splits_and_cold_shards_merge_by_themselves(kinesis, on_demand_stream):
    stream = on_demand_stream
    attempted, acknowledged = [], []
    batch = 0
    # Hot: one partition key, well above 200 records/s and 64 KiB/s, until the stream splits. A
    # record may fail while the shard changes leader or splits (InternalFailure, which producers
    # retry); the test does not retry, so that every record is sent once.
    for _ in range(HOT_CALLS_MAX):
        records = [{"Data": f"hot-{batch}-{index}".encode() + b"." * 300, "PartitionKey": "hot"} for index in range(100)]
        result = kinesis.put_records(StreamName=stream, Records=records)
        attempted.extend(record["Data"] for record in records)
        for record, outcome in zip(records, result["Records"]):
            if "SequenceNumber" in outcome:
                acknowledged.append(record["Data"])
            else:
                assert outcome["ErrorCode"] in ("InternalFailure", "ProvisionedThroughputExceededException"), outcome
        batch += 1
        if len(open_shards(kinesis, stream)) > 4 or len(shards_of(kinesis, stream)) > 4:
            break
    else:
        raise AssertionError("the hot shard did not split")
    # Cold: nothing written; the stream merges back down to its minimum of 4.
    merged = False
    for _ in range(POLLS_MAX):
        shards = shards_of(kinesis, stream)
        merged = any(shard.get("AdjacentParentShardId") for shard in shards.values())
        status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        if merged and len(open_shards(kinesis, stream)) == 4 and status == "ACTIVE":
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"the cold shards did not merge back to 4: {shards_of(kinesis, stream)}")
    assert mode_everywhere(kinesis, stream) == "ON_DEMAND"
    records, _ = read_lineage(kinesis, stream)
    hot = [record["Data"] for record in records if record["PartitionKey"] == "hot"]
    # Every acknowledged record once, in the order sent; a failed one (outcome unknown) at most
    # once, in its place; nothing that was not sent.
    assert len(hot) == len(set(hot)), "a hot record was read twice"
    position = {data: index for index, data in enumerate(attempted)}
    assert all(data in position for data in hot), "a record that was never sent was read"
    assert [position[data] for data in hot] == sorted(position[data] for data in hot), "the hot key's records are out of order"
    assert set(acknowledged) <= set(hot), "an acknowledged record is missing across the lineage"
    assert len(acknowledged) > 0


def test_a_deleted_stream_is_deleting_then_gone(kinesis):
    name = f"compat-del-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=WAIT)
    kinesis.delete_stream(StreamName=name)
    # DELETING, or already gone (the metadata leader purges it within moments); never ACTIVE.
    # (That the name stays taken while DELETING is checked by the metadata state machine's tests.)
    try:
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        assert status == "DELETING"
    except ClientError as gone:
        assert gone.response["Error"]["Code"] == "ResourceNotFoundException"
    kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig=WAIT)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=WAIT)
    kinesis.delete_stream(StreamName=name)
