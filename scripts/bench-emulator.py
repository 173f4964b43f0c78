"""Driver of scripts/bench-emulator: CPU per message of the release worker and of the boto3 baseline consumer.

For each run and each consumer: a fresh queue and table (`cf-invalidator setup`), the same seeded workload loaded
with send_message_batch, then the consumer is started and measured from the moment it is ready (worker: its
"worker started" log line; baseline: its "ready" line) until the queue is empty (ApproximateNumberOfMessages and
...NotVisible both 0). CPU is utime+stime of the consumer process from /proc/PID/stat (all its threads). The two
consumers alternate, so both see the same machine and the same emulator state.
"""
import argparse
import bisect
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")
SECTIONS = ["blog", "docs", "img", "assets/js", "assets/css", "products", "news", "help", "api/v1", "api/v2",
            "fonts", "downloads", "about", "careers", "events", "media/video", "media/audio", "shop/cart",
            "shop/items", "search", "legal", "partners", "press", "status"]
HOT = ["index.html", "", "feed.xml", "sitemap.xml", "index.json", "latest.html", "menu.json", "top.html", "nav.js",
       "styles.css", "banner.png", "rss"]


def zipf(n, s):
    cdf, total = [], 0.0
    for rank in range(1, n + 1):
        total += 1.0 / rank ** s
        cdf.append(total)
    return [c / total for c in cdf]


def draw(cdf, rng):
    return min(bisect.bisect_left(cdf, rng.random()), len(cdf) - 1)


def workload(messages, distribution_ids, seed):
    """The shape of benches/common (Zipf traffic, directory-clustered Zipf pages, hot pages, 1 % wildcards, 1-8
    paths per message), scaled to a few thousand messages: fewer directories and more hot pages, so that ~30 % of
    the paths repeat an earlier one of the same distribution here too."""
    rng = random.Random(seed)
    traffic, sections, pages, hot = zipf(len(distribution_ids), 1.0), zipf(len(SECTIONS), 1.0), zipf(20_000, 1.0), zipf(len(HOT), 1.0)
    seen, bodies, paths_total, repeats, wildcards = set(), [], 0, 0, 0
    for n in range(messages):
        d = draw(traffic, rng)
        home = "/" + SECTIONS[draw(sections, rng)]
        paths = []
        for _ in range(1 + rng.randrange(8)):
            section = home if rng.random() < 0.8 else "/" + SECTIONS[draw(sections, rng)]
            if rng.random() < 0.01:
                path = f"{section}/*"
                wildcards += 1
            elif rng.random() < 0.4:
                path = f"{section}/{HOT[draw(hot, rng)]}"
            else:
                page = draw(pages, rng)
                path = {0: f"{section}/files/report {page} (final).pdf", 1: f"{section}/caf\u00e9-{page}.html",
                        2: f"{section}/item-{page}.jpg?size={page % 4}"}.get(page % 50, f"{section}/{page % 16:02}/page-{page}.html")
            repeats += (d, path) in seen
            seen.add((d, path))
            paths.append(path)
        paths_total += len(paths)
        bodies.append(json.dumps({"distribution_id": distribution_ids[d], "paths": paths, "requester": f"deploy-{n % 7}"}))
    return bodies, {"messages": messages, "paths": paths_total, "repeats": repeats / paths_total,
                    "wildcards": wildcards / paths_total, "distributions": len({json.loads(b)["distribution_id"] for b in bodies})}


def cpu_seconds(pid, kinds=(11, 12)):
    """utime+stime (or just one of them) of a process and all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[k]) for k in kinds) / TICKS


def create_distributions(count):
    cloudfront = boto3.client("cloudfront")
    ids = []
    for n in range(count):
        config = {
            "CallerReference": str(uuid.uuid4()), "Comment": f"bench {n}", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "site", "DomainName": f"bench-{n}.s3.amazonaws.com",
                                                  "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "site", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
                                     "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}},
        }
        ids.append(cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"])
    return ids


def invalidation_count(ids):
    cloudfront = boto3.client("cloudfront")
    return sum(cloudfront.list_invalidations(DistributionId=d, MaxItems="1000")["InvalidationList"]["Quantity"] for d in ids)


def setup(binary, name):
    out = subprocess.run([binary, "setup", "--queue-name", name, "--table", name], check=True, capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["queue_url"]


def load(queue_url, bodies):
    sqs = boto3.client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        assert not failed, failed


def queue_empty(sqs, queue_url):
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return all(attributes[n] == "0" for n in names)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_counters(metrics_addr):
    """The worker's AWS requests by service and operation (its cfi_aws_requests_total counters), and the
    visibility extension entries it made."""
    page = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()
    extensions = sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                     if line.startswith("cfi_visibility_extensions_total"))
    counts = {}
    for line in page.splitlines():
        if line.startswith("cfi_aws_requests_total{"):
            labels, value = line[len("cfi_aws_requests_total{"):].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            counts[f"{fields['service'].strip(chr(34))} {fields['operation'].strip(chr(34))}"] = float(value)
    return counts, extensions


def emulator_cpu():
    """CPU seconds the emulator process has used: on one core, it is what bounds how fast anything drains."""
    pid = os.environ.get("CFI_EMULATOR_PID")
    return cpu_seconds(int(pid)) if pid else 0.0


def measure(consumer, args, name, bodies, log_dir):
    queue_url = setup(args.binary, name)
    load(queue_url, bodies)
    log = open(os.path.join(log_dir, f"{name}.log"), "w+")
    metrics_addr = None
    if consumer == "worker":
        metrics_addr = f"127.0.0.1:{free_port()}"
        command = args.worker_prefix.split() + [args.binary, "run", "--queue-url", queue_url, "--table", name, "--window", f"{args.window}s",
                   "--create-rate", str(args.create_rate), "--create-burst", str(max(1, int(args.create_rate))),
                   "--metrics-addr", metrics_addr]
        ready_text = "worker started"
    else:
        command = [sys.executable, os.path.join(HERE, "bench-baseline-consumer.py"), "--queue-url", queue_url,
                   "--table", name, "--window", str(args.window)]
        ready_text = "ready"
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    sqs = boto3.client("sqs")
    try:
        while True:
            log.seek(0)
            if ready_text in log.read():
                break
            if process.poll() is not None or time.monotonic() - started > 60:
                raise SystemExit(f"{consumer} did not start; see {log.name}")
            time.sleep(0.005)
        ready_at, cpu_ready, sys_ready = time.monotonic(), cpu_seconds(process.pid), cpu_seconds(process.pid, (12,))
        emulator_ready = emulator_cpu()
        while not queue_empty(sqs, queue_url):
            if process.poll() is not None or time.monotonic() - ready_at > args.timeout:
                raise SystemExit(f"{consumer} did not empty the queue; see {log.name}")
            time.sleep(0.1)
        emptied_at, cpu_empty, sys_empty = time.monotonic(), cpu_seconds(process.pid), cpu_seconds(process.pid, (12,))
        emulator_used = emulator_cpu() - emulator_ready
        requests, extensions = worker_counters(metrics_addr) if metrics_addr else ({}, 0.0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {"cpu": cpu_empty - cpu_ready, "sys": sys_empty - sys_ready, "cpu_with_startup": cpu_empty,
            "wall": emptied_at - ready_at, "emulator_cpu": emulator_used, "requests": requests, "extensions": extensions}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--distributions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=1, help="seconds, for both consumers")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--create-rate", type=float, default=1000,
                        help="the worker's --create-rate (the baseline ignores CloudFront's limits)")
    parser.add_argument("--consumers", default="worker,baseline", help="which consumers to run, in this order")
    parser.add_argument("--worker-prefix", default="",
                        help="command prefix for the worker, e.g. 'valgrind --tool=callgrind' to profile it")
    args = parser.parse_args()
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urlparse(endpoint).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"refusing to run against {endpoint!r}: the emulator must be on loopback")
    log_dir = os.path.join(os.path.dirname(HERE), "target", "bench-emulator")
    os.makedirs(log_dir, exist_ok=True)

    ids = create_distributions(args.distributions)
    bodies, shape = workload(args.messages, ids, args.seed)
    print(f"emulator: {args.messages} messages per consumer and run, window {args.window}s, both consumers alternating")
    print(f"workload: seed {args.seed}, {shape['messages']} messages, {shape['paths']} paths "
          f"({shape['paths'] / shape['messages']:.2f} per message), {100 * shape['repeats']:.1f} % repeats, "
          f"{100 * shape['wildcards']:.2f} % wildcards, {shape['distributions']} of {len(ids)} distributions used")
    consumers = args.consumers.split(",")
    results = {consumer: [] for consumer in consumers}
    tag = uuid.uuid4().hex[:6]
    for run in range(1, args.runs + 1):
        for consumer in consumers:
            before = invalidation_count(ids)
            result = measure(consumer, args, f"bench-{tag}-{run}-{consumer}", bodies, log_dir)
            result["invalidations"] = invalidation_count(ids) - before
            results[consumer].append(result)
            print(f"  run {run} {consumer:<8} CPU {result['cpu']:.3f} s ({1e6 * result['cpu'] / args.messages:7.1f} µs/msg; "
                  f"{result['cpu_with_startup']:.3f} s with start-up; {result['sys']:.3f} s of it in the kernel), queue emptied in {result['wall']:.1f} s, "
                  f"{result['invalidations']} invalidations; the emulator used {result['emulator_cpu']:.1f} CPU s", flush=True)
            if result["requests"]:
                total = sum(result["requests"].values())
                by_operation = ", ".join(f"{op} {n:.0f}" for op, n in sorted(result["requests"].items(), key=lambda kv: -kv[1]))
                print(f"      AWS requests: {total:.0f}, {total / args.messages:.3f} per message, "
                      f"{total / max(1, result['invalidations']):.2f} per invalidation: {by_operation}; "
                      f"{result['extensions'] / args.messages:.3f} visibility extension entries per message", flush=True)

    def med(consumer, key):
        return statistics.median(r[key] for r in results[consumer])

    if consumers != ["worker", "baseline"]:
        return
    print()
    print(f"medians of {args.runs} runs              | worker | baseline")
    for label, key, scale, fmt in [("CPU µs per message (ready → empty)", "cpu", 1e6 / args.messages, "{:.1f}"),
                                   ("  of which in the kernel", "sys", 1e6 / args.messages, "{:.1f}"),
                                   ("CPU µs per message incl. start-up", "cpu_with_startup", 1e6 / args.messages, "{:.1f}"),
                                   ("seconds until the queue was empty", "wall", 1, "{:.1f}"),
                                   ("emulator CPU seconds meanwhile", "emulator_cpu", 1, "{:.1f}"),
                                   ("invalidations created", "invalidations", 1, "{:.0f}")]:
        print(f"  {label:<36} | {fmt.format(med('worker', key) * scale):>6} | {fmt.format(med('baseline', key) * scale):>8}")
    ratio = med("baseline", "cpu") / med("worker", "cpu")
    print(f"SUMMARY emulator: worker {1e6 * med('worker', 'cpu') / args.messages:.1f} µs CPU/msg, boto3 baseline "
          f"{1e6 * med('baseline', 'cpu') / args.messages:.1f} µs CPU/msg: worker uses 1/{ratio:.1f} of the baseline's CPU "
          f"(#15 target <= 1/10); queue emptied in {med('worker', 'wall'):.1f} s vs {med('baseline', 'wall'):.1f} s "
          f"({med('worker', 'wall') / med('baseline', 'wall'):.2f}x, target <= 1.5x)")


if __name__ == "__main__":
    main()
