"""Deploys infra/cloudformation/cf-invalidator.yaml on the local emulator and runs the worker against it.

    eval "$(scripts/emulator start)"
    cargo build --locked
    "$CFI_EMULATOR_PYTHON" tests/infra/test_deploy.py
    scripts/emulator stop

Creates the stack through moto's CloudFormation with DeployWorker=false (moto creates only the queue, its
dead-letter queue and the ledger table; the ECS, IAM, scaling and alarm resources are switched off by that
condition), checks what it created, then runs target/debug/cf-invalidator (or $CFI_BIN; $CARGO_TARGET_DIR is
honoured) on the stack's outputs with one valid and one invalid message, and checks CloudFront, the ledger and the
dead-letter queue. Plain Python and boto3; prints "N passed, N failed" last and exits 1 on any failure.

A second stack with DeployWorker=true checks what the template computes for the worker: the task role's
statements (the CloudFront ARNs are built one list position at a time) and the task definition's environment.

What moto cannot do, and how it is covered instead:
- it applies neither the table's PointInTimeRecoverySpecification, SSESpecification and TimeToLiveSpecification
  nor the DLQ's RedriveAllowPolicy (it describes them as disabled or absent): checked in the template itself;
- it silently skips AWS::ApplicationAutoScaling::*, AWS::CloudWatch::Alarm, AWS::Logs::MetricFilter and
  AWS::CloudFormation::WaitCondition(Handle), so scaling, alarms and the more-than-10-distributions guard are
  covered only by cfn-lint and checkov (scripts/lint-infra);
- it returns a role policy as Python text and keeps AWS::NoValue list entries as None: normalised below.
"""
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "cloudformation" / "cf-invalidator.yaml"
QUEUE_DRAIN_SECONDS = 60
WORKER_EXIT_SECONDS = 45

results = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name}{': ' + str(detail) if detail else ''}")
    return condition


def refuse_remote_endpoint():
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urllib.parse.urlparse(endpoint).hostname or ""
    if not (host == "localhost" or host == "::1" or host.startswith("127.")):
        sys.exit(f"AWS_ENDPOINT_URL={endpoint!r} is not a loopback emulator; run: eval \"$(scripts/emulator start)\"")


def worker_binary():
    if os.environ.get("CFI_BIN"):
        return Path(os.environ["CFI_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return (target if target.is_absolute() else ROOT / target) / "debug" / "cf-invalidator"


def load_template():
    """The template as plain data; short-form tags (!Ref, !Sub, ...) become {"Fn::X"/"Ref": value}."""

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)


def check_template_settings_moto_ignores(template):
    table = template["Resources"]["Table"]["Properties"]
    check("template: table has point-in-time recovery",
          table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True)
    check("template: table has server-side encryption", table.get("SSESpecification", {}).get("SSEEnabled") is True)
    check("template: table TTL on expires_at",
          table.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True})
    retention = template["Resources"]["DeadLetterQueue"]["Properties"].get("MessageRetentionPeriod")
    check("template: dead-letter queue keeps messages 14 days", retention == 14 * 24 * 3600, retention)


def create_stack(cloudformation, name, **parameters):
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
    )
    deadline = time.time() + 60
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            return stack
        time.sleep(0.5)


def check_queues(sqs, queue_url, dlq_url):
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    check("queue: SQS-managed SSE", attributes.get("SqsManagedSseEnabled") == "true", attributes)
    check("dead-letter queue: SQS-managed SSE", dlq_attributes.get("SqsManagedSseEnabled") == "true", dlq_attributes)
    policy = json.loads(attributes.get("RedrivePolicy", "{}"))
    check("queue: RedrivePolicy targets the dead-letter queue",
          policy.get("deadLetterTargetArn") == dlq_attributes["QueueArn"], policy)
    check("queue: maxReceiveCount defaults to 5", str(policy.get("maxReceiveCount")) == "5", policy)
    check("queue: visibility timeout 60 s, long poll 20 s",
          (attributes.get("VisibilityTimeout"), attributes.get("ReceiveMessageWaitTimeSeconds")) == ("60", "20"),
          attributes)


def check_table(dynamodb, table_name):
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    check("table: key schema is pk (S) only",
          table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
          and {"AttributeName": "pk", "AttributeType": "S"} in table["AttributeDefinitions"], table["KeySchema"])
    check("table: on-demand billing", table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST")
    indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
    expected = {
        "by_distribution": ([("distribution_id", "HASH"), ("created_at", "RANGE")], "ALL"),
        "by_invalidation": ([("invalidation_id", "HASH")], "KEYS_ONLY"),
        "by_outcome": ([("outcome", "HASH"), ("created_at", "RANGE")], "ALL"),
        "by_tracking": ([("tracking", "HASH"), ("created_at", "RANGE")], "INCLUDE"),
        "by_board": ([("board", "HASH"), ("created_at", "RANGE")], "INCLUDE"),
        "by_list": ([("list", "HASH"), ("rank", "RANGE")], "INCLUDE"),
    }
    check("table: exactly the indexes by_distribution, by_invalidation, by_outcome, by_tracking, by_board, by_list",
          indexes.keys() == expected.keys(), sorted(indexes))
    for name, (keys, projection) in expected.items():
        index = indexes.get(name, {})
        schema = [{"AttributeName": attribute, "KeyType": kind} for attribute, kind in keys]
        check(f"table: index {name} ({', '.join(f'{a} {k}' for a, k in keys)}, {projection})",
              index.get("KeySchema") == schema and index.get("Projection", {}).get("ProjectionType") == projection,
              index)
    check_projections_match_setup(dynamodb, indexes)
    types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    index_keys = ("distribution_id", "created_at", "invalidation_id", "outcome", "tracking", "board")
    check("table: index keys are strings", all(types.get(key) == "S" for key in index_keys), types)
    check("table: by_list ranks by a number", types.get("rank") == "N", types)


def check_projections_match_setup(dynamodb, indexes):
    """The stack's indexes project what `cf-invalidator setup` makes them project: the worker reads those attributes
    from the index (a tracked batch's status and published events from by_tracking), and the two drifted once."""
    binary = worker_binary()
    if not binary.is_file():
        return
    name = f"cfi-setup-{uuid.uuid4().hex[:8]}"
    environment = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    subprocess.run([str(binary), "setup", "--queue-name", name, "--table", name], env=environment, check=True,
                   capture_output=True, timeout=120)
    made = {index["IndexName"]: index for index in
            dynamodb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])}

    def projection(index):
        found = index.get("Projection", {})
        return found.get("ProjectionType"), sorted(found.get("NonKeyAttributes", []))

    for index_name, index in indexes.items():
        check(f"table: index {index_name} projects what setup's does",
              projection(index) == projection(made.get(index_name, {})),
              f"stack {projection(index)}, setup {projection(made.get(index_name, {}))}")


def policy_document(raw):
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return ast.literal_eval(raw)  # moto: str() of the dict


def as_list(value):
    return [v for v in (value if isinstance(value, list) else [value]) if v is not None]


def check_worker_stack(cloudformation, iam, ecs, distribution_roles=""):
    """The worker's task role and environment; `distribution_roles`: INVALIDATOR_ROLE's DIST=ARN[,external-id=ID]
    entries, whose roles in other accounts it may assume (none: no sts:AssumeRole at all)."""
    name = f"cfi-deploy-test-worker-{uuid.uuid4().hex[:8]}"
    target_roles = [entry.split("=", 1)[1].split(",")[0] for entry in distribution_roles.split(";") if entry]
    roles = {"TargetRoleArns": ",".join(target_roles), "DistributionRoles": distribution_roles} if target_roles else {}
    stack = create_stack(cloudformation, name, DeployWorker="true", ContainerImage="example.invalid/cfi:test",
                         DistributionIds="EAAAAAAAAAAAA,EBBBBBBBBBBBB,ECCCCCCCCCCCC", **roles,
                         AllowedTopicArns=f"arn:aws:sns:{os.environ.get('AWS_REGION', 'us-east-1')}:123456789012:publish",
                         PublishEvents="true", Coalesce="cost", MonthlyPathBudget="50000",
                         AccountCreateRate="0.5",
                         SubnetIds="subnet-0123456789abcdef0", SecurityGroupIds="sg-0123456789abcdef0")
    if not check("worker stack created", stack["StackStatus"] == "CREATE_COMPLETE",
                 f"{stack['StackStatus']} {stack.get('StackStatusReason', '')}"):
        return
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    check("worker stack: TaskRoleArn output", outputs.get("TaskRoleArn", "").startswith("arn:aws:iam::"), outputs)
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
                 if r["LogicalResourceId"]}
    document = policy_document(iam.get_role_policy(RoleName=resources["TaskRole"],
                                                   PolicyName="cf-invalidator")["PolicyDocument"])
    granted = {statement["Sid"]: (sorted(as_list(statement["Action"])), sorted(as_list(statement["Resource"])))
               # moto leaves an !If's AWS::NoValue in the list as null, where IAM drops it.
               for statement in document["Statement"] if statement}
    account, region = "123456789012", os.environ.get("AWS_REGION", "us-east-1")
    queue_arn = f"arn:aws:sqs:{region}:{account}:{name}-invalidations"
    table_arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}-ledger"
    expected = {
        "InvalidateTheseDistributions": (
            sorted(["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation", "cloudfront:ListInvalidations",
                    "cloudfront:GetDistribution"]),
            [f"arn:aws:cloudfront::{account}:distribution/E{c * 12}" for c in "ABC"]),
        "InvalidateTheirTenants": (
            sorted(["cloudfront:CreateInvalidationForDistributionTenant",
                    "cloudfront:GetInvalidationForDistributionTenant",
                    "cloudfront:ListInvalidationsForDistributionTenant"]),
            [f"arn:aws:cloudfront::{account}:distribution-tenant/*"]),
        "ConsumeTheQueue": (
            sorted(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]), [queue_arn]),
        "DeadLetterRefusedMessages": (["sqs:GetQueueUrl", "sqs:SendMessage"], [f"{queue_arn}-dlq"]),
        "WriteAndReadTheLedger": (
            sorted(["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query",
                    "dynamodb:DescribeTable"]), [table_arn, f"{table_arn}/index/*"]),
        "PublishBatchEvents": (["sns:Publish"], [f"arn:aws:sns:{region}:{account}:{name}-events"]),
    }
    if target_roles:
        expected["AssumeTargetAccountRoles"] = (["sts:AssumeRole"], sorted(target_roles))
    for sid, want in expected.items():
        check(f"task role: {sid} grants exactly its actions on its resources", granted.get(sid) == want,
              f"got {granted.get(sid)}, want {want}")
    check("task role: no other statements", granted.keys() == expected.keys(), sorted(granted))
    definition = ecs.describe_task_definition(taskDefinition=resources["TaskDefinition"])["taskDefinition"]
    environment = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"] if e}
    want_environment = {
        "INVALIDATOR_QUEUE_URL": outputs.get("QueueUrl"), "INVALIDATOR_TABLE": outputs.get("TableName"),
        "INVALIDATOR_DLQ_URL": outputs.get("DeadLetterQueueUrl"), "INVALIDATOR_LOG_FORMAT": "json",
        "AWS_REGION": region,
        # The worker refuses what IAM would refuse anyway, with a reason, instead of retrying AccessDenied.
        "INVALIDATOR_ALLOW_DISTRIBUTION": "EAAAAAAAAAAAA,EBBBBBBBBBBBB,ECCCCCCCCCCCC",
        "INVALIDATOR_ALLOW_TOPIC": f"arn:aws:sns:{region}:{account}:publish",
        "INVALIDATOR_EVENTS_TOPIC_ARN": f"arn:aws:sns:{region}:{account}:{name}-events",
        "INVALIDATOR_COALESCE": "cost", "INVALIDATOR_MONTHLY_PATH_BUDGET": "50000",
        "INVALIDATOR_ACCOUNT_CREATE_RATE": "0.5", "INVALIDATOR_TENANT_LIMITS": "shared",
        "INVALIDATOR_ROLE": distribution_roles or None,
    }
    check("task definition: worker environment from the stack",
          {k: environment.get(k) for k in want_environment} == want_environment, environment)


def create_distribution(cloudfront):
    config = {
        "CallerReference": str(uuid.uuid4()),
        "Comment": "cf-invalidator infra deploy test",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "site", "DomainName": "deploy-test.s3.amazonaws.com",
                                                "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "site", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}},
    }
    return cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def wait_queue_empty(sqs, queue_url, worker):
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.time() + QUEUE_DRAIN_SECONDS
    while time.time() < deadline and worker.poll() is None:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        if all(attributes[name] == "0" for name in names):
            return True
        time.sleep(0.5)
    return False


def run_worker(sqs, cloudfront, dynamodb, outputs, distribution_id):
    queue_url, dlq_url, table_name = outputs["QueueUrl"], outputs["DeadLetterQueueUrl"], outputs["TableName"]
    binary = worker_binary()
    if not check("worker binary exists", binary.is_file(), f"{binary}: run cargo build --locked"):
        return
    # As deployed: JSON logs (the task definition sets it), so the error metric filter's field can be checked.
    environment = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", INVALIDATOR_LOG_FORMAT="json")
    log = tempfile.TemporaryFile(mode="w+")
    worker = subprocess.Popen(
        [str(binary), "run", "--queue-url", queue_url, "--table", table_name, "--window", "2s"],
        env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        sqs.send_message(QueueUrl=queue_url,
                         MessageBody=json.dumps({"distribution_id": distribution_id, "paths": ["/a", "/b"]}))
        sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
        check("source queue drained", wait_queue_empty(sqs, queue_url, worker),
              f"worker exit code {worker.poll()}")
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=WORKER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            code = "still running"
        check("worker exits 0 on SIGTERM", code == 0, code)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.seek(0)
        lines = log.read().splitlines()
        log.close()

    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    check("worker logs JSON objects with a level field (what the error metric filter reads)",
          records and all(record.get("level") in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR") for record in records),
          lines[:5])
    check("worker logged no ERROR", not [r for r in records if r.get("level") == "ERROR"],
          [r for r in records if r.get("level") == "ERROR"])

    summaries = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"].get("Items", [])
    invalidation_id, paths = None, []
    if check("one invalidation on the distribution", len(summaries) == 1, summaries):
        invalidation_id = summaries[0]["Id"]
        invalidation = cloudfront.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)["Invalidation"]
        paths = sorted(invalidation["InvalidationBatch"]["Paths"].get("Items", []))
    check("the invalidation has paths /a and /b", paths == ["/a", "/b"], paths)

    # Batch records only: other kinds of ledger item (e.g. producers' idempotency keys) have other pk prefixes.
    items = [item for item in dynamodb.scan(TableName=table_name)["Items"] if item["pk"]["S"].startswith("batch#")]
    check("one batch record in the ledger", len(items) == 1, items)
    if items:
        item = items[0]
        # Completed once the worker's tracker has seen CloudFront (the emulator) report it so.
        check("ledger item status is accepted or completed",
              item.get("status", {}).get("S") in ("accepted", "completed"), item.get("status"))
        check("ledger item holds the invalidation id",
              invalidation_id is not None and item.get("invalidation_id", {}).get("S") == invalidation_id,
              (item.get("invalidation_id"), invalidation_id))
        found = dynamodb.query(TableName=table_name, IndexName="by_invalidation",
                               KeyConditionExpression="invalidation_id = :id",
                               ExpressionAttributeValues={":id": {"S": str(invalidation_id)}})["Items"]
        check("by_invalidation finds the batch by its invalidation id",
              [i["pk"]["S"] for i in found] == [item["pk"]["S"]], found)

    dead_items = dynamodb.query(TableName=table_name, IndexName="by_outcome",
                                KeyConditionExpression="outcome = :o",
                                ExpressionAttributeValues={":o": {"S": "dead_lettered"}})["Items"]
    check("by_outcome holds the dead-lettered message's record with its reason",
          len(dead_items) == 1 and dead_items[0]["pk"]["S"].startswith("dlq#") and "reason" in dead_items[0],
          dead_items)

    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                               WaitTimeSeconds=1).get("Messages", [])
    check("dead-letter queue holds the invalid message", [m["Body"] for m in dead] == ["not json"],
          [m["Body"] for m in dead])
    if dead:
        reason = dead[0].get("MessageAttributes", {}).get("reason", {}).get("StringValue")
        check("dead-lettered message has a reason attribute", bool(reason), dead[0].get("MessageAttributes"))


def main():
    refuse_remote_endpoint()
    started = time.time()
    session = boto3.session.Session()
    cloudformation, sqs = session.client("cloudformation"), session.client("sqs")
    dynamodb, cloudfront = session.client("dynamodb"), session.client("cloudfront")
    try:
        check_template_settings_moto_ignores(load_template())
        stack_name = f"cfi-deploy-test-{uuid.uuid4().hex[:8]}"
        stack = create_stack(cloudformation, stack_name, DeployWorker="false")
        if check("stack created", stack["StackStatus"] == "CREATE_COMPLETE",
                 f"{stack['StackStatus']} {stack.get('StackStatusReason', '')}"):
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
            expected = {"QueueUrl", "DeadLetterQueueUrl", "TableName"}
            check("outputs QueueUrl, DeadLetterQueueUrl, TableName", expected <= outputs.keys(), outputs)
            check("no TaskRoleArn output without the worker", "TaskRoleArn" not in outputs, outputs)
            if expected <= outputs.keys():
                check_queues(sqs, outputs["QueueUrl"], outputs["DeadLetterQueueUrl"])
                check_table(dynamodb, outputs["TableName"])
                run_worker(sqs, cloudfront, dynamodb, outputs, create_distribution(cloudfront))
        iam, ecs = session.client("iam"), session.client("ecs")
        check_worker_stack(cloudformation, iam, ecs)
        check_worker_stack(cloudformation, iam, ecs, distribution_roles=(
            "EAAAAAAAAAAAA=arn:aws:iam::222233334444:role/cf-invalidator-target;"
            "EBBBBBBBBBBBB=arn:aws:iam::555566667777:role/cf-invalidator-target,external-id=team-b"))
    except Exception:
        traceback.print_exc()
        check("no unexpected exception", False)
    print(f"infra deploy test took {time.time() - started:.1f}s")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
