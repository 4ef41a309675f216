"""The checks catch breakage: each case copies infra/, breaks one thing, and expects the check to say so.

A case is (file, text to replace, replacement, check, words the problem must contain). The text must occur
in the file, so a case that no longer applies after an edit of the Terraform fails loudly instead of
passing silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import checks
from checks import Infra

P = "modules/pipeline"
F = "modules/fleet"

CASES = {
    # Lambda environment
    "env var removed": (f"{P}/main.tf", "      VIGIL_TABLE_NAME         = aws_dynamodb_table.state.name\n", "", checks.check_lambda_env, "VIGIL_TABLE_NAME is not set"),
    "env var hard-coded": (f"{P}/main.tf", "= aws_sqs_queue.rejects.url", '= "https://sqs/rejects"', checks.check_lambda_env, "VIGIL_REJECTS_QUEUE_URL"),
    "env var names a missing resource": (f"{P}/main.tf", "= aws_sns_topic.alerts.arn", "= aws_sns_topic.nope.arn", checks.check_lambda_env, "does not exist"),
    "env var points at another bucket": (f"{P}/main.tf", "= aws_s3_bucket.archive.id", "= aws_s3_bucket.models.id", checks.check_env_grants, "s3:PutObject"),
    "ORT path off the package": (f"{P}/main.tf", '"/var/task/lib/libonnxruntime.so.1.31.1"', '"/opt/lib/libonnxruntime.so"', checks.check_lambda_env, "ORT_DYLIB_PATH"),
    "TTL variable default changed": (f"{P}/variables.tf", "default     = 48", "default     = 24", checks.check_lambda_env, "default to 48"),
    "runtime changed": (f"{P}/main.tf", '"provided.al2023"', '"provided.al2"', checks.check_lambda_function, "runtime"),
    "log retention removed": (f"{P}/main.tf", "  retention_in_days = var.log_retention_days\n", "", checks.check_lambda_function, "retention"),
    "DLQ besides the destination": (f"{P}/main.tf", "  tracing_config {", "  dead_letter_config {\n    target_arn = aws_sqs_queue.failures.arn\n  }\n\n  tracing_config {", checks.check_lambda_function, "twice"),
    "profiles not from the profiles module": (f"{P}/main.tf", "module.profiles.required_profiles", "module.nope.required_profiles", checks.check_lambda_env, "does not call"),
    # topic rule
    "rule hears its own results": (f"{P}/ingest.tf", "FROM 'dt/vigil/+/telemetry'", "FROM 'dt/vigil/#'", checks.check_rule_sql, "also matches dt/vigil/cooler-001/condition"),
    "rule takes the wrong segment": (f"{P}/ingest.tf", "topic(3) AS device", "topic(2) AS device", checks.check_rule_sql, "not the thing name"),
    "rule lets the device's keys through": (f"{P}/ingest.tf", "SELECT encode(*, 'base64') AS payload,", "SELECT *,", checks.check_rule_sql, "must not become fields"),
    "rule without the receive time": (f"{P}/ingest.tf", ", timestamp() AS received_at", "", checks.check_rule_sql, "must select received_at"),
    "rule payload not base64": (f"{P}/ingest.tf", "encode(*, 'base64') AS payload", "encode(*, 'hex') AS payload", checks.check_rule_sql, "AS payload"),
    "rule on another topic": (f"{P}/ingest.tf", "FROM 'dt/vigil/+/telemetry'", "FROM 'vigil/+/telemetry'", checks.check_rule_sql, "does not match the device topic"),
    "rule sql version": (f"{P}/ingest.tf", '"2016-03-23"', '"2015-10-08"', checks.check_rule_sql, "sql_version"),
    "basic ingest rule name not wired": ("modules/stack/main.tf", "basic_ingest_rule_name = module.pipeline.topic_rule_name", 'basic_ingest_rule_name = "other_rule"', checks.check_basic_ingest, "basic_ingest_rule_name"),
    # IAM
    "wildcard without justification": (f"{P}/iam.tf", "    # wildcard: AWS requires it. X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level\n    # permissions; \"*\" is the only resource they accept.\n", "", checks.check_wildcards, "wildcard: <why>"),
    "service-wide action": (f"{P}/iam.tf", 'actions   = ["sns:Publish"]', 'actions   = ["sns:*"]', checks.check_wildcards, "service-wide action sns:*"),
    "resource star where ARNs exist": (f"{P}/iam.tf", "resources = [aws_dynamodb_table.state.arn]", 'resources = ["*"]  # wildcard: none really', checks.check_wildcards, 'resource "*"'),
    "every table": (f"{P}/iam.tf", "resources = [aws_dynamodb_table.state.arn]", 'resources = ["arn:aws:dynamodb:eu-west-1:123456789012:table/*"]  # wildcard: none really', checks.check_wildcards, "covers every resource"),
    "publish anywhere": (f"{P}/iam.tf", '"${local.iot_arn}:topic/dt/vigil/*/condition"]', '"${local.iot_arn}:topic/*"]', checks.check_function_permissions, "iot:Publish must be on"),
    "scan granted": (f"{P}/iam.tf", '"dynamodb:Query"]', '"dynamodb:Query", "dynamodb:Scan"]', checks.check_function_permissions, "Scan"),
    "any shadow": (f"{P}/iam.tf", ':thing/*/condition"', ':thing/*"', checks.check_function_permissions, "UpdateThingShadow"),
    "shadow topic publish granted again": (f"{P}/iam.tf", 'resources = ["${local.iot_arn}:topic/dt/vigil/*/condition"]', 'resources = ["${local.iot_arn}:topic/dt/vigil/*/condition", "${local.iot_arn}:topic/$aws/things/*/shadow/name/condition/update"]', checks.check_function_permissions, "iot:Publish must be on"),
    "batch writes granted again": (f"{P}/iam.tf", '"dynamodb:Query"]', '"dynamodb:Query", "dynamodb:BatchWriteItem"]', checks.check_function_permissions, "DynamoDB actions must be exactly"),
    "inline JSON policy": (f"{P}/iam.tf", "policy = data.aws_iam_policy_document.ingest.json", 'policy = jsonencode({ Version = "2012-10-17", Statement = [] })', checks.check_policies_are_documents, "aws_iam_policy_document"),
    "managed policy attached": (f"{P}/iam.tf", "# sqs mode: consume the ingest queue.", 'resource "aws_iam_role_policy_attachment" "admin" {\n  role       = aws_iam_role.ingest.name\n  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"\n}\n', checks.check_policies_are_documents, "managed policies"),
    # device policy
    "device publishes for any thing": (f"{F}/main.tf", 'telemetry_topic    = "dt/vigil/${local.thing}/telemetry"', 'telemetry_topic    = "dt/vigil/+/telemetry"', checks.check_device_policy, "not pinned"),
    "device updates its condition shadow": (f"{F}/main.tf", '"${local.iot_arn}:topic/${local.shadow_topic}/get"', '"${local.iot_arn}:topic/${local.shadow_topic}/update"', checks.check_device_policy, "may not publish"),
    "connect without attachment": (f"{F}/main.tf", '"iot:Connection.Thing.IsAttached"', '"iot:Connection.Thing.ThingTypeName"', checks.check_device_policy, "IsAttached"),
    "connect as anyone": (f"{F}/main.tf", '"${local.iot_arn}:client/${local.thing}"', '"${local.iot_arn}:client/*"', checks.check_device_policy, "client/"),
    "device hears other devices": (f"{F}/main.tf", 'condition_topic    = "dt/vigil/${local.thing}/condition"', 'condition_topic    = "dt/vigil/+/condition"', checks.check_device_policy, "wildcard"),
    "device gets a broad action": (f"{F}/main.tf", 'actions   = ["iot:Receive"]', 'actions   = ["iot:Receive", "iot:DeleteThingShadow"]', checks.check_device_policy, "not for devices"),
    "generated keys not sensitive": (f"{F}/outputs.tf", "if !contains(keys(var.certificate_csrs), k) }\n  sensitive   = true", "if !contains(keys(var.certificate_csrs), k) }", checks.check_fleet, "private_keys"),
    # buckets
    "public access not blocked": (f"{P}/storage.tf", "restrict_public_buckets = true", "restrict_public_buckets = false", checks.check_buckets, "public_access_block"),
    "bucket not encrypted": (f"{P}/storage.tf", 'sse_algorithm     = "aws:kms"', 'sse_algorithm     = "none"', checks.check_buckets, "encryption"),
    "versioning suspended": (f"{P}/storage.tf", 'versioning_configuration {\n    status = "Enabled"', 'versioning_configuration {\n    status = "Suspended"', checks.check_buckets, "versioning"),
    "plain HTTP allowed": (f"{P}/storage.tf", '    effect = "Deny"', '    effect = "Allow"', checks.check_buckets, "TLS"),
    # table
    "no point-in-time recovery": (f"{P}/storage.tf", "point_in_time_recovery {\n    enabled = true", "point_in_time_recovery {\n    enabled = false", checks.check_table, "point-in-time"),
    "TTL attribute renamed": (f"{P}/storage.tf", 'attribute_name = "expires_at"', 'attribute_name = "ttl"', checks.check_table, "expires_at"),
    "registry item shape": (f"{P}/storage.tf", 'sk      = { S = "PROFILE" }', 'sk      = { S = "DEVICE" }', checks.check_table, "PROFILE"),
    # ingestion modes and failure paths
    "no partial batch response": (f"{P}/main.tf", '  function_response_types            = ["ReportBatchItemFailures"]\n', "", checks.check_ingest_modes, "batch item failures"),
    "kinesis partition key": (f"{P}/ingest.tf", 'partition_key = "$${topic(3)}"', 'partition_key = "$${newuuid()}"', checks.check_ingest_modes, "partition key"),
    "error action elsewhere": (f"{P}/ingest.tf", "queue_url  = aws_sqs_queue.failures.url", "queue_url  = aws_sqs_queue.rejects.url", checks.check_ingest_modes, "error_action"),
    "queue unencrypted": (f"{P}/ingest.tf", "sqs_managed_sse_enabled   = true", "sqs_managed_sse_enabled   = false", checks.check_ingest_modes, "encrypted"),
    "mode validation loses kinesis": (f"{P}/variables.tf", 'contains(["direct", "sqs", "kinesis"], var.ingest_mode)', 'contains(["direct", "sqs"], var.ingest_mode)', checks.check_ingest_modes, "validated"),
    "permission for any rule": (f"{P}/main.tf", "  source_arn     = aws_iot_topic_rule.ingest[0].arn\n", "", checks.check_ingest_modes, "source_arn"),
    "throttles alarm gone": (f"{P}/monitoring.tf", 'metric_name         = "Throttles"', 'metric_name         = "Invocations"', checks.check_alarms, "Throttles"),
    # layout and hygiene
    "variable without description": ("modules/sagemaker/variables.tf", '  description = "Instances of an instance-backed endpoint (serverless = false)."\n', "", checks.check_layout, "instance_count has no description"),
    "variable without validation": (f"{F}/variables.tf", 'variable "tags" {', 'variable "extra" {\n  description = "x"\n  type        = string\n}\n\nvariable "tags" {', checks.check_layout, "extra (${string}) has no validation"),
    "outputs.tf missing": ("modules/sagemaker/outputs.tf", None, None, checks.check_layout, "missing outputs.tf"),
    "skip without reason": (f"{P}/main.tf", "#checkov:skip=CKV_AWS_117:The function only calls public AWS service endpoints; a VPC would add NAT gateway cost and cold-start time and protect nothing.", "#checkov:skip=CKV_AWS_117", checks.check_checkov_skips, "reason"),
    "example sets an unknown variable": ("envs/aws/terraform.tfvars.example", 'name   = "vigil"', 'name   = "vigil"\nnot_a_variable = 1', checks.check_tfvars_example, "not_a_variable"),
    "environment passes an unknown argument": ("envs/aws/main.tf", "  name = var.name\n", "  name  = var.name\n  bogus = 1\n", checks.check_envs_call_stack, "bogus"),
}


@pytest.fixture
def copy_of_infra(tmp_path, infra_root) -> Path:
    dest = tmp_path / "infra"
    shutil.copytree(infra_root, dest, ignore=shutil.ignore_patterns("tests", ".terraform", "*.tfstate*"))
    return dest


def break_file(root: Path, rel: str, old: str | None, new: str | None) -> None:
    path = root / rel
    if old is None:
        path.unlink()
        return
    text = path.read_text()
    assert old in text, f"case is stale: {old!r} no longer occurs in {rel}"
    path.write_text(text.replace(old, new, 1))


def test_unbroken_copy_passes(copy_of_infra):
    infra = Infra.load(copy_of_infra)
    for check in checks.ALL_CHECKS:
        assert check(infra) == [], check.__name__


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_check_detects(copy_of_infra, case):
    rel, old, new, check, words = CASES[case]
    break_file(copy_of_infra, rel, old, new)
    problems = check(Infra.load(copy_of_infra))
    assert any(words in p for p in problems), f"{check.__name__} did not report {words!r}; it said: {problems}"


# --- cross-checks with the Rust sources, on a made-up repository ---------------


@pytest.fixture
def fake_repo(tmp_path, infra_root) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(infra_root, repo / "infra", ignore=shutil.ignore_patterns("tests", ".terraform", "*.tfstate*"))
    (repo / "functions/ingest/src").mkdir(parents=True)
    (repo / "crates/core/src").mkdir(parents=True)
    return repo


def test_rust_env_names_are_collected(fake_repo):
    (fake_repo / "functions/ingest/src/config.rs").write_text('let t = env("VIGIL_TABLE_NAME")?; let x = env("VIGIL_NEW_SETTING")?;\n')
    (fake_repo / "crates/core/src/lib.rs").write_text('const IGNORED: &str = "VIGIL_ONLY_IN_CORE";\n')
    assert checks.rust_env_names(fake_repo) == {"VIGIL_TABLE_NAME", "VIGIL_NEW_SETTING"}


def test_rust_env_name_missing_from_lambda_is_detected(fake_repo):
    (fake_repo / "functions/ingest/src/config.rs").write_text('env("VIGIL_NEW_SETTING")\n')
    infra = Infra.load(fake_repo / "infra")
    env = checks.lambda_env(checks.ingest_function(infra.pipeline))
    assert "VIGIL_NEW_SETTING" not in env
    assert "VIGIL_NEW_SETTING" in checks.rust_env_names(fake_repo)


def test_rust_topic_templates_are_checked(fake_repo):
    (fake_repo / "crates/core/src/topics.rs").write_text(
        'fn a(d: &str) -> String { format!("dt/vigil/{d}/telemetry") }\n'
        'fn b(d: &str) -> String { format!("dt/vigil/{}/condition", d) }\n'
        'fn c() { assert!(parse("dt/vigil/a/b/telemetry").is_err()); }\n'  # a concrete test input: ignored
    )
    infra = Infra.load(fake_repo / "infra")
    assert checks.check_rust_topics(infra, fake_repo) == ([], 2)
    (fake_repo / "crates/core/src/topics.rs").write_text('fn a(s: &str, d: &str) -> String { format!("dt/vigil/{s}/{d}/telemetry") }\n')
    problems, checked = checks.check_rust_topics(infra, fake_repo)
    assert checked == 1 and "does not match" in problems[0]


def test_mqtt_match():
    assert checks.mqtt_match("dt/vigil/+/telemetry", "dt/vigil/x/telemetry")
    assert not checks.mqtt_match("dt/vigil/+/telemetry", "dt/vigil/x/y/telemetry")
    assert not checks.mqtt_match("dt/vigil/+/telemetry", "dt/vigil/x/condition")
    assert checks.mqtt_match("dt/vigil/#", "dt/vigil/x/condition")
    assert not checks.mqtt_match("dt/vigil/+", "dt/vigil/x/telemetry")
