"""The enhanced fan-out consumer registry through boto3: register, describe (by ARN and by
stream ARN and name), list, deregister, and the errors AWS gives. SubscribeToShard is not
offered yet."""

import re
import uuid

import pytest
from botocore.exceptions import ClientError


def error_type(excinfo):
    return excinfo.value.response["Error"]["Code"]


def error_message(excinfo):
    return excinfo.value.response["Error"]["Message"]


def stream_arn(kinesis, name):
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def test_a_consumer_is_registered_described_listed_and_deregistered(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app-1", Tags={"team": "a"})["Consumer"]
    assert consumer["ConsumerName"] == "app-1"
    assert consumer["ConsumerStatus"] == "ACTIVE"
    assert re.fullmatch(re.escape(arn) + r"/consumer/app-1:\d+", consumer["ConsumerARN"])
    created = consumer["ConsumerCreationTimestamp"]
    assert consumer["ConsumerARN"].endswith(f":{int(created.timestamp())}")

    by_arn = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app-1")["ConsumerDescription"]
    assert by_arn == by_name
    assert by_arn["StreamARN"] == arn
    assert by_arn["ConsumerARN"] == consumer["ConsumerARN"]
    assert by_arn["ConsumerStatus"] == "ACTIVE"
    assert by_arn["ConsumerCreationTimestamp"] == created

    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app-2")
    listed = kinesis.list_stream_consumers(StreamARN=arn)
    assert [c["ConsumerName"] for c in listed["Consumers"]] == ["app-1", "app-2"]
    assert "NextToken" not in listed
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["ConsumerCount"] == 2

    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="app-2")
    assert kinesis.list_stream_consumers(StreamARN=arn)["Consumers"] == []
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["ConsumerCount"] == 0


def test_consumers_are_listed_in_pages(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    for index in range(3):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=f"c{index}")
    first = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=2)
    assert [c["ConsumerName"] for c in first["Consumers"]] == ["c0", "c1"]
    rest = kinesis.list_stream_consumers(StreamARN=arn, NextToken=first["NextToken"])
    assert [c["ConsumerName"] for c in rest["Consumers"]] == ["c2"]
    assert "NextToken" not in rest
    pages = kinesis.get_paginator("list_stream_consumers").paginate(StreamARN=arn, PaginationConfig={"PageSize": 1})
    names = [c["ConsumerName"] for c in pages.build_full_result()["Consumers"]]
    assert names == ["c0", "c1", "c2"]
    for index in range(3):
        kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName=f"c{index}")


def test_a_duplicate_name_is_in_use(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="dup")
    try:
        with pytest.raises(ClientError) as duplicate:
            kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="dup")
        assert error_type(duplicate) == "ResourceInUseException"
        assert error_message(duplicate) == f"Consumer dup under stream {arn} already exists."
    finally:
        kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="dup")


def test_unknown_consumers_are_not_found(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    with pytest.raises(ClientError) as by_name:
        kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="nope")
    assert error_type(by_name) == "ResourceNotFoundException"
    assert error_message(by_name) == f"Consumer nope under stream {arn} not found."
    with pytest.raises(ClientError) as by_arn:
        kinesis.deregister_stream_consumer(ConsumerARN=f"{arn}/consumer/nope:1700000000")
    assert error_type(by_arn) == "ResourceNotFoundException"

    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c")["Consumer"]
    stale = consumer["ConsumerARN"].rsplit(":", 1)[0] + ":1"
    with pytest.raises(ClientError) as old_registration:
        kinesis.describe_stream_consumer(ConsumerARN=stale)
    assert error_type(old_registration) == "ResourceNotFoundException"
    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    with pytest.raises(ClientError) as gone:
        kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert error_type(gone) == "ResourceNotFoundException"


def test_a_consumer_needs_a_stream_and_a_valid_name(kinesis, raw_kinesis, stream):
    arn = stream_arn(kinesis, stream)
    with pytest.raises(ClientError) as missing_stream:
        kinesis.register_stream_consumer(StreamARN=arn + "-missing", ConsumerName="c")
    assert error_type(missing_stream) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as bad_name:
        raw_kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="bad name")
    assert error_type(bad_name) == "ValidationException"
    with pytest.raises(ClientError) as unaddressed:
        raw_kinesis.describe_stream_consumer(ConsumerName="c")
    assert error_type(unaddressed) == "InvalidArgumentException"


def test_consumers_are_limited_per_stream(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    for index in range(20):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=f"c{index:02}")
    with pytest.raises(ClientError) as limit:
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c20")
    assert error_type(limit) == "LimitExceededException"
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["ConsumerCount"] == 20
    # The fixture deletes without EnforceConsumerDeletion, so clean up here.
    for index in range(20):
        kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName=f"c{index:02}")


def test_deleting_a_stream_with_consumers_needs_enforcement(kinesis):
    name = f"compat-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    arn = stream_arn(kinesis, name)
    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c")
    with pytest.raises(ClientError) as refused:
        kinesis.delete_stream(StreamName=name)
    assert error_type(refused) == "ResourceInUseException"
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert kinesis.list_stream_consumers(StreamARN=arn)["Consumers"] == []
    kinesis.delete_stream(StreamName=name)


def test_consumers_are_tagged_listed_and_untagged_by_arn(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tagged", Tags={"team": "a"})["Consumer"]
    consumer_arn = consumer["ConsumerARN"]
    try:
        assert kinesis.list_tags_for_resource(ResourceARN=consumer_arn)["Tags"] == [{"Key": "team", "Value": "a"}]
        kinesis.tag_resource(ResourceARN=consumer_arn, Tags={"env": "dev", "team": "b"})
        assert kinesis.list_tags_for_resource(ResourceARN=consumer_arn)["Tags"] == [
            {"Key": "env", "Value": "dev"},
            {"Key": "team", "Value": "b"},
        ]
        assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [], "the stream's tags are its own"
        kinesis.untag_resource(ResourceARN=consumer_arn, TagKeys=["team", "absent"])
        assert kinesis.list_tags_for_resource(ResourceARN=consumer_arn)["Tags"] == [{"Key": "env", "Value": "dev"}]

        with pytest.raises(ClientError) as too_many:
            kinesis.tag_resource(ResourceARN=consumer_arn, Tags={f"k{i}": "v" for i in range(50)})
        assert error_type(too_many) == "LimitExceededException"
        with pytest.raises(ClientError) as long_key:
            kinesis.tag_resource(ResourceARN=consumer_arn, Tags={"k" * 129: "v"})
        assert error_type(long_key) == "InvalidArgumentException"

        stale = consumer_arn.rsplit(":", 1)[0] + ":1"
        for call in (
            lambda: kinesis.list_tags_for_resource(ResourceARN=stale),
            lambda: kinesis.tag_resource(ResourceARN=f"{arn}/consumer/nope:1700000000", Tags={"a": "b"}),
            lambda: kinesis.untag_resource(ResourceARN=f"{arn}/consumer/nope:1700000000", TagKeys=["a"]),
        ):
            with pytest.raises(ClientError) as unknown:
                call()
            assert error_type(unknown) == "ResourceNotFoundException"
    finally:
        kinesis.deregister_stream_consumer(ConsumerARN=consumer_arn)
    with pytest.raises(ClientError) as gone:
        kinesis.list_tags_for_resource(ResourceARN=consumer_arn)
    assert error_type(gone) == "ResourceNotFoundException"
