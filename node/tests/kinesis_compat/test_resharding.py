"""SplitShard and MergeShards through boto3: lineage, closed shards, ChildShards at a closed
shard's end, records kept in order per partition key across the lineage, and AWS's errors for
bad requests (each of which changes nothing)."""

import pytest
from botocore.exceptions import ClientError

WAIT = {"Delay": 0.2, "MaxAttempts": 150}
ACCOUNT = "000000000000"


def shards_of(kinesis, stream):
    return {shard["ShardId"]: shard for shard in kinesis.list_shards(StreamName=stream)["Shards"]}


def read_shard(kinesis, stream, shard_id):
    """Every record of a shard from TRIM_HORIZON, and the ChildShards its end names (if closed)."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records = []
    for _ in range(1000):
        page = kinesis.get_records(ShardIterator=iterator)
        records.extend(page["Records"])
        if "NextShardIterator" not in page:
            return records, page.get("ChildShards", [])
        if not page["Records"] and page["MillisBehindLatest"] == 0:
            return records, None
        iterator = page["NextShardIterator"]
    raise AssertionError(f"{shard_id} did not end within 1000 pages")


def read_lineage(kinesis, stream):
    """Every record of the stream, each shard read after its parents, as a KCL-style reader does."""
    shards = shards_of(kinesis, stream)
    done, order, records = set(), [], []
    while len(done) < len(shards):
        ready = [
            shard_id
            for shard_id, shard in shards.items()
            if shard_id not in done
            and all(parent in done for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if parent)
        ]
        assert ready, f"a lineage cycle among {shards}"
        for shard_id in sorted(ready):
            shard_records, children = read_shard(kinesis, stream, shard_id)
            if "EndingSequenceNumber" in shards[shard_id]["SequenceNumberRange"]:
                listed = sorted(child["ShardId"] for child in children)
                expected = sorted(
                    child_id
                    for child_id, child in shards.items()
                    if shard_id in (child.get("ParentShardId"), child.get("AdjacentParentShardId"))
                )
                assert listed == expected, f"{shard_id} ends naming {listed}, its children are {expected}"
            records.extend(shard_records)
            order.append(shard_id)
            done.add(shard_id)
    return records, order


def put(kinesis, stream, prefix, count, keys=8):
    for index in range(count):
        kinesis.put_record(StreamName=stream, Data=f"{prefix}-{index}".encode(), PartitionKey=f"key-{index % keys}")


def test_a_split_and_a_merge_keep_every_record_in_order_per_key(kinesis, stream):
    shards = shards_of(kinesis, stream)
    first = shards["shardId-000000000000"]
    start, end = int(first["HashKeyRange"]["StartingHashKey"]), int(first["HashKeyRange"]["EndingHashKey"])
    middle = (start + end) // 2
    put(kinesis, stream, "before", 40)

    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(middle))
    put(kinesis, stream, "during", 40)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    shards = shards_of(kinesis, stream)
    assert "EndingSequenceNumber" in shards["shardId-000000000000"]["SequenceNumberRange"]
    low, high = shards["shardId-000000000004"], shards["shardId-000000000005"]
    assert low["ParentShardId"] == high["ParentShardId"] == "shardId-000000000000"
    assert low["HashKeyRange"] == {"StartingHashKey": str(start), "EndingHashKey": str(middle - 1)}
    assert high["HashKeyRange"] == {"StartingHashKey": str(middle), "EndingHashKey": str(end)}
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 5

    kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000005", AdjacentShardToMerge="shardId-000000000004")
    put(kinesis, stream, "after", 40)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    merged = shards_of(kinesis, stream)["shardId-000000000006"]
    assert (merged["ParentShardId"], merged["AdjacentParentShardId"]) == ("shardId-000000000005", "shardId-000000000004")
    assert merged["HashKeyRange"] == first["HashKeyRange"]
    assert "EndingSequenceNumber" not in merged["SequenceNumberRange"]

    records, order = read_lineage(kinesis, stream)
    values = [record["Data"].decode() for record in records]
    expected = [f"{prefix}-{index}" for prefix in ("before", "during", "after") for index in range(40)]
    assert sorted(values) == sorted(expected), "records lost or duplicated across the lineage"
    assert order.index("shardId-000000000000") < order.index("shardId-000000000004") < order.index("shardId-000000000006")
    for key in range(8):
        seen = [value for record, value in zip(records, values) if record["PartitionKey"] == f"key-{key}"]
        phases = [value.split("-")[0] for value in seen]
        rank = {"before": 0, "during": 1, "after": 2}
        assert [rank[phase] for phase in phases] == sorted(rank[phase] for phase in phases), (key, seen)
        numbers = [int(value.split("-")[1]) for value in seen]
        for phase in rank:
            within = [number for number, name in zip(numbers, phases) if name == phase]
            assert within == sorted(within), (key, seen)


def error_of(call, **arguments):
    with pytest.raises(ClientError) as excinfo:
        call(**arguments)
    return excinfo.value.response["Error"]


def test_bad_reshards_get_aws_errors_and_change_nothing(kinesis, stream):
    before = shards_of(kinesis, stream)
    first = before["shardId-000000000000"]
    start = int(first["HashKeyRange"]["StartingHashKey"])
    end = int(first["HashKeyRange"]["EndingHashKey"])

    error = error_of(kinesis.split_shard, StreamName=stream, ShardToSplit="shardId-000000000009", NewStartingHashKey="5")
    assert error == {
        "Code": "ResourceNotFoundException",
        "Message": f"Could not find shard shardId-000000000009 in stream {stream} under account {ACCOUNT}.",
    }
    error = error_of(kinesis.split_shard, StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(end + 5))
    assert error["Code"] == "InvalidArgumentException"
    assert error["Message"] == (
        f"NewStartingHashKey {end + 5} used in SplitShard() on shard shardId-000000000000 in stream {stream} "
        f"under account {ACCOUNT} is not both greater than one plus the shard's StartingHashKey {start} and less "
        f"than the shard's EndingHashKey {end}."
    )
    error = error_of(kinesis.split_shard, StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(start + 1))
    assert error["Code"] == "InvalidArgumentException"
    error = error_of(
        kinesis.merge_shards, StreamName=stream, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000002"
    )
    assert error == {
        "Code": "InvalidArgumentException",
        "Message": f"Shards shardId-000000000000 and shardId-000000000002 in stream {stream} under account {ACCOUNT} "
        "are not an adjacent pair of shards eligible for merging",
    }
    error = error_of(kinesis.split_shard, StreamName="no-such-stream", ShardToSplit="shardId-000000000000", NewStartingHashKey="5")
    assert error["Code"] == "ResourceNotFoundException"
    assert shards_of(kinesis, stream) == before
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

    # A closed shard cannot be resharded again. (A second reshard while one runs is refused with
    # ResourceInUseException; how long a reshard runs is not up to a client, so the metadata
    # state machine's unit tests check that refusal, not this suite.)
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(start + end // 2))
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    error = error_of(kinesis.split_shard, StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(start + 10))
    assert error == {
        "Code": "ResourceInUseException",
        "Message": f"Shard shardId-000000000000 in stream {stream} under account {ACCOUNT} has already been merged or "
        "split, and thus is not eligible for merging or splitting.",
    }


def test_update_shard_count_scales_2_to_8_and_back_under_writes_keeping_every_record(kinesis):
    import threading
    import uuid

    stream = f"scale-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    acknowledged, stop = [], threading.Event()

    def write():
        index = 0
        while not stop.is_set() or index < 20:
            kinesis.put_record(StreamName=stream, Data=f"v-{index}".encode(), PartitionKey=f"key-{index % 16}")
            acknowledged.append(f"v-{index}")
            index += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for current, target in [(2, 4), (4, 8), (8, 4), (4, 2)]:
            answer = kinesis.update_shard_count(StreamName=stream, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
            assert (answer["StreamName"], answer["CurrentShardCount"], answer["TargetShardCount"]) == (stream, current, target)
            kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
            open_shards = [
                shard for shard in shards_of(kinesis, stream).values() if "EndingSequenceNumber" not in shard["SequenceNumberRange"]
            ]
            assert len(open_shards) == target
            widths = {int(shard["HashKeyRange"]["EndingHashKey"]) - int(shard["HashKeyRange"]["StartingHashKey"]) for shard in open_shards}
            assert max(widths) - min(widths) <= 1, "uniform scaling gives even ranges"
    finally:
        stop.set()
        writer.join()
    records, _ = read_lineage(kinesis, stream)
    values = [record["Data"].decode() for record in records]
    assert sorted(values) == sorted(acknowledged), "records lost or duplicated across scaling"
    for key in range(16):
        numbers = [int(value.split("-")[1]) for record, value in zip(records, values) if record["PartitionKey"] == f"key-{key}"]
        assert numbers == sorted(numbers), f"key-{key} out of order across the lineage: {numbers}"

    error = error_of(kinesis.update_shard_count, StreamName=stream, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    assert error == {
        "Code": "LimitExceededException",
        "Message": "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: 2, Target shard count: 5",
    }
    error = error_of(kinesis.update_shard_count, StreamName="no-such-stream", TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    assert error["Code"] == "ResourceNotFoundException"
    kinesis.delete_stream(StreamName=stream)


def test_list_shards_filters_select_by_lineage_and_time(kinesis, stream):
    import datetime

    created = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    first = shards_of(kinesis, stream)["shardId-000000000000"]
    middle = (int(first["HashKeyRange"]["StartingHashKey"]) + int(first["HashKeyRange"]["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(middle))
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=WAIT)
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)

    def listed(**shard_filter):
        answer = kinesis.list_shards(StreamName=stream, ShardFilter=shard_filter)
        return [int(shard["ShardId"][-4:]) for shard in answer["Shards"]]

    assert listed(Type="AT_TRIM_HORIZON") == [0, 1, 2, 3]
    assert listed(Type="FROM_TRIM_HORIZON") == [0, 1, 2, 3, 4, 5]
    assert listed(Type="AT_LATEST") == [1, 2, 3, 4, 5]
    assert listed(Type="AFTER_SHARD_ID", ShardId="shardId-000000000003") == [4, 5]
    assert listed(Type="AT_TIMESTAMP", Timestamp=created) == [0, 1, 2, 3]
    assert listed(Type="AT_TIMESTAMP", Timestamp=after) == [1, 2, 3, 4, 5]
    assert listed(Type="FROM_TIMESTAMP", Timestamp=created) == [0, 1, 2, 3, 4, 5]
    assert listed(Type="FROM_TIMESTAMP", Timestamp=after) == [1, 2, 3, 4, 5]

    page = kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AT_LATEST"}, MaxResults=2)
    assert [shard["ShardId"] for shard in page["Shards"]] == ["shardId-000000000001", "shardId-000000000002"]
    rest = kinesis.list_shards(NextToken=page["NextToken"])
    assert [shard["ShardId"] for shard in rest["Shards"]] == [f"shardId-00000000000{index}" for index in (3, 4, 5)]
    error = error_of(kinesis.list_shards, StreamName=stream, ShardFilter={"Type": "AT_TIMESTAMP"})
    assert error["Code"] == "InvalidArgumentException"
