"""Stream metadata operations through boto3: retention, tags, enhanced monitoring, limits,
resource policies, and the honest refusal of server-side encryption."""

import json
import uuid

import pytest
from botocore.exceptions import ClientError


def error_type(excinfo):
    return excinfo.value.response["Error"]["Code"]


def error_message(excinfo):
    return excinfo.value.response["Error"]["Message"]


def stream_arn(kinesis, name):
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


# Retention


def test_retention_increases_and_decreases(kinesis, stream):
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["RetentionPeriodHours"] == 48
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 48
    kinesis.decrease_stream_retention_period(StreamARN=summary["StreamARN"], RetentionPeriodHours=24)
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["RetentionPeriodHours"] == 24


def test_retention_direction_and_range_are_checked(kinesis, stream):
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=72)
    with pytest.raises(ClientError) as shorter:
        kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert error_type(shorter) == "InvalidArgumentException"
    assert error_message(shorter) == (
        f"Requested retention period (48 hours) for stream {stream} can not be shorter than existing retention "
        "period (72 hours). Use DecreaseRetentionPeriod API."
    )
    with pytest.raises(ClientError) as longer:
        kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=96)
    assert error_type(longer) == "InvalidArgumentException"
    assert "Use IncreaseRetentionPeriod API." in error_message(longer)
    for hours in (23, 8761):
        with pytest.raises(ClientError) as out_of_range:
            kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=hours)
        assert error_type(out_of_range) == "InvalidArgumentException"
        assert "Minimum allowed retention period is 24 hours and maximum is 8760 hours" in error_message(out_of_range)
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=8760)


def test_retention_of_a_missing_stream(kinesis, raw_kinesis):
    with pytest.raises(ClientError) as missing:
        kinesis.increase_stream_retention_period(StreamName=f"nope-{uuid.uuid4().hex[:8]}", RetentionPeriodHours=48)
    assert error_type(missing) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as absent:
        raw_kinesis.increase_stream_retention_period(StreamName="x")
    assert error_type(absent) == "ValidationException"


# Tags


def test_tags_add_list_page_and_remove(kinesis, stream):
    kinesis.add_tags_to_stream(StreamName=stream, Tags={"b": "2", "a": "1", "c": ""})
    listed = kinesis.list_tags_for_stream(StreamName=stream)
    assert listed["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": ""}]
    assert listed["HasMoreTags"] is False
    page = kinesis.list_tags_for_stream(StreamName=stream, Limit=1, ExclusiveStartTagKey="a")
    assert page["Tags"] == [{"Key": "b", "Value": "2"}]
    assert page["HasMoreTags"] is True
    kinesis.add_tags_to_stream(StreamName=stream, Tags={"a": "overwritten"})
    kinesis.remove_tags_from_stream(StreamName=stream, TagKeys=["b", "never-there"])
    listed = kinesis.list_tags_for_stream(StreamName=stream)
    assert listed["Tags"] == [{"Key": "a", "Value": "overwritten"}, {"Key": "c", "Value": ""}]


def test_tag_limits(kinesis, raw_kinesis, stream):
    with pytest.raises(ClientError) as per_call:
        kinesis.add_tags_to_stream(StreamName=stream, Tags={f"k{i}": "v" for i in range(11)})
    assert error_type(per_call) == "InvalidArgumentException"
    for batch in range(5):
        kinesis.add_tags_to_stream(StreamName=stream, Tags={f"k{batch}-{i}": "v" for i in range(10)})
    with pytest.raises(ClientError) as per_stream:
        kinesis.add_tags_to_stream(StreamName=stream, Tags={"one-too-many": "v"})
    assert error_type(per_stream) == "LimitExceededException"
    with pytest.raises(ClientError) as long_key:
        raw_kinesis.add_tags_to_stream(StreamName=stream, Tags={"k" * 129: "v"})
    assert error_type(long_key) == "InvalidArgumentException"
    with pytest.raises(ClientError) as long_value:
        raw_kinesis.add_tags_to_stream(StreamName=stream, Tags={"k0-0": "v" * 257})
    assert error_type(long_value) == "InvalidArgumentException"
    with pytest.raises(ClientError) as bad_limit:
        raw_kinesis.list_tags_for_stream(StreamName=stream, Limit=51)
    assert error_type(bad_limit) == "ValidationException"
    with pytest.raises(ClientError) as no_tags:
        raw_kinesis.add_tags_to_stream(StreamName=stream)
    assert error_type(no_tags) == "ValidationException"


def test_tags_on_create_stream(kinesis):
    name = f"compat-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=1, Tags={"team": "riffle", "env": "test"})
    try:
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        tags = kinesis.list_tags_for_stream(StreamName=name)["Tags"]
        assert tags == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "riffle"}]
    finally:
        kinesis.delete_stream(StreamName=name)


def test_resource_tagging_by_arn(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    kinesis.tag_resource(ResourceARN=arn, Tags={"x": "1", "y": "2"})
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "x", "Value": "1"},
        {"Key": "y", "Value": "2"},
    ]
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["x"])
    assert kinesis.list_tags_for_stream(StreamName=stream)["Tags"] == [{"Key": "y", "Value": "2"}]
    with pytest.raises(ClientError) as consumer:
        kinesis.list_tags_for_resource(ResourceARN=f"{arn}/consumer/c:1700000000")
    assert error_type(consumer) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as missing:
        kinesis.list_tags_for_resource(ResourceARN=arn.rsplit("/", 1)[0] + "/nope-stream")
    assert error_type(missing) == "ResourceNotFoundException"


# Enhanced monitoring


def test_enhanced_monitoring_is_recorded(kinesis, stream):
    enabled = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes"])
    assert enabled["StreamName"] == stream
    assert enabled["CurrentShardLevelMetrics"] == []
    assert enabled["DesiredShardLevelMetrics"] == ["IncomingBytes"]
    everything = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
    assert everything["CurrentShardLevelMetrics"] == ["IncomingBytes"]
    assert len(everything["DesiredShardLevelMetrics"]) == 7
    disabled = kinesis.disable_enhanced_monitoring(
        StreamName=stream, ShardLevelMetrics=["IncomingBytes", "OutgoingBytes"]
    )
    assert len(disabled["CurrentShardLevelMetrics"]) == 7
    assert "IncomingBytes" not in disabled["DesiredShardLevelMetrics"]
    assert len(disabled["DesiredShardLevelMetrics"]) == 5
    monitoring = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["EnhancedMonitoring"]
    assert sorted(monitoring[0]["ShardLevelMetrics"]) == sorted(disabled["DesiredShardLevelMetrics"])
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert sorted(summary["EnhancedMonitoring"][0]["ShardLevelMetrics"]) == sorted(
        disabled["DesiredShardLevelMetrics"]
    )


def test_enhanced_monitoring_errors(kinesis, raw_kinesis, stream):
    with pytest.raises(ClientError) as unknown:
        raw_kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["Nope"])
    assert error_type(unknown) == "ValidationException"
    with pytest.raises(ClientError) as missing:
        kinesis.enable_enhanced_monitoring(StreamName=f"nope-{uuid.uuid4().hex[:8]}", ShardLevelMetrics=["ALL"])
    assert error_type(missing) == "ResourceNotFoundException"


# Limits


def test_describe_limits_counts_open_shards(kinesis, stream):
    limits = kinesis.describe_limits()
    assert limits["OpenShardCount"] >= 4
    assert limits["ShardLimit"] >= limits["OpenShardCount"]
    assert limits["OnDemandStreamCount"] == 0
    assert limits["OnDemandStreamCountLimit"] == 50


# Resource policies


def test_resource_policy_put_get_delete(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kinesis:GetRecords", "Resource": arn}
            ],
        }
    )
    kinesis.put_resource_policy(ResourceARN=arn, Policy=policy)
    assert json.loads(kinesis.get_resource_policy(ResourceARN=arn)["Policy"]) == json.loads(policy)
    kinesis.delete_resource_policy(ResourceARN=arn)
    assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"


def test_resource_policy_errors(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    with pytest.raises(ClientError) as not_json:
        kinesis.put_resource_policy(ResourceARN=arn, Policy="not json")
    assert error_type(not_json) == "InvalidArgumentException"
    with pytest.raises(ClientError) as too_big:
        kinesis.put_resource_policy(ResourceARN=arn, Policy=json.dumps({"Sid": "x" * (20 * 1024)}))
    assert error_type(too_big) == "InvalidArgumentException"
    with pytest.raises(ClientError) as missing:
        kinesis.get_resource_policy(ResourceARN=arn.rsplit("/", 1)[0] + "/nope-stream")
    assert error_type(missing) == "ResourceNotFoundException"


# Encryption


def test_server_side_encryption_is_refused_honestly(kinesis, stream):
    for call in (kinesis.start_stream_encryption, kinesis.stop_stream_encryption):
        with pytest.raises(ClientError) as refused:
            call(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        assert error_type(refused) == "InvalidArgumentException"
        assert error_message(refused) == "Server-side encryption is not supported by this server yet."
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["EncryptionType"] == "NONE"
