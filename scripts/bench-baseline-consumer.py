"""Yardstick for scripts/bench-emulator: a plain boto3 consumer doing the worker's job the simplest way.

One loop: receive 10 (long poll 1 s), parse the JSON body, percent-encode the paths, add them to the distribution's
window (a set: exact duplicates dropped), and for every window open for --window seconds or holding 1,000 paths:
create_invalidation, put one ledger item, delete_message_batch in tens. No dead-letter queue, no visibility
heartbeat, no retries, no idempotency: it is what someone would write in an afternoon, not part of the product.

Prints "ready" once its clients exist (the benchmark measures CPU from there), and exits after SIGTERM once its
open windows are flushed.
"""
import argparse
import json
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote

import boto3

SAFE = "/*?=&%:+,;@!$'()-._"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--max-batch-paths", type=int, default=1000)
    args = parser.parse_args()

    sqs = boto3.client("sqs")
    cloudfront = boto3.client("cloudfront")
    dynamodb = boto3.client("dynamodb")
    windows = {}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def flush(distribution):
        window = windows.pop(distribution)
        paths = sorted(window["paths"])
        reference = f"baseline-{uuid.uuid4()}"
        invalidation = cloudfront.create_invalidation(
            DistributionId=distribution,
            InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": reference},
        )["Invalidation"]
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        dynamodb.put_item(TableName=args.table, Item={
            "pk": {"S": f"batch#{reference}"},
            "caller_reference": {"S": reference},
            "distribution_id": {"S": distribution},
            "created_at": {"S": now},
            "status": {"S": "accepted"},
            "paths": {"L": [{"S": p} for p in paths]},
            "path_count": {"N": str(len(paths))},
            "message_ids": {"L": [{"S": m} for m, _ in window["receipts"]]},
            "invalidation_id": {"S": invalidation["Id"]},
        })
        receipts = window["receipts"]
        for start in range(0, len(receipts), 10):
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle) in enumerate(receipts[start:start + 10])]
            sqs.delete_message_batch(QueueUrl=args.queue_url, Entries=entries)

    print("ready", flush=True)
    while not stopping:
        messages = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       VisibilityTimeout=60).get("Messages", [])
        now = time.monotonic()
        for message in messages:
            receipt = (message["MessageId"], message["ReceiptHandle"])
            try:
                request = json.loads(message["Body"])
                distribution = request["distribution_id"]
                paths = [quote(p, safe=SAFE) for p in request["paths"] if isinstance(p, str) and p.startswith("/")]
            except (ValueError, KeyError, TypeError):
                sqs.delete_message_batch(QueueUrl=args.queue_url, Entries=[{"Id": "0", "ReceiptHandle": receipt[1]}])
                continue
            window = windows.setdefault(distribution, {"opened": now, "paths": set(), "receipts": []})
            window["paths"].update(paths)
            window["receipts"].append(receipt)
            if len(window["paths"]) >= args.max_batch_paths:
                flush(distribution)
        for distribution in [d for d, w in windows.items() if now - w["opened"] >= args.window]:
            flush(distribution)
    for distribution in list(windows):
        flush(distribution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
