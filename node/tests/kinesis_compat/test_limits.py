"""Limits seen through boto3: expired and forged shard iterators.

An expired iterator is made by re-signing a real one with an issue time six minutes ago, with the
cluster secret read from RIFFLE_CLUSTER_SECRET_FILE (hex; scripts/kinesis-compat points it at the
anonymous cluster's `cluster-secret`). Iterator layout (node/src/iterator.rs), before base64:
version(1) | issued_ms(i64 BE) | stream created_ms(i64 BE) | shard(u32 BE) | kind(1) | value(u64 BE)
| name length(u16 BE) | name | 16-byte HMAC-SHA256 tag over everything before it.

Throughput throttling is off on the compatibility clusters; `riffle-node dev --throttling` turns
it on (see docs/kinesis-api.md, "Limits").
"""

import base64
import hashlib
import hmac
import os
import struct
import time

import pytest
from botocore.exceptions import ClientError

TAG_BYTES = 16
ISSUED_AT = slice(1, 9)


def cluster_secret():
    path = os.environ.get("RIFFLE_CLUSTER_SECRET_FILE")
    if not path:
        pytest.skip("RIFFLE_CLUSTER_SECRET_FILE is not set (scripts/kinesis-compat sets it)")
    with open(path, encoding="ascii") as file:
        return bytes.fromhex(file.read().strip())


def sign(secret, payload):
    return payload + hmac.new(secret, payload, hashlib.sha256).digest()[:TAG_BYTES]


def first_iterator(kinesis, stream):
    return kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]


def test_a_real_iterator_decodes_and_verifies_with_the_cluster_secret(kinesis, stream):
    secret = cluster_secret()
    raw = base64.b64decode(first_iterator(kinesis, stream))
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    assert sign(secret, payload)[-TAG_BYTES:] == tag
    assert payload[0] == 1
    (issued_ms,) = struct.unpack(">q", payload[ISSUED_AT])
    assert abs(issued_ms - time.time() * 1000) < 60_000
    (name_length,) = struct.unpack(">H", payload[30:32])
    assert payload[32 : 32 + name_length].decode() == stream


def test_an_iterator_older_than_five_minutes_is_expired(kinesis, stream):
    secret = cluster_secret()
    raw = base64.b64decode(first_iterator(kinesis, stream))
    payload = bytearray(raw[:-TAG_BYTES])
    six_minutes_ago = int(time.time() * 1000) - 6 * 60 * 1000
    payload[ISSUED_AT] = struct.pack(">q", six_minutes_ago)
    expired = base64.b64encode(sign(secret, bytes(payload))).decode()
    with pytest.raises(ClientError) as caught:
        kinesis.get_records(ShardIterator=expired)
    error = caught.value.response["Error"]
    assert error["Code"] == "ExpiredIteratorException"
    assert error["Message"].startswith("Iterator expired. The iterator was created at time ")
    assert "which is further in the future than the tolerated delay of 300000 milliseconds." in error["Message"]


def test_a_tampered_iterator_is_invalid(kinesis, stream):
    raw = bytearray(base64.b64decode(first_iterator(kinesis, stream)))
    # Move the issue time without re-signing: the tag no longer matches.
    raw[ISSUED_AT] = struct.pack(">q", int(time.time() * 1000) + 60_000)
    forged = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ClientError) as caught:
        kinesis.get_records(ShardIterator=forged)
    assert caught.value.response["Error"]["Code"] == "InvalidArgumentException"


def test_an_iterator_signed_with_another_secret_is_invalid(kinesis, stream):
    raw = base64.b64decode(first_iterator(kinesis, stream))
    forged = base64.b64encode(sign(b"\x00" * 32, raw[:-TAG_BYTES])).decode()
    with pytest.raises(ClientError) as caught:
        kinesis.get_records(ShardIterator=forged)
    assert caught.value.response["Error"]["Code"] == "InvalidArgumentException"


def test_a_fresh_re_signed_iterator_still_reads(kinesis, stream):
    secret = cluster_secret()
    kinesis.put_record(StreamName=stream, Data=b"limits", PartitionKey="k", ExplicitHashKey="0")
    raw = base64.b64decode(first_iterator(kinesis, stream))
    resigned = base64.b64encode(sign(secret, raw[:-TAG_BYTES])).decode()
    records = kinesis.get_records(ShardIterator=resigned)["Records"]
    assert [record["Data"] for record in records] == [b"limits"]
