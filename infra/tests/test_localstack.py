"""infra/envs/localstack planned offline for each combination of enable_iot and ingest_mode: which resources,
data sources and modules the stack instantiates (every `count` / `for_each` of the stack and pipeline modules
evaluated), that LocalStack Community (no IoT Core) gets none of IoT's and only services the env points at
LocalStack, that each mode has its queue or stream, its event source mapping and its rule action, and that
direct mode without IoT is refused by the plan. No provider is needed: the AWS provider cannot run offline, so
these checks evaluate the conditions themselves and fail, naming the block, on a form they do not know."""

from __future__ import annotations

import re
from itertools import product

import pytest

from tfparse import attr, blocks

MODES = ("direct", "sqs", "kinesis")

# Resource/data type prefix -> the provider endpoint of envs/localstack it goes to (None: no API call).
SERVICES = {
    "aws_sqs_": "sqs",
    "aws_kinesis_": "kinesis",
    "aws_lambda_": "lambda",
    "aws_dynamodb_": "dynamodb",
    "aws_s3_": "s3",
    "aws_sns_": "sns",
    "aws_iam_role": "iam",
    "aws_kms_": "kms",
    "aws_cloudwatch_log_": "logs",
    "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_cloudwatch_dashboard": "cloudwatch",
    "aws_caller_identity": "sts",
    "aws_iam_policy_document": None,  # computed by the provider
    "aws_partition": None,
    "aws_region": None,
    "aws_iot_": "iot",
    "aws_sagemaker_": "sagemaker",
}

# What LocalStack Community emulates of these (IoT Core is Pro only).
COMMUNITY = {"sqs", "kinesis", "lambda", "dynamodb", "s3", "sns", "iam", "kms", "logs", "cloudwatch", "sts"}


def truth(expr: str, env: dict[str, bool], where: str) -> bool:
    """A condition of the forms the counts use: the names of `env`, `!`, `&&`, `||` and parentheses."""
    e = expr.strip()
    if e.startswith("${") and e.endswith("}"):
        e = e[2:-1]
    py = e.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    names = set(re.findall(r"\b(?:var|local)\.[a-z_]+\b", py))
    unknown = names - set(env)
    if unknown or re.search(r"[^\w\s.()]", py.replace("not", "")):
        pytest.fail(f"{where}: condition {expr!r} is not a form this plan evaluates ({sorted(unknown)})")
    for n in sorted(names, key=len, reverse=True):
        py = py.replace(n, str(env[n]))
    return bool(eval(py, {"__builtins__": {}}, {}))  # noqa: S307 - only True/False/and/or/not/parens remain


def instances(block, env, where: str) -> int:
    """How many instances a block's `count` / dynamic `for_each` makes (1 without either)."""
    count = attr(block, "count")
    if count is None:
        return 1
    m = re.fullmatch(r"\$\{(.+) \? 1 : 0\}", str(count))
    if not m:
        pytest.fail(f"{where}: count {count!r} is not `<condition> ? 1 : 0`")
    return 1 if truth(m.group(1), env, where) else 0


def environment(enable_iot: bool, mode: str) -> dict[str, bool]:
    # envs/localstack deploys without SageMaker (enable_sagemaker's default, no sagemaker_endpoint_name).
    return {
        "var.enable_iot": enable_iot,
        "local.direct_mode": mode == "direct",
        "local.sqs_mode": mode == "sqs",
        "local.kinesis_mode": mode == "kinesis",
        "var.enable_sagemaker": False,
        "local.sagemaker_enabled": False,
    }


def plan(infra, enable_iot: bool, mode: str) -> set[str]:
    """Addresses the localstack env would create: the stack's modules and the pipeline's blocks."""
    env = environment(enable_iot, mode)
    stack = infra.module("modules/stack")
    made = set()
    for name, call in stack.module_calls().items():
        if instances(call.body, env, f"{call.file}: module.{name}"):
            made.add(f"module.{name}")
    pipe = infra.pipeline
    for b in pipe.blocks:
        if b.kind in ("resource", "data") and instances(b.body, env, f"{b.file}: {b.address}"):
            made.add(b.address)
    if "module.fleet" in made:
        made |= {b.address for b in infra.fleet.blocks if b.kind in ("resource", "data")}
    return made


def service(address: str) -> str | None:
    rtype = address.removeprefix("data.").split(".")[0]
    for prefix, svc in SERVICES.items():
        if rtype.startswith(prefix):
            return svc
    pytest.fail(f"{address}: which LocalStack service is this? (extend SERVICES in {__file__})")


def test_the_localstack_env_defaults_to_community_in_sqs_mode(infra):
    ls = infra.module("envs/localstack")
    assert attr(ls.variables()["enable_iot"].body, "default") is False
    assert attr(ls.variables()["ingest_mode"].body, "default") == "sqs"
    call = ls.module_calls()["vigil"].body
    assert attr(call, "ingest_mode") == "${var.ingest_mode}" and attr(call, "enable_iot") == "${var.enable_iot}"
    assert attr(call, "enable_sagemaker") is None, "the plan below assumes no SageMaker"


@pytest.mark.parametrize("mode", ["sqs", "kinesis"])
def test_community_gets_no_iot_and_only_services_it_has(infra, mode):
    made = plan(infra, False, mode)
    assert "module.fleet" not in made and "module.sagemaker" not in made
    used = {a: service(a) for a in made if not a.startswith("module.")}
    iot = sorted(a for a, s in used.items() if s == "iot")
    assert not iot, f"IoT on Community: {iot}"
    outside = sorted(a for a, s in used.items() if s and s not in COMMUNITY)
    assert not outside, f"not on LocalStack Community: {outside}"
    text = (infra.root / "envs/localstack/main.tf").read_text()
    for svc in {s for s in used.values() if s}:
        assert re.search(rf"^\s*{svc}\s*=\s*var\.localstack_endpoint", text, re.M), f"envs/localstack: no {svc} endpoint"


@pytest.mark.parametrize("enable_iot,mode", list(product([False, True], ["sqs", "kinesis"])))
def test_each_batched_mode_has_its_source_and_mapping(infra, enable_iot, mode):
    made = plan(infra, enable_iot, mode)
    other = "kinesis" if mode == "sqs" else "sqs"
    theirs = {
        "sqs": {"aws_sqs_queue.ingest", "aws_sqs_queue.ingest_dlq", "aws_sqs_queue_redrive_allow_policy.ingest_dlq", "aws_lambda_event_source_mapping.sqs"},
        "kinesis": {"aws_kinesis_stream.ingest", "aws_lambda_event_source_mapping.kinesis"},
    }
    assert theirs[mode] <= made, theirs[mode] - made
    assert not theirs[other] & made, theirs[other] & made
    assert "aws_lambda_permission.iot_rule" not in made
    assert ("aws_iot_topic_rule.ingest" in made) == enable_iot
    # Without IoT the env tells where telemetry goes instead.
    out = {"sqs": "ingest_queue_url", "kinesis": "ingest_stream_name"}[mode]
    assert out in infra.module("envs/localstack").outputs()


@pytest.mark.parametrize("mode", MODES)
def test_with_iot_the_rule_acts_in_exactly_its_mode(infra, mode):
    made = plan(infra, True, mode)
    assert "module.fleet" in made and "aws_iot_topic_rule.ingest" in made
    assert ("aws_lambda_permission.iot_rule" in made) == (mode == "direct")
    env = environment(True, mode)
    rule = infra.pipeline.resource("aws_iot_topic_rule", "ingest")
    acting = []
    for dyn in blocks(rule.body, "dynamic"):
        for action, body in dyn.items():
            m = re.fullmatch(r"\$\{(.+) \? \[1\] : \[\]\}", str(attr(body, "for_each")))
            assert m, f"{rule.file}: dynamic {action}: for_each {attr(body, 'for_each')!r}"
            if truth(m.group(1), env, f"{rule.file}: dynamic {action}"):
                acting.append(action)
    assert acting == [{"direct": "lambda"}.get(mode, mode)]


def test_direct_mode_without_iot_is_refused_by_the_plan(infra):
    fn = infra.pipeline.resource("aws_lambda_function", "ingest")
    conds = [(attr(p, "condition"), attr(p, "error_message")) for lc in blocks(fn.body, "lifecycle") for p in blocks(lc, "precondition")]
    results = {mode: [truth(c, environment(False, mode), f"{fn.file}: precondition") for c, _ in conds if "direct_mode" in c] for mode in MODES}
    assert results["direct"] and not all(results["direct"]), results
    assert all(results["sqs"]) and all(results["kinesis"]), results
    # The iot_data_endpoint precondition is met by the env's coalesce(var.iot_data_endpoint, var.localstack_endpoint).
    call = infra.module("envs/localstack").module_calls()["vigil"].body
    assert attr(call, "iot_data_endpoint") == "${coalesce(var.iot_data_endpoint,var.localstack_endpoint)}"


def test_deploy_doc_tells_how_to_send_telemetry_without_iot(repo):
    doc = (repo / "docs/deploy.md").read_text()
    section = doc[doc.index("## LocalStack") :]
    section = section[: section.index("\n## ", 3)]
    assert "output -raw ingest_queue_url" in section and "sqs send-message" in section
    assert "output -raw ingest_stream_name" in section and "kinesis put-record" in section
    assert "make test-localstack" in section and "enable_iot" in section
    make = (repo / "Makefile").read_text()
    assert re.search(r"^test-localstack:.*##", make, re.M), "make test-localstack has no help text"
