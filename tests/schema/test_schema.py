"""The JSON Schema for producers: it accepts the README's examples and rejects the hostile corpus where a schema
can tell (well-formed JSON whose structure is wrong; not unknown distributions or lengths after encoding).

Run with the emulator's Python (scripts/test does): it has jsonschema."""
import json
import pathlib
import re
import sys

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema" / "invalidation-request.v1.json").read_text())
validator = jsonschema.Draft202012Validator(SCHEMA)
jsonschema.Draft202012Validator.check_schema(SCHEMA)

# Refusals that depend on the worker's configuration or on encoding, which a schema of the message cannot express.
BEYOND_A_SCHEMA = ("distribution does not exist", "once encoded", "--allow-distribution list")

passed, failed = 0, 0


def expect(condition, what):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAILED: {what}")


def readme_examples():
    """Every JSON object in the README that names a distribution_id."""
    text = (ROOT / "README.md").read_text()
    for candidate in re.findall(r"\{[^{}]*\"distribution_id\"[^{}]*\}", text):
        try:
            yield json.loads(candidate)
        except json.JSONDecodeError:
            continue  # Python or shell syntax around it, e.g. the boto3 example; its literal is checked below.
    yield {"distribution_id": "E2QWRUHAPOMQZL", "paths": ["/index.html", "/img/*"], "requester": "deploy"}


examples = list(readme_examples())
expect(len(examples) >= 3, f"found README examples: {len(examples)}")
for example in examples:
    errors = [e.message for e in validator.iter_errors(example)]
    expect(not errors, f"README example {example} is rejected: {errors}")

corpus = [json.loads(line) for line in (ROOT / "tests" / "hostile" / "corpus.jsonl").read_text().splitlines()]
applicable = 0
for case in corpus:
    try:
        body = json.loads(case["body"])
        # Lone surrogate escapes: Python decodes them, but they are not Unicode, so no schema applies.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, RecursionError, UnicodeEncodeError):
        continue
    if not isinstance(body, dict) or "Records" in body or "Type" in body:
        if isinstance(body, dict):
            continue
        expect(not validator.is_valid(body), f"{case['note']}: a non-object body passes the schema")
        applicable += 1
        continue
    if case.get("expect") == "skip":
        continue
    if any(reason in case["reason"] for reason in BEYOND_A_SCHEMA):
        expect(validator.is_valid(body), f"{case['note']}: the schema refuses a structurally valid request")
        continue
    applicable += 1
    expect(not validator.is_valid(body), f"{case['note']}: accepted by the schema, refused by the worker")

generated = {
    "3,001 items": {"distribution_id": "E1", "paths": [f"/p{i}" for i in range(3001)]},
    "4,001-character path": {"distribution_id": "E1", "paths": ["/" + "a" * 4000]},
    "257-character tag": {"distribution_id": "E1", "tags": ["t" * 257]},
}
for note, body in generated.items():
    applicable += 1
    expect(not validator.is_valid(body), f"{note}: accepted by the schema")
expect(applicable >= 30, f"the schema judged {applicable} hostile cases")

print(f"schema: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
