"""Operations whose capability another part of Riffle builds (enhanced fan-out's push delivery):
until then they must be refused with a typed error and change nothing — never a fake success."""

import pytest
from botocore.exceptions import ClientError


def test_subscribe_to_shard_is_refused_and_changes_nothing(kinesis, stream):
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="pushed")["Consumer"]
    with pytest.raises(ClientError) as excinfo:
        kinesis.subscribe_to_shard(
            ConsumerARN=consumer["ConsumerARN"],
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "LATEST"},
        )
    error = excinfo.value.response["Error"]
    assert error["Code"] == "InvalidArgumentException", error
    assert "not supported" in error["Message"], error
    listed = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [entry["ConsumerName"] for entry in listed] == ["pushed"]
    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
