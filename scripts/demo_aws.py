"""Small AWS chores for scripts/demo that the worker's CLI does not do (it runs with the emulator's boto3)."""
import json
import sys
import time
import uuid

import boto3


def create_distribution():
    config = {
        "CallerReference": str(uuid.uuid4()),
        "Comment": "cf-invalidator demo",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "site", "DomainName": "demo-site.s3.amazonaws.com",
                                                "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "site", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}},
    }
    print(boto3.client("cloudfront").create_distribution(DistributionConfig=config)["Distribution"]["Id"])


def send_raw(queue_url, body):
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)


def wait_empty(queue_url, seconds):
    sqs = boto3.client("sqs")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        if all(attributes[n] == "0" for n in names):
            return
        time.sleep(0.5)
    sys.exit(f"queue not empty after {seconds}s")


def list_invalidations(distribution_id):
    cloudfront = boto3.client("cloudfront")
    items = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"].get("Items", [])
    print(f"{len(items)} invalidation(s) on {distribution_id}")
    for item in items:
        batch = cloudfront.get_invalidation(DistributionId=distribution_id, Id=item["Id"])["Invalidation"]
        paths = batch["InvalidationBatch"]["Paths"].get("Items", [])
        print(f"  {item['Id']}  {batch['InvalidationBatch']['CallerReference']}  {len(paths)} paths: {' '.join(sorted(paths))}")


def dump_queue(queue_url):
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   VisibilityTimeout=0).get("Messages", [])
    print(f"{len(messages)} message(s) on {queue_url.rsplit('/', 1)[-1]}")
    for message in messages:
        attributes = {k: v.get("StringValue") for k, v in message.get("MessageAttributes", {}).items()}
        print(f"  body:   {message['Body']}")
        print(f"  reason: {attributes.get('reason')}")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"create-distribution": create_distribution, "send-raw": send_raw, "wait-empty": wait_empty,
     "list-invalidations": list_invalidations, "dump-queue": dump_queue}[command](*arguments)
