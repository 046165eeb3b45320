#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Small valid inputs of each format, built by hand after docs/storage-format.md (segments,
index files, small atomic files) and the REST API's bodies, so that the fuzzer starts from
the interesting shapes instead of discovering magic bytes and checksums. Run it again after
a format change: `python3 fuzz/make_corpus.py` (it rewrites only the seeds it names).
"""

import json
import os
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
# Separates the files of a segment_recovery input (cloudstream_log::fuzzing::FILE_SEPARATOR).
SEP = b"\n--next-file--\n"


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

NO_TIME = -(2**63)


def record(value: bytes, key=None, headers=(), event_time=None) -> bytes:
    out = struct.pack("<q", NO_TIME if event_time is None else event_time)
    out += struct.pack("<I", 0xFFFFFFFF) if key is None else struct.pack("<I", len(key)) + key
    out += struct.pack("<H", len(headers))
    for name, val in headers:
        out += struct.pack("<H", len(name)) + name + struct.pack("<I", len(val)) + val
    return out + struct.pack("<I", len(value)) + value


def body(base: int, append_ms: int, durable_before: int, records=()) -> bytes:
    return struct.pack("<QqQI", base, append_ms, durable_before, len(records)) + b"".join(records)


def frame(b: bytes) -> bytes:
    return struct.pack("<II", len(b), crc32c(b)) + b


def segment_header(base: int) -> bytes:
    return b"CSLOGSEG" + struct.pack("<IIQ", 1, 0, base)


class Segment:
    """A segment built batch by batch, each vouching for everything before it."""

    def __init__(self, base: int):
        self.base = base
        self.next = base
        self.bytes = segment_header(base)
        self.times = []  # (append_ms, position) of batches with records
        self.max_append = -(2**63)

    def batch(self, append_ms: int, records=(), durable_before=None) -> "Segment":
        pos = len(self.bytes)
        db = pos if durable_before is None else durable_before
        self.bytes += frame(body(self.next, append_ms, db, list(records)))
        if records:
            self.times.append((self.next, append_ms, pos))
            self.max_append = max(self.max_append, append_ms)
        self.next += len(records)
        return self

    def marker(self, append_ms: int) -> "Segment":
        return self.batch(append_ms, [])


def index_file(magic: bytes, entries, seg_len: int, next_offset: int, max_append: int, crc=True) -> bytes:
    out = magic + struct.pack("<II", 1, len(entries)) + struct.pack("<QQq", seg_len, next_offset, max_append)
    for key, pos in entries:
        out += struct.pack("<qI", key, pos)
    return out + (struct.pack("<I", crc32c(out)) if crc else b"")


def small_file(magic: bytes, payload: bytes) -> bytes:
    return magic + struct.pack("<II", crc32c(payload), len(payload)) + payload


def write(target: str, name: str, data) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z in ms

R_KEYED = record(b"hello", key=b"k", headers=[(b"a", b"1")], event_time=7)
R_EMPTY = record(b"")
R_JSON = record(b'{"temp": 21.5}', key=b"dev-1", headers=[(b"content-type", b"application/json")], event_time=T0)
R_BYTES = record(bytes(range(256)))


def sample_segment(base=0) -> Segment:
    return Segment(base).batch(T0, [R_KEYED, R_EMPTY]).batch(T0 + 5, [R_JSON]).batch(T0 + 9, [R_BYTES])


def segments():
    seg = sample_segment().marker(T0 + 10)
    write("segment_frames", "closed_segment", seg.bytes)
    write("segment_frames", "marker_only", Segment(0).marker(T0).bytes)
    write("segment_frames", "torn_tail", sample_segment().bytes + frame(body(4, T0, 24, [R_KEYED]))[:-3])
    write("segment_frames", "batch_body", body(0, T0, 24, [R_KEYED, R_EMPTY, R_JSON]))
    write("segment_frames", "header_only", segment_header(0))

    # segment_recovery: one active segment...
    write("segment_recovery", "active_closed", seg.bytes)
    synced = sample_segment()
    marker_at = len(synced.bytes)
    write("segment_recovery", "active_with_durability_marker", synced.marker(T0 + 10).bytes)
    write("segment_recovery", "records_without_header", sample_segment().bytes[24:])
    torn = sample_segment().bytes + frame(body(4, T0 + 20, marker_at, [R_KEYED]))
    write("segment_recovery", "torn_tail", torn[:-5])
    zeroed = sample_segment().bytes + bytes(64)
    write("segment_recovery", "zeroed_tail", zeroed)
    # ...and a sealed segment with its index files, then the active one after it.
    sealed = sample_segment().marker(T0 + 10)
    n = sealed.next
    offsets = [(off, pos) for off, _, pos in sealed.times]
    times = [(t, pos) for _, t, pos in sealed.times]
    idx = index_file(b"CSLOGIDX", offsets, len(sealed.bytes), n, sealed.max_append)
    tix = index_file(b"CSLOGTIX", times, len(sealed.bytes), n, sealed.max_append)
    active = Segment(n).batch(T0 + 20, [R_JSON, R_KEYED]).marker(T0 + 21)
    write("segment_recovery", "sealed_indexed_active", SEP.join([sealed.bytes, idx, tix, active.bytes]))
    write("segment_recovery", "sealed_unindexed_active", SEP.join([sealed.bytes, active.bytes]))

    write("index_file", "offset_index", idx)
    write("index_file", "time_index", tix)
    write("index_file", "offset_index_without_crc", index_file(b"CSLOGIDX", offsets, len(sealed.bytes), n, sealed.max_append, crc=False))
    write("index_file", "empty_time_index", index_file(b"CSLOGTIX", [], 24, 0, -(2**63)))


def small_files():
    ckpt = json.dumps({"offsets": {"0": 42, "1": 7}, "updated_ms": T0}, separators=(",", ":")).encode()
    ckpt_text = json.dumps({"offsets": {"0": "after:41", "3": "49590338271490256608559692538361571095921575989136588898"}, "updated_ms": 0}).encode()
    meta = b'{"format":1,"partitions":1,"horizon":86400000,"created_ms":1764000000000}'
    write("small_file", "checkpoint_payload", ckpt)
    write("small_file", "checkpoint_strings_payload", ckpt_text)
    write("small_file", "checkpoint_file", small_file(b"CSCKPT01", ckpt))
    write("small_file", "meta_payload", meta)
    write("small_file", "meta_file", small_file(b"CSSTRM01", meta))
    write("small_file", "meta_four_partitions", b'{"format":1,"partitions":4,"horizon":3600000,"created_ms":0}')


def webhooks():
    spec = {
        "stream": "orders", "id": "billing", "url": "http://127.0.0.1:9000/hook",
        "batch_size": 10, "max_wait_ms": 100, "max_attempts": 5, "backoff_ms": 200,
        "dead_letter": "orders.dlq", "start": "latest", "timeout_ms": 10000,
    }
    later = dict(spec, id="audit", url="https://user:pw@hooks.example.com/in?x=1", dead_letter=None,
                 start="time:2026-11-24T13:00:00.000Z")
    write("webhook_store", "state_file", json.dumps({"webhooks": [spec, later]}, indent=2))
    write("webhook_store", "state_file_empty", "{}")
    write("webhook_store", "spec_minimal", '{"url": "http://127.0.0.1:9000/hook"}')
    write("webhook_store", "spec_full", json.dumps({
        "url": "https://hooks.example.com/x", "batch_size": 100, "max_wait_ms": 50, "max_attempts": 3,
        "backoff_ms": 10, "dead_letter": False, "start": "time:2026-11-24T13:00:00Z", "timeout_ms": 500}))
    write("webhook_store", "spec_dead_letter_stream", '{"url": "http://[::1]:80/", "dead_letter": "billing-dlq", "start": "earliest"}')


def bodies():
    ev = {"payload": {"temp": 21.5}, "key": "dev-1", "headers": {"site": "north"}, "event_time": "2026-11-24T13:00:00Z"}
    ev_b64 = {"payload_base64": "AAEC/w==", "key": "k"}
    ce = {"specversion": "1.0", "id": "1", "source": "/sensors/1", "type": "reading", "time": "2026-11-24T13:00:00Z",
          "datacontenttype": "application/json", "partitionkey": "dev-1", "data": {"temp": 21.5}}
    ce_b64 = {"specversion": "1.0", "id": "2", "source": "/s", "type": "t", "data_base64": "aGVsbG8=", "subject": "x"}
    write("event_bodies", "json_event", "content-type: application/json\n\n" + json.dumps(ev))
    write("event_bodies", "json_event_no_headers", json.dumps(ev_b64))
    write("event_bodies", "json_array", "content-type: application/json; charset=utf-8\n\n" + json.dumps([ev, ev_b64, {"payload": "text"}]))
    write("event_bodies", "ndjson", "content-type: application/x-ndjson\n\n" + json.dumps(ev) + "\n\n" + json.dumps(ev_b64) + "\n")
    write("event_bodies", "cloudevent_structured", "content-type: application/cloudevents+json\n\n" + json.dumps(ce))
    write("event_bodies", "cloudevents_batch", "content-type: application/cloudevents-batch+json\n\n" + json.dumps([ce, ce_b64]))
    write("event_bodies", "cloudevent_binary",
          "ce-specversion: 1.0\nce-id: 3\nce-source: /s\nce-type: t\nce-time: 2026-11-24T13:00:00Z\n"
          "ce-partitionkey: dev-2\ncontent-type: text/plain\n\nhello")
    write("event_bodies", "raw_bytes",
          b"content-type: application/octet-stream\ncloudstream-key: k\n"
          b"cloudstream-event-time: 2026-11-24T13:00:00.123Z\ncloudstream-header-site: north\n\n\x00\x01\xfe\xff")
    write("event_bodies", "too_many", "content-type: application/json\n\n[" + ",".join(["{}"] * 20) + "]")


def params():
    write("request_params", "read_query", "from=after:0:41&max=10&max_bytes=1000&wait_ms=5&partition=0")
    write("request_params", "read_start_query", "start=at:5&partition=1&payload=text")
    write("request_params", "fetch_query", "ack=t-1&max=5&member=m1&lease_ms=1000&payload=json")
    write("request_params", "lease_query", "member=m1&ttl_ms=5000")
    write("request_params", "tail_query", "from=time:2026-11-24T13:00:00Z")
    write("request_params", "cursor", "0:41,1@at:17,2@earliest,3@time:1764000000000")
    write("request_params", "checkpoint_body", '{"0": "after:41", "1": "earliest", "2": "time:1764000000000"}')
    write("request_params", "create_stream", '{"horizon": "48h", "partitions": 2}')
    write("request_params", "horizon", "7days 12h 30m")
    write("request_params", "tokens_file",
          "# token hashes\n" + "ab" * 32 + " write orders,logs-*\n" + "0F" * 32 + " admin *\n")
    write("request_params", "webhook_allow", "hooks.example.com, *.example.org, 10.1.0.0/16, 192.0.2.7, [::1]")


def texts():
    for name, text in [
        ("earliest", "earliest"), ("latest", "latest"), ("position", "0:42"), ("at_position", "at:1:42"),
        ("after_position", "after:0:41"), ("at_seq", "at:7"), ("after_seq", "after:41"),
        ("time_rfc3339", "time:2026-11-24T13:00:00Z"), ("time_ms", "time:1764000000000"),
        ("time_fraction", "time:2026-11-24T13:00:00.123456789+02:00"),
        ("checkpoint_entry", "0=after:41"), ("big_sequence",
         "115792089237316195423570985008687907853269984665640564039457584007913129639935"),
        ("checkpoints_dynamodb", "dynamodb:cloudstream-checkpoints"), ("checkpoints_local", "local:/tmp/ck"),
        ("url_local", "local:///var/cs?sync=interval&sync_interval_ms=5&segment_bytes=4096"),
        ("url_memory", "memory://m?max_record_bytes=1024&retention_check_ms=10"),
        ("url_http", "http://127.0.0.1:7070/?token=abc&timeout_ms=100"),
        ("url_kinesis", "kinesis://us-east-1?checkpoints=dynamodb&secret_access_key=x"),
    ]:
        write("start_points", name, text)


def wire():
    rec = {"position": "0:42", "partition": 0, "sequence": 42, "append_time": "2026-11-24T13:00:00.000Z",
           "key": "k", "headers": {"a": "b"}, "event_time": "2026-11-24T12:59:59.5Z", "payload": "hello"}
    rec_json = dict(rec, payload={"temp": 21.5}, headers={"content-type": "application/json"})
    rec_b64 = {"position": "1:7", "partition": 1, "sequence": "7", "append_time": "2026-11-24T13:00:00Z",
               "key": None, "payload_base64": "AAEC"}
    write("wire_bodies", "record", json.dumps(rec))
    write("wire_bodies", "records", json.dumps({"records": [rec, rec_json, rec_b64]}))
    write("wire_bodies", "fetched", json.dumps({"records": [rec_b64], "gaps": [
        {"partition": 0, "from": "at:1", "resumed_at": "at:5"}], "ack": "t-1"}))
    write("wire_bodies", "error_expired", json.dumps({"error": {"code": "expired", "message": "gone", "details": {
        "requested": "0:1", "earliest": "0:5"}}}))
    write("wire_bodies", "error_too_large", json.dumps({"error": {"code": "record_too_large", "message": "big",
                                                                  "details": {"size": 10, "max": 5}}}))
    write("wire_bodies", "error_invalid_name", json.dumps({"error": {"code": "invalid_name", "message": "bad",
                                                                     "details": {"kind": "stream", "name": "a/b", "reason": "slash"}}}))
    write("wire_bodies", "checkpoint", '{"checkpoint": {"0": "after:41", "1": "time:1764000000000"}}')
    write("wire_bodies", "leases", '{"leases": {"p0": "m1", "p1": "m2"}}')
    write("wire_bodies", "appended", '{"positions": ["0:1", "0:2"]}')


if __name__ == "__main__":
    segments()
    small_files()
    webhooks()
    bodies()
    params()
    texts()
    wire()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(CORPUS) for f in fs)
    print(f"corpus: {sum(len(fs) for _, _, fs in os.walk(CORPUS))} files, {total} bytes")
