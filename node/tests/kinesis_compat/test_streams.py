"""Stream lifecycle and data operations through boto3, compared with what AWS answers."""

import base64
import subprocess
import sys
import os
import uuid

import pytest
from botocore.exceptions import ClientError


def error_type(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_create_describe_and_list(kinesis, stream):
    description = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    assert description["StreamName"] == stream
    assert description["StreamStatus"] == "ACTIVE"
    assert description["StreamARN"].startswith("arn:aws:kinesis:us-east-1:")
    assert description["StreamARN"].endswith(f":stream/{stream}")
    shards = description["Shards"]
    assert [shard["ShardId"] for shard in shards] == [f"shardId-{index:012d}" for index in range(4)]
    assert shards[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    for left, right in zip(shards, shards[1:]):
        assert int(left["HashKeyRange"]["EndingHashKey"]) + 1 == int(right["HashKeyRange"]["StartingHashKey"])
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    assert stream in kinesis.list_streams()["StreamNames"]
    listed = kinesis.list_shards(StreamName=stream)["Shards"]
    assert [shard["ShardId"] for shard in listed] == [shard["ShardId"] for shard in shards]


def test_put_and_get_in_order_per_shard(kinesis, stream):
    sent = {}
    for number in range(40):
        data = f"record-{number}".encode()
        response = kinesis.put_record(StreamName=stream, Data=data, PartitionKey=f"key-{number % 7}")
        sent.setdefault(response["ShardId"], []).append((response["SequenceNumber"], data))
    batch = kinesis.put_records(
        StreamName=stream,
        Records=[{"Data": f"batch-{number}".encode(), "PartitionKey": f"key-{number % 7}"} for number in range(60)],
    )
    assert batch["FailedRecordCount"] == 0
    for number, result in enumerate(batch["Records"]):
        sent.setdefault(result["ShardId"], []).append((result["SequenceNumber"], f"batch-{number}".encode()))
    for shard_id, records in sent.items():
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        received = []
        for _ in range(100):
            page = kinesis.get_records(ShardIterator=iterator, Limit=25)
            received.extend((record["SequenceNumber"], record["Data"]) for record in page["Records"])
            iterator = page["NextShardIterator"]
            if not page["Records"] and page["MillisBehindLatest"] == 0:
                break
        assert received == records, f"shard {shard_id} read back differently"
        numbers = [int(sequence) for sequence, _ in received]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_iterator_types(kinesis, stream):
    first = kinesis.put_record(StreamName=stream, Data=b"one", PartitionKey="same")
    second = kinesis.put_record(StreamName=stream, Data=b"two", PartitionKey="same")
    shard_id = first["ShardId"]

    def read(**position):
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)["ShardIterator"]
        return [record["Data"] for record in kinesis.get_records(ShardIterator=iterator)["Records"]]

    assert read(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"]) == [
        b"one",
        b"two",
    ]
    assert read(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"]) == [b"two"]
    assert read(ShardIteratorType="LATEST") == []
    records = kinesis.get_records(
        ShardIterator=kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    )["Records"]
    arrival = records[0]["ApproximateArrivalTimestamp"]
    assert read(ShardIteratorType="AT_TIMESTAMP", Timestamp=arrival)[:2] == [b"one", b"two"]
    assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])


def test_unknown_stream(kinesis):
    with pytest.raises(ClientError) as excinfo:
        kinesis.describe_stream(StreamName=f"missing-{uuid.uuid4().hex[:8]}")
    assert error_type(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        kinesis.put_record(StreamName=f"missing-{uuid.uuid4().hex[:8]}", Data=b"x", PartitionKey="k")
    assert error_type(excinfo) == "ResourceNotFoundException"


def test_bad_names_and_sizes_are_refused_by_the_server(raw_kinesis, stream):
    with pytest.raises(ClientError) as excinfo:
        raw_kinesis.create_stream(StreamName="bad name!", ShardCount=1)
    assert error_type(excinfo) == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        raw_kinesis.put_record(StreamName=stream, Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
    assert error_type(excinfo) == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        raw_kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="")
    assert error_type(excinfo) == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        raw_kinesis.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": "k"}] * 501)
    assert error_type(excinfo) == "ValidationException"


def test_forged_iterator_is_refused(kinesis, stream):
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    raw = bytearray(base64.b64decode(iterator))
    raw[10] ^= 0x01
    with pytest.raises(ClientError) as excinfo:
        kinesis.get_records(ShardIterator=base64.b64encode(bytes(raw)).decode())
    assert error_type(excinfo) == "InvalidArgumentException"


def test_existing_stream_is_in_use(kinesis, stream):
    with pytest.raises(ClientError) as excinfo:
        kinesis.create_stream(StreamName=stream, ShardCount=1)
    assert error_type(excinfo) == "ResourceInUseException"


def test_aws_cli(stream):
    from conftest import endpoint

    environment = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="AKIDRIFFLETEST",
        AWS_SECRET_ACCESS_KEY="riffle-test-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    aws = [sys.executable, "-m", "awscli", "kinesis", "--endpoint-url", endpoint(), "--output", "json"]
    listed = subprocess.run(aws + ["list-streams"], capture_output=True, text=True, env=environment, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert stream in listed.stdout
    put = subprocess.run(
        aws + ["put-record", "--stream-name", stream, "--partition-key", "cli", "--data", "aGVsbG8="],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert put.returncode == 0, put.stderr
    assert '"SequenceNumber"' in put.stdout
    missing = subprocess.run(
        aws + ["describe-stream", "--stream-name", "no-such-stream-here"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr
