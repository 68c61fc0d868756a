"""Fixtures for the Kinesis compatibility suite: real boto3 and AWS CLI against a running cluster.

The cluster's Kinesis endpoint comes from RIFFLE_KINESIS_ENDPOINT (scripts/check starts a local
cluster and sets it).
"""

import os
import uuid

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"


def endpoint():
    value = os.environ.get("RIFFLE_KINESIS_ENDPOINT")
    if not value:
        pytest.skip("RIFFLE_KINESIS_ENDPOINT is not set (scripts/check sets it)")
    return value


def make_client(validate=True, endpoint_url=None):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url or endpoint(),
        region_name=REGION,
        aws_access_key_id="AKIDRIFFLETEST",
        aws_secret_access_key="riffle-test-secret",
        config=Config(
            parameter_validation=validate,
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@pytest.fixture(scope="session")
def kinesis():
    """A boto3 client with the SDK's own parameter validation, as users run it."""
    return make_client()


@pytest.fixture(scope="session")
def raw_kinesis():
    """A boto3 client that sends whatever it is given, to test the server's own validation."""
    return make_client(validate=False)


@pytest.fixture
def stream(kinesis):
    """A fresh 4-shard stream, ACTIVE, deleted afterwards."""
    name = f"compat-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    yield name
    kinesis.delete_stream(StreamName=name)
