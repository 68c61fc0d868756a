"""The CBOR variant of the protocol (application/x-amz-cbor-1.1), as the AWS Java SDKs send it:
raw, unsigned requests to the anonymous cluster, encoded with cbor2 and sent with urllib.

Blobs are CBOR byte strings; timestamps are CBOR tag 1 around epoch milliseconds (the Java SDKs'
reading of tag 1, not RFC 8949's seconds). Answers are decoded by the small reader below, which
keeps tags as they are: cbor2 turns tag 1 into a datetime and refuses milliseconds.
"""

import struct
import time
import urllib.error
import urllib.request
import uuid

import cbor2
import pytest

from conftest import endpoint

CBOR = "application/x-amz-cbor-1.1"


def call(operation, members):
    """Sends one CBOR request; returns (status, content type, raw body)."""
    request = urllib.request.Request(
        endpoint(),
        data=cbor2.dumps(members),
        method="POST",
        headers={"Content-Type": CBOR, "X-Amz-Target": f"Kinesis_20131202.{operation}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def decode(data):
    """Decodes one CBOR item, keeping tags as cbor2.CBORTag."""
    value, rest = _item(data, 0)
    assert rest == len(data), "trailing bytes after the CBOR value"
    return value


def _item(data, at):
    initial = data[at]
    major, info = initial >> 5, initial & 31
    at += 1
    if major == 7:
        if info == 20:
            return False, at
        if info == 21:
            return True, at
        if info in (22, 23):
            return None, at
        if info == 25:
            return struct.unpack(">e", data[at : at + 2])[0], at + 2
        if info == 26:
            return struct.unpack(">f", data[at : at + 4])[0], at + 4
        if info == 27:
            return struct.unpack(">d", data[at : at + 8])[0], at + 8
        raise AssertionError(f"unexpected simple value {info}")
    if info < 24:
        argument = info
    elif info in (24, 25, 26, 27):
        width = 1 << (info - 24)
        argument = int.from_bytes(data[at : at + width], "big")
        at += width
    else:
        raise AssertionError("indefinite lengths are not expected in answers")
    if major == 0:
        return argument, at
    if major == 1:
        return -1 - argument, at
    if major == 2:
        return bytes(data[at : at + argument]), at + argument
    if major == 3:
        return data[at : at + argument].decode("utf-8"), at + argument
    if major == 4:
        items = []
        for _ in range(argument):
            item, at = _item(data, at)
            items.append(item)
        return items, at
    if major == 5:
        entries = {}
        for _ in range(argument):
            key, at = _item(data, at)
            entries[key], at = _item(data, at)
        return entries, at
    value, at = _item(data, at)
    return cbor2.CBORTag(argument, value), at


def ok(operation, members):
    status, content_type, body = call(operation, members)
    assert content_type == CBOR
    answer = decode(body) if body else {}
    assert status == 200, answer
    return answer


@pytest.fixture
def cbor_stream():
    name = f"cbor-{uuid.uuid4().hex[:12]}"
    assert ok("CreateStream", {"StreamName": name, "ShardCount": 1}) == {}
    for _ in range(60):
        summary = ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            break
        time.sleep(1)  # paces a bounded poll of the status; the loop ends on the condition
    else:
        pytest.fail(f"stream {name} did not become ACTIVE after 60 polls")
    stamp = summary["StreamCreationTimestamp"]
    assert isinstance(stamp, cbor2.CBORTag) and stamp.tag == 1
    assert abs(stamp.value - time.time() * 1000) < 600_000, "milliseconds, near now"
    yield name
    ok("DeleteStream", {"StreamName": name})


def test_records_round_trip_as_bytes_with_tagged_millisecond_timestamps(cbor_stream):
    before_ms = int(time.time() * 1000) - 5_000
    data = bytes(range(256))
    put = ok("PutRecord", {"StreamName": cbor_stream, "PartitionKey": "k", "Data": data})
    assert put["ShardId"] == "shardId-000000000000"
    assert isinstance(put["SequenceNumber"], str)

    # AT_TIMESTAMP with a tag-1 millisecond timestamp, as the Java SDKs send it.
    iterator = ok(
        "GetShardIterator",
        {
            "StreamName": cbor_stream,
            "ShardId": put["ShardId"],
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": cbor2.CBORTag(1, before_ms),
        },
    )["ShardIterator"]
    records = ok("GetRecords", {"ShardIterator": iterator})
    assert isinstance(records["MillisBehindLatest"], int)
    [record] = records["Records"]
    assert record["Data"] == data
    assert record["PartitionKey"] == "k"
    assert record["SequenceNumber"] == put["SequenceNumber"]
    arrival = record["ApproximateArrivalTimestamp"]
    assert isinstance(arrival, cbor2.CBORTag) and arrival.tag == 1
    assert isinstance(arrival.value, int)
    assert before_ms <= arrival.value <= time.time() * 1000 + 5_000


def test_errors_are_answered_in_cbor():
    status, content_type, body = call("DescribeStreamSummary", {"StreamName": f"cbor-absent-{uuid.uuid4().hex[:8]}"})
    assert (status, content_type) == (400, CBOR)
    error = decode(body)
    assert error["__type"] == "ResourceNotFoundException"
    assert "not found" in error["message"]


def test_text_blobs_and_bad_cbor_are_serialization_errors():
    status, content_type, body = call("PutRecord", {"StreamName": "s", "PartitionKey": "k", "Data": "aGVsbG8="})
    assert (status, content_type) == (400, CBOR)
    assert decode(body)["__type"] == "SerializationException"

    request = urllib.request.Request(
        endpoint(),
        data=b"\xff\x00",
        method="POST",
        headers={"Content-Type": CBOR, "X-Amz-Target": "Kinesis_20131202.ListStreams"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 400
    assert raised.value.headers.get("Content-Type") == CBOR
    assert decode(raised.value.read())["__type"] == "SerializationException"
