"""The seed's S3 data transformer, in Python: the yardstick of Weir's benchmarks.

Reads events as JSON Lines, applies the seed's enrichment rules per event type
(transaction, user_action, metric), and writes the seed's envelope
(original_data, enriched_data, record_id = SHA-256, processed_timestamp,
metadata) as JSON Lines, as the seed's Lambda does per raw object.

    python3 bench/seed_transformer.py INPUT.jsonl OUTPUT.jsonl
"""

import hashlib
import json
import sys
from datetime import datetime, timezone


def transform_transaction(data):
    enriched = dict(data)
    ts = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    enriched["transaction_date"] = ts.astimezone(timezone.utc).date().isoformat()
    amount = float(data.get("amount", 0))
    if amount < 10:
        enriched["amount_category"] = "micro"
    elif amount < 100:
        enriched["amount_category"] = "small"
    elif amount < 1000:
        enriched["amount_category"] = "medium"
    else:
        enriched["amount_category"] = "large"
    enriched["is_high_value"] = amount > 1000
    return enriched


def transform_user_action(data):
    enriched = dict(data)
    ts = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    enriched["action_date"] = ts.astimezone(timezone.utc).date().isoformat()
    duration = data.get("session_duration")
    if duration is not None:
        enriched["session_category"] = "short" if duration < 60 else "medium" if duration < 300 else "long"
    return enriched


def transform_metric(data):
    enriched = dict(data)
    ts = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    enriched["metric_date"] = ts.astimezone(timezone.utc).date().isoformat()
    value = float(data.get("value", 0))
    if value < 0:
        enriched["value_range"] = "negative"
    elif value < 10:
        enriched["value_range"] = "low"
    elif value <= 100:
        enriched["value_range"] = "normal"
    else:
        enriched["value_range"] = "high"
    enriched["is_anomaly"] = value < 0 or value > 100
    return enriched


TRANSFORMS = {
    "transaction": transform_transaction,
    "user_action": transform_user_action,
    "metric": transform_metric,
}


def main(src, dst):
    processed = datetime.now(timezone.utc).isoformat()
    with open(src) as inp, open(dst, "w") as out:
        for line in inp:
            if not line.strip():
                continue
            data = json.loads(line)
            transform = TRANSFORMS.get(data.get("event_type"))
            enriched = transform(data) if transform else dict(data)
            record = {
                "original_data": data,
                "enriched_data": enriched,
                "record_id": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
                "processed_timestamp": processed,
                "metadata": {"source": "kinesis-stream", "processing_stage": "transformed", "version": "1.0"},
            }
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
