"""The seed's two Lambdas, in Python, writing to local files: the yardstick of
`weir bench pipeline`.

The stream processor (seed 001, section 3) decodes each Kinesis record
(base64, JSON), validates the required fields, adds the Kinesis metadata,
partitions by event type and event hour, writes one JSON Lines object per
partition and records the batch's metadata (SQLite standing in for DynamoDB).
The S3 data transformer (section 5) reads each raw object, enriches its records
with the seed's rules (bench/seed_transformer.py), writes the processed object
and records its metadata. Nothing is fsynced, as Python's file writes are not.

    python3 bench/seed_pipeline.py EVENTS.jsonl OUT_DIR BATCH_SIZE

EVENTS.jsonl holds one event per line; the records are put into Lambda's
Kinesis event shape (two shards, base64) before the clock starts. Prints one
JSON line: records, seconds, batch latency p50/p99 in ms, peak RSS in KiB.
"""

import base64
import hashlib
import json
import os
import resource
import sqlite3
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_transformer import TRANSFORMS  # noqa: E402

REQUIRED = ("event_type", "timestamp")


def lambda_events(path, batch_size):
    """Kinesis events as Lambda delivers them, one shard per event."""
    shards = defaultdict(list)
    with open(path, "rb") as f:
        for n, line in enumerate(f):
            line = line.rstrip(b"\n")
            if line:
                shards[n % 2].append((n, line))
    events = []
    for shard, records in shards.items():
        shard_id = f"shardId-{shard:012d}"
        for i in range(0, len(records), batch_size):
            chunk = records[i : i + batch_size]
            events.append(
                {
                    "Records": [
                        {
                            "kinesis": {
                                "partitionKey": f"key-{n % 5000}",
                                "sequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + n),
                                "data": base64.b64encode(data).decode(),
                                "approximateArrivalTimestamp": 1705312800.0,
                            },
                            "eventID": f"{shard_id}:{n}",
                        }
                        for n, data in chunk
                    ]
                }
            )
    return events


def process_kinesis(event, out_dir, db):
    """The stream processor: raw objects and batch metadata."""
    partitions = defaultdict(list)
    failed = 0
    records = event["Records"]
    shard_id = records[0]["eventID"].split(":")[0]
    first, last = records[0]["kinesis"]["sequenceNumber"], records[-1]["kinesis"]["sequenceNumber"]
    for record in records:
        k = record["kinesis"]
        try:
            data = json.loads(base64.b64decode(k["data"]))
            if not isinstance(data, dict) or any(f not in data for f in REQUIRED):
                raise ValueError("missing field")
            ts = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")).astimezone(timezone.utc)
            data["kinesis_metadata"] = {
                "sequence_number": k["sequenceNumber"],
                "partition_key": k["partitionKey"],
                "shard_id": shard_id,
                "arrival_time": k["approximateArrivalTimestamp"],
            }
            partition = (
                f"event_type={data['event_type']}/year={ts.year:04d}/month={ts.month:02d}"
                f"/day={ts.day:02d}/hour={ts.hour:02d}"
            )
            partitions[partition].append(json.dumps(data))
        except (ValueError, KeyError):
            failed += 1
    keys = []
    for partition, lines in partitions.items():
        key = f"raw/{partition}/{shard_id}-{first}-{last}.jsonl"
        path = os.path.join(out_dir, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        keys.append(key)
    now = datetime.now(timezone.utc).isoformat()
    db.execute(
        "INSERT OR REPLACE INTO batch_metadata VALUES (?, ?, ?, ?, ?, ?, ?)",
        (f"{shard_id}-{first}-{last}", now, shard_id, len(records), len(records) - failed, failed, len(partitions)),
    )
    db.commit()
    return keys


def transform_object(key, out_dir, db):
    """The S3 data transformer: one raw object into its processed object."""
    processed = datetime.now(timezone.utc).isoformat()
    out_lines = []
    with open(os.path.join(out_dir, key)) as f:
        for line in f:
            data = json.loads(line)
            data.pop("kinesis_metadata", None)
            transform = TRANSFORMS.get(data.get("event_type"))
            enriched = transform(data) if transform else dict(data)
            out_lines.append(
                json.dumps(
                    {
                        "original_data": data,
                        "enriched_data": enriched,
                        "record_id": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
                        "processed_timestamp": processed,
                        "metadata": {"source": "kinesis-stream", "processing_stage": "transformed", "version": "1.0"},
                    }
                )
            )
    out_key = "processed/" + key[len("raw/") :]
    path = os.path.join(out_dir, out_key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out_lines) + "\n")
    db.execute(
        "INSERT OR REPLACE INTO batch_metadata VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, processed, "", len(out_lines), len(out_lines), 0, 1),
    )
    db.commit()


def main(events_path, out_dir, batch_size):
    events = lambda_events(events_path, batch_size)
    os.makedirs(out_dir, exist_ok=True)
    db = sqlite3.connect(os.path.join(out_dir, "metadata.db"))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS batch_metadata (batch_id TEXT, processed_at TEXT, shard_id TEXT,"
        " total INTEGER, success INTEGER, failed INTEGER, partitions INTEGER, PRIMARY KEY (batch_id, processed_at))"
    )
    latencies = []
    records = 0
    started = time.perf_counter()
    for event in events:
        t = time.perf_counter()
        for key in process_kinesis(event, out_dir, db):
            transform_object(key, out_dir, db)
        latencies.append(time.perf_counter() - t)
        records += len(event["Records"])
    seconds = time.perf_counter() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "records": records,
                "seconds": seconds,
                "p50_ms": latencies[len(latencies) // 2] * 1e3,
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
