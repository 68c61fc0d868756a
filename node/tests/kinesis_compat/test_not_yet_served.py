"""Operations whose capability another part of Riffle builds (on-demand mode, enhanced fan-out): until then they must be refused with a typed error and change nothing —
never a fake success."""

import pytest
from botocore.exceptions import ClientError


def refused(call, **arguments):
    with pytest.raises(ClientError) as excinfo:
        call(**arguments)
    error = excinfo.value.response["Error"]
    assert error["Code"] == "InvalidArgumentException", error
    assert "not supported" in error["Message"], error


def test_mode_changes_are_refused_and_change_nothing(kinesis, stream):
    before = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    refused(kinesis.update_stream_mode, StreamARN=before["StreamARN"], StreamModeDetails={"StreamMode": "ON_DEMAND"})
    after = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    assert [shard["ShardId"] for shard in after["Shards"]] == [shard["ShardId"] for shard in before["Shards"]]
    assert after["StreamStatus"] == "ACTIVE"
