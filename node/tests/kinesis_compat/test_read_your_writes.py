"""Metadata changes are visible at once, through every node.

Each round writes metadata through one node and reads it back right away through another:
CreateStream, tags, consumers, retention and DeleteStream. A node answers a metadata read only
after applying every change committed before the read began (a read index on the metadata
group), and applies a change before acknowledging it, so no round may see a stale answer.
"""

import os
import uuid

import pytest

from conftest import make_client

ROUNDS = 20


def node_endpoints():
    value = os.environ.get("RIFFLE_KINESIS_ENDPOINTS")
    if not value:
        pytest.skip("RIFFLE_KINESIS_ENDPOINTS is not set (scripts/kinesis-compat sets it)")
    endpoints = value.split(",")
    assert len(endpoints) == 3, endpoints
    return endpoints


def all_stream_names(client):
    return client.get_paginator("list_streams").paginate().build_full_result()["StreamNames"]


def test_metadata_written_through_one_node_is_read_back_through_the_others():
    clients = [make_client(endpoint_url=url) for url in node_endpoints()]
    prefix = f"ryw-{uuid.uuid4().hex[:8]}"
    for round_number in range(ROUNDS):
        first, second, third = (clients[(round_number + offset) % 3] for offset in range(3))
        name = f"{prefix}-{round_number}"

        first.create_stream(StreamName=name, ShardCount=1)
        summary = second.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["StreamName"] == name
        assert name in all_stream_names(third)

        first.add_tags_to_stream(StreamName=name, Tags={"round": str(round_number)})
        assert second.list_tags_for_stream(StreamName=name)["Tags"] == [{"Key": "round", "Value": str(round_number)}]

        second.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        # The status is replicated: once one node says ACTIVE, every node does.
        for client in clients:
            status = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            assert status == "ACTIVE", f"round {round_number}: a node still reports {status}"

        arn = summary["StreamARN"]
        third.register_stream_consumer(StreamARN=arn, ConsumerName="reader")
        listed = first.list_stream_consumers(StreamARN=arn)["Consumers"]
        assert [consumer["ConsumerName"] for consumer in listed] == ["reader"]
        second.deregister_stream_consumer(StreamARN=arn, ConsumerName="reader")
        assert third.list_stream_consumers(StreamARN=arn)["Consumers"] == []

        first.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
        retention = third.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["RetentionPeriodHours"]
        assert retention == 48

        third.delete_stream(StreamName=name)
        # The deletion is visible at once through every node: DELETING, or already gone.
        try:
            status = first.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            assert status == "DELETING", f"round {round_number}: a deleted stream reads as {status}"
        except first.exceptions.ResourceNotFoundException:
            pass
        second.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        assert name not in all_stream_names(third)
