"""SigV4 authentication through boto3: the errors AWS answers for wrong, unknown and missing credentials.

Needs, besides RIFFLE_KINESIS_ENDPOINT (a cluster with anonymous access on):
- RIFFLE_KINESIS_CREDENTIALS: the `riffle-dev` AWS shared credentials file of the clusters;
- RIFFLE_KINESIS_STRICT_ENDPOINT: a cluster started with `--kinesis-anonymous false`, with the
  same credentials (scripts/kinesis-compat starts both).
"""

import configparser
import os
import uuid

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, endpoint

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def dev_credentials():
    path = os.environ.get("RIFFLE_KINESIS_CREDENTIALS")
    if not path:
        pytest.skip("RIFFLE_KINESIS_CREDENTIALS is not set (scripts/kinesis-compat sets it)")
    parser = configparser.ConfigParser()
    parser.read(path)
    profile = parser["riffle-dev"]
    return profile["aws_access_key_id"], profile["aws_secret_access_key"]


def strict_endpoint():
    value = os.environ.get("RIFFLE_KINESIS_STRICT_ENDPOINT")
    if not value:
        pytest.skip("RIFFLE_KINESIS_STRICT_ENDPOINT is not set (scripts/kinesis-compat sets it)")
    return value


def client(endpoint_url, access_key_id=None, secret=None, unsigned=False):
    config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)
    if unsigned:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=access_key_id or "unused",
        aws_secret_access_key=secret or "unused",
        config=config,
    )


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_the_dev_key_works_on_both_clusters():
    key, secret = dev_credentials()
    for url in (endpoint(), strict_endpoint()):
        kinesis = client(url, key, secret)
        name = f"auth-{uuid.uuid4().hex[:12]}"
        kinesis.create_stream(StreamName=name, ShardCount=1)
        try:
            kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            put = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"signed")
            assert put["ShardId"] == "shardId-000000000000"
            assert name in kinesis.list_streams()["StreamNames"]
        finally:
            kinesis.delete_stream(StreamName=name)


def test_a_wrong_secret_for_a_known_key_is_an_invalid_signature_even_with_anonymous_access():
    key, _ = dev_credentials()
    for url in (endpoint(), strict_endpoint()):
        with pytest.raises(ClientError) as excinfo:
            client(url, key, "not-the-secret").list_streams()
        assert error_of(excinfo) == ("InvalidSignatureException", SIGNATURE_MISMATCH)
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_unknown_key_is_unrecognized_on_a_strict_cluster_and_anonymous_otherwise():
    with pytest.raises(ClientError) as excinfo:
        client(strict_endpoint(), "AKIDUNKNOWN", "whatever").list_streams()
    assert error_of(excinfo) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    assert "StreamNames" in client(endpoint(), "AKIDUNKNOWN", "whatever").list_streams()


def test_an_unsigned_request_lacks_a_token_on_a_strict_cluster_and_is_served_otherwise():
    with pytest.raises(ClientError) as excinfo:
        client(strict_endpoint(), unsigned=True).list_streams()
    assert error_of(excinfo) == ("MissingAuthenticationTokenException", "Missing Authentication Token")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "StreamNames" in client(endpoint(), unsigned=True).list_streams()


def test_a_session_token_on_a_known_key_is_unrecognized():
    key, secret = dev_credentials()
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=strict_endpoint(),
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token="a-session-token",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        kinesis.list_streams()
    assert error_of(excinfo)[0] == "UnrecognizedClientException"


def test_a_signature_for_another_region_is_refused():
    key, secret = dev_credentials()
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=strict_endpoint(),
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        kinesis.list_streams()
    assert error_of(excinfo) == (
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'eu-west-1'. ",
    )
