"""infra/ against the AWS provider's schema (provider_schema.py), and the check's self-test: a copy of infra/
gets one known mistake of each class, and the check must name it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import provider_schema

P = "modules/pipeline"


@pytest.fixture(scope="session")
def schema() -> dict:
    return provider_schema.load()


def test_schema_is_the_pinned_provider(schema):
    assert schema["provider_version"] == provider_schema.PROVIDER_VERSION
    assert len(schema["resource"]) > 1000 and len(schema["data"]) > 400
    rule = schema["resource"]["aws_iot_topic_rule"]
    assert rule["attrs"]["sql"]["required"] and "error_action" in rule["blocks"]


def test_infra_matches_the_schema(schema, infra_root):
    problems = provider_schema.check_tree(infra_root, schema)
    assert problems == [], "\n".join(problems)


# (file, text, replacement, words the report must contain)
MISTAKES = {
    "unknown resource type": (f"{P}/ingest.tf", 'resource "aws_sqs_queue" "rejects"', 'resource "aws_sqs_queues" "rejects"', "unknown resource type aws_sqs_queues"),
    "unknown data source": (f"{P}/main.tf", 'data "aws_iot_endpoint" "data"', 'data "aws_iot_endpoints" "data"', "unknown data source type aws_iot_endpoints"),
    "unknown argument": (f"{P}/ingest.tf", "  message_retention_seconds  = 345600\n", "  message_retention_secs     = 345600\n", "unknown argument message_retention_secs"),
    "unknown argument in a nested block": (f"{P}/storage.tf", 'storage_class = "STANDARD_IA"', 'storage_klass = "STANDARD_IA"', "> rule > transition:"),
    "unknown argument in a dynamic block": (f"{P}/ingest.tf", "      use_base64 = false\n    }\n  }\n\n  # kinesis", "      use_b64 = false\n    }\n  }\n\n  # kinesis", "dynamic sqs"),
    "unknown provider argument": ("envs/localstack/main.tf", "  s3_use_path_style           = true", "  s3_force_path_style         = true", "unknown argument s3_force_path_style"),
    "missing required argument": (f"{P}/main.tf", "  role          = aws_iam_role.ingest.arn\n", "", "missing required argument role"),
    "missing required block": (f"{P}/storage.tf", 'resource "aws_s3_bucket_versioning" "models" {\n  bucket = aws_s3_bucket.models.id\n\n  versioning_configuration {\n    status = "Enabled"\n  }\n}', 'resource "aws_s3_bucket_versioning" "models" {\n  bucket = aws_s3_bucket.models.id\n}', "missing required block versioning_configuration"),
    "block written as argument": (f"{P}/storage.tf", "  point_in_time_recovery {\n    enabled = true\n  }", "  point_in_time_recovery = {\n    enabled = true\n  }", "point_in_time_recovery is a block of the schema, written as an argument"),
    "argument written as block": (f"{P}/storage.tf", '  billing_mode                = "PAY_PER_REQUEST"\n', "  billing_mode {\n  }\n", "billing_mode is an argument of the schema, written as a block"),
    "undeclared variable": (f"{P}/ingest.tf", "var.lambda_timeout_seconds * 6", "var.lambda_timeout_secs * 6", "variable lambda_timeout_secs is not declared"),
    "undefined local": (f"{P}/iam.tf", "name               = local.function_name", "name               = local.fn_name", "local fn_name is not defined"),
    "undeclared resource": (f"{P}/alerts.tf", "kms_master_key_id = aws_kms_key.this.arn", "kms_master_key_id = aws_kms_key.that.arn", "resource aws_kms_key.that is not declared"),
    "attribute the resource lacks": (f"{P}/main.tf", "VIGIL_REJECTS_QUEUE_URL  = aws_sqs_queue.rejects.url", "VIGIL_REJECTS_QUEUE_URL  = aws_sqs_queue.rejects.uri", "aws_sqs_queue has no attribute uri"),
    "undeclared data source": (f"{P}/main.tf", "data.aws_caller_identity.current.account_id", "data.aws_caller_identity.me.account_id", "data source aws_caller_identity.me is not declared"),
    "module output that does not exist": ("modules/stack/main.tf", "basic_ingest_rule_name = module.pipeline.topic_rule_name", "basic_ingest_rule_name = module.pipeline.rule_name", "module pipeline has no output rule_name"),
    "module that is not called": ("modules/stack/outputs.tf", "module.pipeline.rejects_queue_url", "module.pipe.rejects_queue_url", "module pipe is not called here"),
    "module argument it does not declare": ("modules/stack/main.tf", "  name = var.name\n  tags = var.tags\n\n  lambda_zip_path", "  name  = var.name\n  tags  = var.tags\n  bogus = 1\n\n  lambda_zip_path", "module pipeline has no variable bogus"),
    "module variable it requires": ("modules/stack/main.tf", "  lambda_zip_path             = var.lambda_zip_path\n", "", "required variable lambda_zip_path is not passed"),
}


@pytest.fixture
def copy_of_infra(tmp_path, infra_root) -> Path:
    dest = tmp_path / "infra"
    shutil.copytree(infra_root, dest, ignore=shutil.ignore_patterns("tests", ".terraform", "*.tfstate*"))
    return dest


@pytest.mark.parametrize("case", MISTAKES, ids=list(MISTAKES))
def test_schema_check_catches(schema, copy_of_infra, case):
    rel, old, new, words = MISTAKES[case]
    path = copy_of_infra / rel
    text = path.read_text()
    assert old in text, f"case is stale: {old!r} no longer occurs in {rel}"
    path.write_text(text.replace(old, new, 1))
    problems = provider_schema.check_tree(copy_of_infra, schema)
    assert any(words in p for p in problems), f"not reported: {words!r}; the check said: {problems}"


def test_scanner_tells_blocks_from_arguments():
    bodies = provider_schema.scan('resource "t" "n" {\n  a = {\n    b = 1\n  }\n  c {\n    d = <<-EOT\n      e {\n    EOT\n  }\n  f {}\n}\n')
    (r,) = bodies
    assert (r.kind, r.labels, set(r.attrs)) == ("resource", ["t", "n"], {"a"})
    assert [b.kind for b in r.blocks] == ["c", "f"] and set(r.blocks[0].attrs) == {"d"} and not r.blocks[0].blocks
