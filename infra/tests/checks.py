"""Wiring checks of the Terraform under infra/.

Each check takes the parsed tree (`Infra`) and returns a list of problems (strings); an empty list means
the check passes. test_wiring.py runs them on the real tree; test_checks_detect.py breaks a copy of the
tree on purpose and asserts that the right check notices.

The contracts the Rust code and the infrastructure share are the constants at the top of this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rulesql import RULE_SELECT, mqtt_match, parse_rule_sql, select_problems, split_select  # noqa: F401 (re-exported)
from tfparse import Block, Module, Statement, as_list, attr, blocks, load_module, module_dirs, policy_doc_name, statements

# --- contracts -----------------------------------------------------------------

# Every environment variable the ingest Lambda reads. Also cross-checked against the Rust sources
# (rust_env_names) so that a variable added there without being wired here fails the tests.
LAMBDA_ENV = (
    "VIGIL_TABLE_NAME",
    "VIGIL_ALERT_TOPIC_ARN",
    "VIGIL_ARCHIVE_BUCKET",
    "VIGIL_MODELS_BUCKET",
    "VIGIL_REJECTS_QUEUE_URL",
    "VIGIL_IOT_DATA_ENDPOINT",
    "VIGIL_DEFAULT_PROFILE",
    "VIGIL_REQUIRED_PROFILES",
    "VIGIL_MODELS_DIR",
    "VIGIL_SAGEMAKER_ENDPOINT",
    "VIGIL_SAGEMAKER_FALLBACK",
    "VIGIL_WINDOW_TTL_HOURS",
    "VIGIL_BASELINES_BUCKET",
    "VIGIL_BASELINE_TTL_S",
    "ORT_DYLIB_PATH",
    "RUST_LOG",
)

# Where each variable must come from: (expression that must match in full, kind, resource type). The named
# group `res` is the resource (or data source) name, `var` the input variable.
ENV_SOURCES = {
    "VIGIL_TABLE_NAME": (r"\$\{aws_dynamodb_table\.(?P<res>\w+)\.name\}", "resource", "aws_dynamodb_table"),
    "VIGIL_ALERT_TOPIC_ARN": (r"\$\{aws_sns_topic\.(?P<res>\w+)\.arn\}", "resource", "aws_sns_topic"),
    "VIGIL_ARCHIVE_BUCKET": (r"\$\{aws_s3_bucket\.(?P<res>\w+)\.(id|bucket)\}", "resource", "aws_s3_bucket"),
    "VIGIL_MODELS_BUCKET": (r'\$\{(var\.\w+ \? )?aws_s3_bucket\.(?P<res>\w+)\.(id|bucket)( : "")?\}', "resource", "aws_s3_bucket"),
    "VIGIL_REJECTS_QUEUE_URL": (r"\$\{aws_sqs_queue\.(?P<res>\w+)\.(url|id)\}", "resource", "aws_sqs_queue"),
    # The account's endpoint, or (enable_iot = false: an emulator without IoT Core) the one given.
    "VIGIL_IOT_DATA_ENDPOINT": (
        r'\$\{var\.enable_iot \? "https://\$\{data\.aws_iot_endpoint\.(?P<res>\w+)\[0\]\.endpoint_address\}" : var\.iot_data_endpoint\}',
        "data",
        "aws_iot_endpoint",
    ),
    "VIGIL_DEFAULT_PROFILE": (r"\$\{var\.(?P<var>\w+)\}", "var", None),
    # The profiles module checked them against the bundled profiles at plan time.
    "VIGIL_REQUIRED_PROFILES": (r'\$\{join\(",", ?module\.(?P<module>\w+)\.required_profiles\)\}', "module", None),
    "VIGIL_SAGEMAKER_ENDPOINT": (r"\$\{var\.(?P<var>\w+)\}", "var", None),
    "VIGIL_SAGEMAKER_FALLBACK": (r"\$\{tostring\(var\.(?P<var>\w+)\)\}", "var", None),
    "VIGIL_WINDOW_TTL_HOURS": (r"\$\{tostring\(var\.(?P<var>\w+)\)\}", "var", None),
    "VIGIL_BASELINES_BUCKET": (r"\$\{aws_s3_bucket\.(?P<res>\w+)\.(id|bucket)\}", "resource", "aws_s3_bucket"),
    "VIGIL_BASELINE_TTL_S": (r"\$\{tostring\(var\.(?P<var>\w+)\)\}", "var", None),
    "RUST_LOG": (r"\$\{var\.(?P<var>\w+)\}", "var", None),
}
# Paths inside the package built by `make build`, as Lambda unpacks it.
ENV_CONSTANTS = {
    "VIGIL_MODELS_DIR": "/var/task/models",
    "ORT_DYLIB_PATH": "/var/task/lib/libonnxruntime.so.1.31.1",
}
# Type and default of the variables behind the variable-fed environment entries.
ENV_VARIABLES = {
    "VIGIL_DEFAULT_PROFILE": ("string", "hydraulic-cooler"),
    "VIGIL_SAGEMAKER_ENDPOINT": ("string", ""),
    "VIGIL_SAGEMAKER_FALLBACK": ("bool", None),
    "VIGIL_WINDOW_TTL_HOURS": ("number", 48),
    "VIGIL_BASELINE_TTL_S": ("number", 60),
    "RUST_LOG": ("string", "info"),
}
# What the function must be allowed to do with the resource each variable names
# (action, resource template with {res} for the resource name).
ENV_GRANTS = {
    "VIGIL_TABLE_NAME": [("dynamodb:PutItem", "${aws_dynamodb_table.{res}.arn}")],
    "VIGIL_ALERT_TOPIC_ARN": [("sns:Publish", "${aws_sns_topic.{res}.arn}")],
    "VIGIL_ARCHIVE_BUCKET": [
        ("s3:PutObject", "${aws_s3_bucket.{res}.arn}/windows/*"),
        ("s3:GetObject", "${aws_s3_bucket.{res}.arn}/windows/*"),
        ("s3:DeleteObject", "${aws_s3_bucket.{res}.arn}/windows/*"),
    ],
    "VIGIL_MODELS_BUCKET": [
        ("s3:GetObject", "${aws_s3_bucket.{res}.arn}/models/*"),
        ("s3:GetObject", "${aws_s3_bucket.{res}.arn}/profiles/*"),
    ],
    "VIGIL_REJECTS_QUEUE_URL": [("sqs:SendMessage", "${aws_sqs_queue.{res}.arn}")],
    "VIGIL_BASELINES_BUCKET": [("s3:GetObject", "${aws_s3_bucket.{res}.arn}/baselines/*")],
}

TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
}

# Topics (DESIGN.md, "Topics and payloads").
TELEMETRY_TOPIC = "dt/vigil/{thing}/telemetry"
CONDITION_TOPIC = "dt/vigil/{thing}/condition"
SHADOW_NAME = "condition"
# The named shadow operators write alarm actions to; the function writes its reported side.
ALARM_SHADOW_NAME = "alarm"
RULE_SQL_VERSION = "2016-03-23"
SAMPLE_THING = "cooler-001"

THING_VAR = "${iot:Connection.Thing.ThingName}"

# Actions AWS authorizes only on resource "*" (no resource-level permissions).
AWS_STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
}

# Resources whose `policy` (or `assume_role_policy`) holds a policy document.
POLICY_HOLDERS = {
    "aws_iam_role": "assume_role_policy",
    "aws_iam_role_policy": "policy",
    "aws_iam_policy": "policy",
    "aws_iot_policy": "policy",
    "aws_kms_key": "policy",
    "aws_s3_bucket_policy": "policy",
    "aws_sns_topic_policy": "policy",
    "aws_sqs_queue_policy": "policy",
}

JUSTIFICATION = re.compile(r"#\s*wildcard:\s*\S.{10,}")
CHECKOV_SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_AWS_\d+):(.+)")

MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")


# --- the tree ------------------------------------------------------------------


@dataclass
class Infra:
    root: Path  # the infra/ directory
    modules: dict[str, Module]  # "modules/pipeline" -> Module

    @classmethod
    def load(cls, root: Path) -> "Infra":
        return cls(root, {str(d.relative_to(root)): load_module(d) for d in module_dirs(root)})

    def module(self, rel: str) -> Module:
        if rel not in self.modules:
            raise KeyError(f"no Terraform in {self.root / rel}")
        return self.modules[rel]

    @property
    def pipeline(self) -> Module:
        return self.module("modules/pipeline")

    @property
    def fleet(self) -> Module:
        return self.module("modules/fleet")


def ingest_function(mod: Module) -> Block:
    fns = mod.resources("aws_lambda_function")
    fn = next((f for f in fns if f.name == "ingest"), None)
    if fn is None:
        raise AssertionError(f"{mod.path}: no aws_lambda_function.ingest")
    return fn


def lambda_env(fn: Block) -> dict[str, str]:
    env = blocks(fn.body, "environment")
    if not env:
        return {}
    variables = attr(env[0], "variables", {})
    return variables if isinstance(variables, dict) else {}


def policy_docs(mod: Module) -> dict[str, Block]:
    return {d.name: d for d in mod.data("aws_iam_policy_document")}


def role_statements(mod: Module, role: str) -> list[Statement]:
    """Statements of every inline policy attached to aws_iam_role.<role>."""
    docs = policy_docs(mod)
    out: list[Statement] = []
    for rp in mod.resources("aws_iam_role_policy"):
        if attr(rp.body, "role") in (f"${{aws_iam_role.{role}.id}}", f"${{aws_iam_role.{role}.name}}"):
            name = policy_doc_name(attr(rp.body, "policy"))
            if name in docs:
                out.extend(statements(docs[name]))
    return out


def function_role(mod: Module, fn: Block) -> str | None:
    m = re.fullmatch(r"\$\{aws_iam_role\.(\w+)\.arn\}", str(attr(fn.body, "role")))
    return m.group(1) if m else None


def resolved(mod: Module, values) -> list[str]:
    out = mod.resolve(as_list(values))
    return [str(v) for v in as_list(out)]


def validation_allows_only(var: Block, values: tuple[str, ...]) -> bool:
    """A validation of the form contains([<values>], var.x) lists exactly these values."""
    for v in blocks(var.body, "validation"):
        m = re.search(r"contains\(\[([^\]]*)\],\s*var\.\w+\)", str(attr(v, "condition")))
        if m and sorted(re.findall(r"['\"]([^'\"]+)['\"]", m.group(1))) == sorted(values):
            return True
    return False


# --- Lambda environment --------------------------------------------------------


def check_lambda_env(infra: Infra, required: tuple[str, ...] = LAMBDA_ENV) -> list[str]:
    """Every variable the function reads is set, from the resource or variable it must come from."""
    mod = infra.pipeline
    fn = ingest_function(mod)
    env = lambda_env(fn)
    problems = [f"{fn.address}: environment variable {name} is not set" for name in required if name not in env]
    variables = mod.variables()
    for name, expr in env.items():
        if isinstance(expr, str) and re.fullmatch(r"\$\{local\.\w+\}", expr):
            expr = mod.locals.get(expr[8:-1], expr)
        if name in ENV_CONSTANTS:
            value = mod.resolve(expr)
            if value != ENV_CONSTANTS[name]:
                problems.append(f"{fn.address}: {name} is {value!r}, the package puts it at {ENV_CONSTANTS[name]!r}")
            continue
        if name not in ENV_SOURCES:
            continue
        pattern, kind, rtype = ENV_SOURCES[name]
        m = re.fullmatch(pattern, str(expr))
        if not m:
            problems.append(f"{fn.address}: {name} = {expr!r} is not taken from where it must be ({pattern})")
            continue
        groups = m.groupdict()
        if kind == "module":
            call = mod.module_calls().get(groups["module"])
            if call is None or attr(call.body, "source") != "../profiles":
                problems.append(f"{fn.address}: {name} uses module.{groups['module']}, which this module does not call as ../profiles")
        if kind in ("resource", "data"):
            found = mod.data_source(rtype, groups["res"]) if kind == "data" else mod.resource(rtype, groups["res"])
            if found is None:
                problems.append(f"{fn.address}: {name} names {'data.' if kind == 'data' else ''}{rtype}.{groups['res']}, which does not exist")
            elif rtype == "aws_iot_endpoint" and attr(found.body, "endpoint_type") != "iot:Data-ATS":
                problems.append(f"{found.address}: endpoint_type must be iot:Data-ATS (the endpoint devices and the data plane use)")
        if groups.get("var"):
            var = variables.get(groups["var"])
            if var is None:
                problems.append(f"{fn.address}: {name} uses var.{groups['var']}, which is not declared")
            elif name in ENV_VARIABLES:
                vtype, default = ENV_VARIABLES[name]
                if attr(var.body, "type") != f"${{{vtype}}}":
                    problems.append(f"var.{groups['var']} (for {name}) must be of type {vtype}")
                if default is not None and attr(var.body, "default") != default:
                    problems.append(f"var.{groups['var']} (for {name}) must default to {default!r}")
    return problems


def check_env_grants(infra: Infra) -> list[str]:
    """The resources the environment points the function at are the ones its role may use."""
    mod = infra.pipeline
    fn = ingest_function(mod)
    env = lambda_env(fn)
    role = function_role(mod, fn)
    if role is None:
        return [f"{fn.address}: role is not an aws_iam_role of this module"]
    stmts = [s for s in role_statements(mod, role) if s.effect == "Allow"]
    problems = []
    for name, grants in ENV_GRANTS.items():
        expr = str(env.get(name, ""))
        if re.fullmatch(r"\$\{local\.\w+\}", expr):
            expr = str(mod.locals.get(expr[8:-1], expr))
        m = re.fullmatch(ENV_SOURCES[name][0], expr)
        if not m:
            continue  # reported by check_lambda_env
        for action, template in grants:
            resource = template.replace("{res}", m.group("res"))
            if not any(action in as_list(attr(s.body, "actions")) and resource in resolved(mod, attr(s.body, "resources")) for s in stmts):
                problems.append(f"role {role}: no Allow of {action} on {resource}, which {name} points the function at")
    return problems


def check_lambda_function(infra: Infra) -> list[str]:
    mod = infra.pipeline
    fn = ingest_function(mod)
    problems = []
    expect = {"runtime": "provided.al2023", "handler": "bootstrap"}
    for key, value in expect.items():
        if attr(fn.body, key) != value:
            problems.append(f"{fn.address}: {key} must be {value!r}, is {attr(fn.body, key)!r}")
    if attr(fn.body, "architectures") != ["${var.lambda_architecture}"]:
        problems.append(f"{fn.address}: architectures must be [var.lambda_architecture]")
    arch = mod.variables().get("lambda_architecture")
    if arch is None or attr(arch.body, "default") != "arm64":
        problems.append("var.lambda_architecture must default to arm64")
    elif not validation_allows_only(arch, ("arm64", "x86_64")):
        problems.append("var.lambda_architecture must be validated against arm64 and x86_64")
    if attr(fn.body, "filename") != "${var.lambda_zip_path}":
        problems.append(f"{fn.address}: filename must be var.lambda_zip_path")
    if "filebase64sha256(var.lambda_zip_path)" not in str(attr(fn.body, "source_code_hash")):
        problems.append(f"{fn.address}: source_code_hash must follow the package (filebase64sha256(var.lambda_zip_path))")
    # Failed asynchronous events go to one place: the invoke config's on-failure destination. A
    # dead_letter_config as well would deliver each of them twice.
    if blocks(fn.body, "dead_letter_config"):
        problems.append(f"{fn.address}: has a dead_letter_config besides the on-failure destination (failed events would arrive twice)")
    log_groups = mod.resources("aws_cloudwatch_log_group")
    if not any(attr(lg.body, "retention_in_days") is not None and attr(lg.body, "kms_key_id") for lg in log_groups):
        problems.append("the function's log group needs a retention and a KMS key")
    return problems


# --- topic rule and topics -----------------------------------------------------


def topic_rule(mod: Module) -> Block:
    """The telemetry rule (`ingest`); other rules (alarms.tf: operators' shadow deltas) have their own topics."""
    rules = [r for r in mod.resources("aws_iot_topic_rule") if r.name == "ingest"]
    if len(rules) != 1:
        raise AssertionError(f"{mod.path}: expected one aws_iot_topic_rule.ingest, found {len(rules)}")
    return rules[0]


def check_rule_sql(infra: Infra, device_topics: list[str] | None = None) -> list[str]:
    """The rule listens to exactly the telemetry topics and takes the device from topic(3)."""
    rule = topic_rule(infra.pipeline)
    sql = str(attr(rule.body, "sql"))
    problems = []
    if attr(rule.body, "sql_version") != RULE_SQL_VERSION:
        problems.append(f"{rule.address}: sql_version must be {RULE_SQL_VERSION}")
    parsed = parse_rule_sql(sql)
    if parsed is None:
        return problems + [f"{rule.address}: cannot read SQL {sql!r}"]
    select, topic_filter = parsed
    problems += [f"{rule.address}: {p}" for p in select_problems(select)]
    device = [s for s in select if re.fullmatch(r"topic\((\d+)\)\s+AS\s+device", s, re.I)]
    if not device:
        problems.append(f"{rule.address}: SQL must select topic(3) AS device")
    samples = [TELEMETRY_TOPIC.format(thing=SAMPLE_THING)] + list(device_topics or [])
    for topic in samples:
        if not mqtt_match(topic_filter, topic):
            problems.append(f"{rule.address}: FROM '{topic_filter}' does not match the device topic {topic}")
            continue
        for d in device:
            n = int(re.match(r"topic\((\d+)\)", d, re.I).group(1))
            segments = topic.split("/")
            if n < 1 or n > len(segments) or segments[n - 1] != SAMPLE_THING:
                problems.append(f"{rule.address}: {d} of {topic} is not the thing name")
    # The function publishes results back under dt/vigil/: the rule must not hear them (a loop).
    for other in (CONDITION_TOPIC.format(thing=SAMPLE_THING), f"dt/vigil/{SAMPLE_THING}/telemetry/x", f"$aws/things/{SAMPLE_THING}/shadow/name/{SHADOW_NAME}/update"):
        if mqtt_match(topic_filter, other):
            problems.append(f"{rule.address}: FROM '{topic_filter}' also matches {other}")
    return problems


def check_basic_ingest(infra: Infra) -> list[str]:
    """The Basic Ingest topic devices may publish to reaches this rule, with topic(3) still the thing."""
    problems = []
    fleet, pipeline, stack = infra.fleet, infra.pipeline, infra.module("modules/stack")
    rule = topic_rule(pipeline)
    out = pipeline.outputs().get("topic_rule_name")
    if out is None or attr(out.body, "value") != f"${{one({rule.address}[*].name)}}":
        problems.append(f"modules/pipeline: output topic_rule_name must be one({rule.address}[*].name)")
    call = stack.module_calls().get("fleet")
    if call is None or attr(call.body, "basic_ingest_rule_name") != "${module.pipeline.topic_rule_name}":
        problems.append("modules/stack: module.fleet.basic_ingest_rule_name must be module.pipeline.topic_rule_name")
    publish = [r for s in device_statements(fleet) if "iot:Publish" in as_list(attr(s.body, "actions")) for r in resolved(fleet, attr(s.body, "resources"))]
    prefix = "$aws/rules/${var.basic_ingest_rule_name}/"
    ingest = [r.split(":topic/", 1)[1] for r in publish if ":topic/$aws/rules/" in r]
    if not ingest:
        problems.append("device policy: no Basic Ingest topic ($aws/rules/<rule>/dt/vigil/<thing>/telemetry)")
    parsed = parse_rule_sql(str(attr(rule.body, "sql")))
    for topic in ingest:
        if not topic.startswith(prefix):
            problems.append(f"device policy: Basic Ingest topic {topic} must start with {prefix}")
            continue
        seen_by_rule = topic[len(prefix) :].replace(THING_VAR, SAMPLE_THING)
        if parsed and not mqtt_match(parsed[1], seen_by_rule):
            problems.append(f"device policy: Basic Ingest topic {topic} reaches the rule as {seen_by_rule}, which FROM '{parsed[1]}' does not match")
    return problems


RUST_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def rust_sources(repo: Path, dirs: tuple[str, ...]) -> list[Path]:
    return sorted(p for d in dirs for p in (repo / d).rglob("*.rs") if "target" not in p.parts)


def rust_env_names(repo: Path) -> set[str]:
    """VIGIL_* names string literals in the function and its AWS adapters mention."""
    names: set[str] = set()
    for path in rust_sources(repo, ("functions", "crates/aws/src")):
        names.update(re.findall(r'"(VIGIL_[A-Z0-9_]+)"', path.read_text(errors="replace")))
    return names


PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)?(:[^{}]*)?\}(?!\})")


def rust_topic_literals(repo: Path) -> list[tuple[Path, str]]:
    """Topic templates of the Rust code: literals that start with dt/vigil/ and either hold a format
    placeholder ("dt/vigil/{device}/telemetry") or are a subscription filter ("dt/vigil/+/telemetry").
    Concrete topics (test inputs, examples) are left alone."""
    out = []
    for path in rust_sources(repo, ("crates", "functions")):
        for lit in RUST_STRING.findall(path.read_text(errors="replace")):
            if lit.startswith("dt/vigil/") and (PLACEHOLDER.search(lit) or "+" in lit or "#" in lit):
                out.append((path, lit))
    return out


def check_rust_topics(infra: Infra, repo: Path) -> tuple[list[str], int]:
    """Topic templates the Rust code spells fit the rule and the policies. Returns (problems, literals checked)."""
    rule = topic_rule(infra.pipeline)
    parsed = parse_rule_sql(str(attr(rule.body, "sql")))
    if parsed is None:
        return [f"{rule.address}: cannot read its SQL"], 0
    topic_filter = parsed[1]
    problems, checked = [], 0
    for path, lit in rust_topic_literals(repo):
        concrete = PLACEHOLDER.sub(SAMPLE_THING, lit)
        if concrete.endswith("/telemetry"):
            checked += 1
            if "+" in concrete or "#" in concrete:
                if concrete != topic_filter:
                    problems.append(f"{path}: telemetry filter {lit!r} differs from the rule's FROM '{topic_filter}'")
            elif not mqtt_match(topic_filter, concrete):
                problems.append(f"{path}: devices publish to {lit!r}, which the rule's FROM '{topic_filter}' does not match")
        elif concrete.endswith("/condition"):
            checked += 1
            expected = CONDITION_TOPIC.format(thing=SAMPLE_THING)
            if "+" not in concrete and "#" not in concrete and concrete != expected:
                problems.append(f"{path}: result topic {lit!r} is not {CONDITION_TOPIC}")
    return problems, checked


# --- IAM -----------------------------------------------------------------------


def key_policy_docs(mod: Module) -> set[str]:
    return {policy_doc_name(attr(k.body, "policy")) for k in mod.resources("aws_kms_key")} - {None}


def check_policies_are_documents(infra: Infra) -> list[str]:
    """Every policy is an aws_iam_policy_document (so the checks below see all of them), none is AWS-managed."""
    problems = []
    for rel, mod in infra.modules.items():
        docs = policy_docs(mod)
        for rtype, key in POLICY_HOLDERS.items():
            for res in mod.resources(rtype):
                expr = attr(res.body, key)
                if expr is None:
                    continue
                name = policy_doc_name(expr)
                if name is None or name not in docs:
                    problems.append(f"{rel}: {res.address}.{key} must be data.aws_iam_policy_document.<name>.json of the same module, is {expr!r}")
        for rtype in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment", "aws_iam_role_policies_exclusive"):
            for res in mod.resources(rtype):
                problems.append(f"{rel}: {res.address}: attach policies as inline documents, not managed policies")
        for role in mod.resources("aws_iam_role"):
            if "managed_policy_arns" in role.body:
                problems.append(f"{rel}: {role.address}: managed_policy_arns is not allowed")
        for doc in docs.values():
            if blocks(doc.body, "dynamic"):
                problems.append(f"{rel}: {doc.address}: dynamic statements hide from these checks; use a separate document with count")
            for key in ("source_policy_documents", "override_policy_documents"):
                if key in doc.body:
                    problems.append(f"{rel}: {doc.address}: {key} hides statements from these checks")
    return problems


def check_wildcards(infra: Infra) -> list[str]:
    """No "*" in actions or resources unless AWS requires it, and every "*" justified by a `# wildcard:` comment."""
    problems = []
    for rel, mod in infra.modules.items():
        key_docs = key_policy_docs(mod)
        for doc in policy_docs(mod).values():
            for st in statements(doc):
                actions = [str(a) for a in as_list(attr(st.body, "actions"))]
                resources = resolved(mod, attr(st.body, "resources"))
                where = f"{rel}/{st.where()}"
                for key in ("not_actions", "not_resources"):
                    if key in st.body and st.effect == "Allow":
                        problems.append(f"{where}: Allow with {key} grants everything else")
                starred = [a for a in actions if "*" in a] + [r for r in resources if "*" in r]
                if starred and not JUSTIFICATION.search(st.text):
                    problems.append(f"{where}: {starred} need a `# wildcard: <why>` comment in the statement")
                if st.effect != "Allow":
                    continue
                key_policy = doc.name in key_docs
                for a in actions:
                    if a == "*":
                        problems.append(f"{where}: action \"*\"")
                    elif a.endswith(":*") and not key_policy:
                        problems.append(f"{where}: service-wide action {a}")
                if "*" in resources and not key_policy:
                    needless = [a for a in actions if a not in AWS_STAR_ONLY_ACTIONS]
                    if needless:
                        problems.append(f"{where}: resource \"*\" for {needless}, which AWS lets you scope to resources")
                for r in resources:
                    if re.search(r":(table|topic|thing|queue|stream|function|endpoint|rule|key|client|topicfilter)/\*$", r) or r.endswith(":::*"):
                        problems.append(f"{where}: {r} covers every resource of its type")
    return problems


def check_function_permissions(infra: Infra) -> list[str]:
    """The function's role: the table actions exactly, results and shadow topics only, the one endpoint."""
    mod = infra.pipeline
    fn = ingest_function(mod)
    role = function_role(mod, fn)
    stmts = role_statements(mod, role) if role else []
    problems = []
    table_actions = {a for s in stmts for a in as_list(attr(s.body, "actions")) if str(a).startswith("dynamodb:")}
    if table_actions != TABLE_ACTIONS:
        problems.append(f"role {role}: DynamoDB actions must be exactly {sorted(TABLE_ACTIONS)}, are {sorted(table_actions)}")
    for s in stmts:
        if any(str(a).startswith("dynamodb:") for a in as_list(attr(s.body, "actions"))):
            if resolved(mod, attr(s.body, "resources")) != ["${aws_dynamodb_table.state.arn}"]:
                problems.append(f"role {role}: DynamoDB actions must be on the state table only")
    iot_arn = str(mod.resolve("${local.iot_arn}"))
    # The shadow is written with UpdateThingShadow (HTTP), which needs no iot:Publish on its topic.
    expected_publish = {f"{iot_arn}:topic/dt/vigil/*/condition"}
    publish = {r for s in stmts if "iot:Publish" in as_list(attr(s.body, "actions")) for r in resolved(mod, attr(s.body, "resources"))}
    if publish != expected_publish:
        problems.append(f"role {role}: iot:Publish must be on {sorted(expected_publish)}, is on {sorted(publish)}")
    shadow = {r for s in stmts if "iot:UpdateThingShadow" in as_list(attr(s.body, "actions")) for r in resolved(mod, attr(s.body, "resources"))}
    if shadow != {f"{iot_arn}:thing/*/{SHADOW_NAME}", f"{iot_arn}:thing/*/{ALARM_SHADOW_NAME}"}:
        problems.append(f"role {role}: iot:UpdateThingShadow must be on the `{SHADOW_NAME}` and `{ALARM_SHADOW_NAME}` named shadows of things only, is on {sorted(shadow)}")
    for s in stmts:
        acts = [str(a) for a in as_list(attr(s.body, "actions"))]
        if any(a.startswith("iot:") for a in acts) and not set(acts) <= {"iot:Publish", "iot:UpdateThingShadow"}:
            problems.append(f"role {role}: the function needs no IoT action but Publish and UpdateThingShadow, has {acts}")
        if "sagemaker:InvokeEndpoint" in acts:
            res = resolved(mod, attr(s.body, "resources"))
            if len(res) != 1 or "*" in res[0] or ":endpoint/" not in res[0]:
                problems.append(f"role {role}: sagemaker:InvokeEndpoint must be on the one endpoint, is on {res}")
    if not any("sagemaker:InvokeEndpoint" in as_list(attr(s.body, "actions")) for s in stmts):
        problems.append(f"role {role}: no sagemaker:InvokeEndpoint statement for the optional endpoint")
    for rel, m in infra.modules.items():
        for doc in policy_docs(m).values():
            for s in statements(doc):
                if any(str(a) in ("dynamodb:Scan", "dynamodb:*") for a in as_list(attr(s.body, "actions"))):
                    problems.append(f"{rel}/{s.where()}: Scan is not needed by anyone")
    return problems


# --- device policy -------------------------------------------------------------


def device_statements(fleet: Module) -> list[Statement]:
    policies = fleet.resources("aws_iot_policy")
    if len(policies) != 1:
        raise AssertionError(f"{fleet.path}: expected one aws_iot_policy, found {len(policies)}")
    name = policy_doc_name(attr(policies[0].body, "policy"))
    doc = fleet.data_source("aws_iam_policy_document", name or "")
    if doc is None:
        raise AssertionError(f"{policies[0].address}: policy is not a policy document of the module")
    return list(statements(doc))


def check_device_policy(infra: Infra) -> list[str]:
    """A device connects only as itself, publishes only its telemetry, hears only its results and shadow."""
    fleet = infra.fleet
    iot_arn = str(fleet.resolve("${local.iot_arn}"))
    problems = []
    allowed = {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
    telemetry = f"{iot_arn}:topic/" + TELEMETRY_TOPIC.format(thing=THING_VAR)
    condition = CONDITION_TOPIC.format(thing=THING_VAR)
    shadow = f"$aws/things/{THING_VAR}/shadow/name/{SHADOW_NAME}/"
    publish_ok = {telemetry, f"{iot_arn}:topic/{shadow}get"}
    connect_seen = publish_seen = False
    for st in device_statements(fleet):
        where = f"device policy statement {st.sid}"
        if st.effect != "Allow":
            continue
        actions = set(str(a) for a in as_list(attr(st.body, "actions")))
        resources = resolved(fleet, attr(st.body, "resources"))
        if not actions <= allowed:
            problems.append(f"{where}: actions {sorted(actions - allowed)} are not for devices")
        for r in resources:
            if THING_VAR not in r:
                problems.append(f"{where}: {r} is not pinned to the device by {THING_VAR}")
            if any(c in r for c in "*+#?"):
                problems.append(f"{where}: {r} has a wildcard")
        if "iot:Connect" in actions:
            connect_seen = True
            if resources != [f"{iot_arn}:client/{THING_VAR}"]:
                problems.append(f"{where}: iot:Connect must be on client/{THING_VAR} only, is on {resources}")
            conds = blocks(st.body, "condition")
            if not any(attr(c, "variable") == "iot:Connection.Thing.IsAttached" and as_list(attr(c, "values")) == ["true"] for c in conds):
                problems.append(f"{where}: iot:Connect needs the condition iot:Connection.Thing.IsAttached = true")
        if "iot:Publish" in actions:
            for r in resources:
                topic = r.split(":topic/", 1)[-1]
                if r in publish_ok:
                    publish_seen = publish_seen or r == telemetry
                elif topic.startswith("$aws/rules/") and topic.endswith("/" + TELEMETRY_TOPIC.format(thing=THING_VAR)):
                    pass  # Basic Ingest, checked by check_basic_ingest
                else:
                    problems.append(f"{where}: a device may not publish to {r}")
        for action, kind in (("iot:Subscribe", "topicfilter"), ("iot:Receive", "topic")):
            if action in actions:
                for r in resources:
                    if not r.startswith(f"{iot_arn}:{kind}/"):
                        problems.append(f"{where}: {action} resources must be {kind} ARNs, {r} is not")
                        continue
                    topic = r.split(f":{kind}/", 1)[1]
                    if topic != condition and not topic.startswith(shadow):
                        problems.append(f"{where}: {action} on {topic}, which is neither the device's condition topic nor its `{SHADOW_NAME}` shadow")
    if not connect_seen:
        problems.append("device policy: no iot:Connect statement")
    if not publish_seen:
        problems.append(f"device policy: devices may not publish to their telemetry topic {telemetry}")
    return problems


def check_fleet(infra: Infra) -> list[str]:
    fleet = infra.fleet
    problems = []
    for rtype in ("aws_iot_thing", "aws_iot_certificate", "aws_iot_thing_principal_attachment", "aws_iot_policy_attachment", "aws_iot_thing_group_membership"):
        res = fleet.resources(rtype)
        if not res or attr(res[0].body, "for_each") != "${var.devices}":
            problems.append(f"modules/fleet: {rtype} must exist for_each var.devices")
    for rtype in ("aws_iot_thing_type", "aws_iot_thing_group"):
        if not fleet.resources(rtype):
            problems.append(f"modules/fleet: no {rtype}")
    thing = fleet.resources("aws_iot_thing")
    if thing and "each.value" not in str(attr(thing[0].body, "attributes")):
        problems.append("modules/fleet: things must carry their profile as attribute")
    cert = fleet.resources("aws_iot_certificate")
    if cert and "var.certificate_csrs" not in str(attr(cert[0].body, "csr")):
        problems.append("modules/fleet: certificates must be signed from var.certificate_csrs when given")
    for name in ("certificate_pems", "private_keys"):
        out = fleet.outputs().get(name)
        if out is None or attr(out.body, "sensitive") is not True:
            problems.append(f"modules/fleet: output {name} must exist and be sensitive")
    return problems


# --- storage -------------------------------------------------------------------


def bucket_companions(mod: Module, rtype: str, bucket: str) -> list[Block]:
    refs = {f"${{aws_s3_bucket.{bucket}.id}}", f"${{aws_s3_bucket.{bucket}.bucket}}"}
    return [r for r in mod.resources(rtype) if attr(r.body, "bucket") in refs]


def check_buckets(infra: Infra) -> list[str]:
    """Every bucket: public access blocked, ACLs off, encrypted, versioned, lifecycle rules, TLS only."""
    problems = []
    for rel, mod in infra.modules.items():
        for b in mod.resources("aws_s3_bucket"):
            where = f"{rel}: {b.address}"
            pab = bucket_companions(mod, "aws_s3_bucket_public_access_block", b.name)
            flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
            if not pab or not all(attr(pab[0].body, f) is True for f in flags):
                problems.append(f"{where}: needs an aws_s3_bucket_public_access_block with all four flags true")
            sse = bucket_companions(mod, "aws_s3_bucket_server_side_encryption_configuration", b.name)
            algos = [attr(d, "sse_algorithm") for s in sse for rule in blocks(s.body, "rule") for d in blocks(rule, "apply_server_side_encryption_by_default")]
            if not algos or not all(a in ("aws:kms", "aws:kms:dsse", "AES256") for a in algos):
                problems.append(f"{where}: needs default encryption (aws:kms, or AES256 where AWS allows nothing else)")
            for s in sse:
                for rule in blocks(s.body, "rule"):
                    for d in blocks(rule, "apply_server_side_encryption_by_default"):
                        if attr(d, "sse_algorithm") == "aws:kms" and not attr(d, "kms_master_key_id"):
                            problems.append(f"{where}: aws:kms encryption must name the stack's key")
            ver = bucket_companions(mod, "aws_s3_bucket_versioning", b.name)
            if not ver or not any(attr(v, "status") == "Enabled" for x in ver for v in blocks(x.body, "versioning_configuration")):
                problems.append(f"{where}: versioning must be Enabled")
            life = bucket_companions(mod, "aws_s3_bucket_lifecycle_configuration", b.name)
            if not life or not blocks(life[0].body, "rule"):
                problems.append(f"{where}: needs lifecycle rules")
            own = bucket_companions(mod, "aws_s3_bucket_ownership_controls", b.name)
            if not own or not any(attr(r, "object_ownership") == "BucketOwnerEnforced" for o in own for r in blocks(o.body, "rule")):
                problems.append(f"{where}: ACLs must be disabled (BucketOwnerEnforced)")
            pol = bucket_companions(mod, "aws_s3_bucket_policy", b.name)
            doc = mod.data_source("aws_iam_policy_document", policy_doc_name(attr(pol[0].body, "policy")) or "") if pol else None
            denies_http = doc is not None and any(
                s.effect == "Deny" and any(attr(c, "variable") == "aws:SecureTransport" for c in blocks(s.body, "condition")) for s in statements(doc)
            )
            if not denies_http:
                problems.append(f"{where}: its bucket policy must deny requests without TLS (aws:SecureTransport)")
    return problems


def check_table(infra: Infra) -> list[str]:
    mod = infra.pipeline
    tables = mod.resources("aws_dynamodb_table")
    if len(tables) != 1:
        return [f"modules/pipeline: expected one DynamoDB table, found {len(tables)}"]
    t = tables[0]
    problems = []
    expect = {"billing_mode": "PAY_PER_REQUEST", "hash_key": "pk", "range_key": "sk"}
    for k, v in expect.items():
        if attr(t.body, k) != v:
            problems.append(f"{t.address}: {k} must be {v!r}")
    attrs = {attr(a, "name"): attr(a, "type") for a in blocks(t.body, "attribute")}
    if attrs != {"pk": "S", "sk": "S"}:
        problems.append(f"{t.address}: attributes must be pk (S) and sk (S), are {attrs}")
    ttl = blocks(t.body, "ttl")
    if not ttl or attr(ttl[0], "attribute_name") != "expires_at" or attr(ttl[0], "enabled") is not True:
        problems.append(f"{t.address}: TTL must be enabled on expires_at")
    pitr = blocks(t.body, "point_in_time_recovery")
    if not pitr or attr(pitr[0], "enabled") is not True:
        problems.append(f"{t.address}: point-in-time recovery must be enabled")
    sse = blocks(t.body, "server_side_encryption")
    if not sse or attr(sse[0], "enabled") is not True:
        problems.append(f"{t.address}: server-side encryption must be enabled")
    items = mod.resources("aws_dynamodb_table_item")
    registry = [i for i in items if attr(i.body, "for_each") == "${var.devices}"]
    if not registry:
        problems.append("modules/pipeline: the device registry (aws_dynamodb_table_item for_each var.devices) is missing")
    for item in registry:
        body = str(attr(item.body, "item"))
        for needle in ("'pk': {'S': 'DEVICE#${each.key}'}", "'sk': {'S': 'PROFILE'}", "'profile': {'S': '${each.value}'}"):
            if needle not in body:
                problems.append(f"{item.address}: item must hold {needle}")
    return problems


# --- ingestion modes and failure paths ------------------------------------------


def check_ingest_modes(infra: Infra) -> list[str]:
    mod = infra.pipeline
    problems = []
    var = mod.variables().get("ingest_mode")
    if var is None or attr(var.body, "default") != "direct":
        problems.append("var.ingest_mode must exist and default to direct")
    elif not validation_allows_only(var, ("direct", "sqs", "kinesis")):
        problems.append("var.ingest_mode must be validated against direct, sqs and kinesis")
    rule = topic_rule(mod)
    dyn = {k: v for d in blocks(rule.body, "dynamic") for k, v in d.items()}
    for action, mode in (("lambda", "direct"), ("sqs", "sqs"), ("kinesis", "kinesis")):
        if action not in dyn:
            problems.append(f"{rule.address}: no {action} action for {mode} mode")
    if "kinesis" in dyn:
        content = blocks(dyn["kinesis"], "content")
        if not content or mod.resolve(attr(content[0], "partition_key")) != "${topic(3)}":
            problems.append(f"{rule.address}: the Kinesis partition key must be ${{topic(3)}} (the device)")
    errors = [s for e in blocks(rule.body, "error_action") for s in blocks(e, "sqs")]
    if not errors or attr(errors[0], "queue_url") != "${aws_sqs_queue.failures.url}":
        problems.append(f"{rule.address}: error_action must send to the failures queue")
    perm = mod.resources("aws_lambda_permission")
    if not any(attr(p.body, "principal") == "iot.amazonaws.com" and attr(p.body, "source_arn") == f"${{{rule.address}[0].arn}}" for p in perm):
        problems.append("direct mode: no aws_lambda_permission for iot.amazonaws.com with source_arn = the rule")
    esm = {e.name: e for e in mod.resources("aws_lambda_event_source_mapping")}
    for name in ("sqs", "kinesis"):
        e = esm.get(name)
        if e is None:
            problems.append(f"{name} mode: no aws_lambda_event_source_mapping.{name}")
        elif "ReportBatchItemFailures" not in as_list(attr(e.body, "function_response_types")):
            problems.append(f"{e.address}: must report batch item failures")
    k = esm.get("kinesis")
    if k is not None:
        if attr(k.body, "bisect_batch_on_function_error") is not True:
            problems.append(f"{k.address}: bisect_batch_on_function_error must be true")
        if not [d for c in blocks(k.body, "destination_config") for d in blocks(c, "on_failure")]:
            problems.append(f"{k.address}: needs an on-failure destination")
    ingest_q = mod.resource("aws_sqs_queue", "ingest")
    if ingest_q is None or "deadLetterTargetArn" not in str(attr(ingest_q.body, "redrive_policy")):
        problems.append("sqs mode: the ingest queue must redrive to a dead-letter queue")
    inv = mod.resources("aws_lambda_function_event_invoke_config")
    if not inv or attr(inv[0].body, "maximum_retry_attempts") is None or not [
        d for c in blocks(inv[0].body, "destination_config") for d in blocks(c, "on_failure")
    ]:
        problems.append("the function's async invoke config needs retries and an on-failure destination")
    for q in mod.resources("aws_sqs_queue"):
        if attr(q.body, "sqs_managed_sse_enabled") is not True and not attr(q.body, "kms_master_key_id"):
            problems.append(f"{q.address}: must be encrypted")
    for s in mod.resources("aws_kinesis_stream"):
        if attr(s.body, "encryption_type") != "KMS":
            problems.append(f"{s.address}: must be encrypted with KMS")
    for t in mod.resources("aws_sns_topic"):
        if not attr(t.body, "kms_master_key_id"):
            problems.append(f"{t.address}: must be encrypted")
    return problems


def check_alarms(infra: Infra) -> list[str]:
    mod = infra.pipeline
    alarms = mod.resources("aws_cloudwatch_metric_alarm")
    problems = []
    seen = {(attr(a.body, "namespace"), attr(a.body, "metric_name")): a for a in alarms}
    for ns, metric in (("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible")):
        if (ns, metric) not in seen:
            problems.append(f"no alarm on {ns} {metric}")
    for a in alarms:
        if not as_list(attr(a.body, "alarm_actions")):
            problems.append(f"{a.address}: alarm without action")
    if not mod.resources("aws_cloudwatch_dashboard"):
        problems.append("no CloudWatch dashboard")
    if not mod.resources("aws_sns_topic_subscription"):
        problems.append("no (optional) e-mail subscriptions")
    return problems


# --- layout, variables, skips ----------------------------------------------------


def check_layout(infra: Infra) -> list[str]:
    problems = []
    for rel, mod in infra.modules.items():
        if not (rel.startswith("modules/") or rel.startswith("envs/")):
            problems.append(f"{rel}: Terraform outside modules/ and envs/")
            continue
        for f in MODULE_FILES:
            if not (mod.path / f).is_file():
                problems.append(f"{rel}: missing {f}")
        versions = (mod.path / "versions.tf").read_text() if (mod.path / "versions.tf").is_file() else ""
        uses_aws = bool(mod.resources() or mod.data()) or rel.startswith("envs/")
        if "required_version" not in versions or (uses_aws and 'source  = "hashicorp/aws"' not in versions):
            problems.append(f"{rel}: versions.tf must pin required_version and the hashicorp/aws provider")
        inner = rel.startswith("modules/") and rel != "modules/stack"
        for name, var in mod.variables().items():
            if not attr(var.body, "type"):
                problems.append(f"{rel}: variable {name} has no type")
            if not str(attr(var.body, "description") or "").strip():
                problems.append(f"{rel}: variable {name} has no description")
            if inner and attr(var.body, "type") in ("${string}", "${number}") and not blocks(var.body, "validation"):
                problems.append(f"{rel}: variable {name} ({attr(var.body, 'type')}) has no validation")
        for name, out in mod.outputs().items():
            if not str(attr(out.body, "description") or "").strip():
                problems.append(f"{rel}: output {name} has no description")
    return problems


def check_checkov_skips(infra: Infra) -> list[str]:
    """Every checkov skip names a check and says why, inline."""
    problems = []
    for path in sorted(infra.root.rglob("*.tf")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" not in line:
                continue
            m = CHECKOV_SKIP.search(line)
            if not m or len(m.group(2).strip()) < 20:
                problems.append(f"{path.relative_to(infra.root)}:{n}: a skip needs `#checkov:skip=CKV_AWS_N:<reason of 20+ characters>`")
    return problems


def check_tfvars_example(infra: Infra) -> list[str]:
    import hcl2

    env = infra.module("envs/aws")
    example = env.path / "terraform.tfvars.example"
    if not example.is_file():
        return ["envs/aws: no terraform.tfvars.example"]
    with example.open() as fh:
        values = hcl2.load(fh)
    declared = env.variables()
    problems = [f"terraform.tfvars.example sets {k}, which envs/aws does not declare" for k in values if k not in declared and k not in ("__start_line__", "__end_line__")]
    required = [n for n, v in declared.items() if "default" not in v.body]
    problems += [f"envs/aws: variable {n} has no default and is not in terraform.tfvars.example" for n in required if n not in values]
    return problems


def check_envs_call_stack(infra: Infra) -> list[str]:
    """Both environments deploy the same stack module, and pass every variable they declare."""
    problems = []
    for env in ("envs/aws", "envs/localstack"):
        mod = infra.module(env)
        calls = mod.module_calls()
        if [attr(c.body, "source") for c in calls.values()] != ["../../modules/stack"]:
            problems.append(f"{env}: must call ../../modules/stack once")
            continue
        call = next(iter(calls.values()))
        text = call.text()
        stack_vars = infra.module("modules/stack").variables()
        for arg in call.body:
            if arg not in ("source", "__start_line__", "__end_line__") and arg not in stack_vars:
                problems.append(f"{env}: passes {arg}, which modules/stack does not declare")
        providers = (mod.path / "main.tf").read_text()
        for name in mod.variables():
            if f"var.{name}" not in text and f"var.{name}" not in providers:
                problems.append(f"{env}: variable {name} is declared but never used")
    return problems


ALL_CHECKS = (
    check_lambda_env,
    check_env_grants,
    check_lambda_function,
    check_rule_sql,
    check_basic_ingest,
    check_policies_are_documents,
    check_wildcards,
    check_function_permissions,
    check_device_policy,
    check_fleet,
    check_buckets,
    check_table,
    check_ingest_modes,
    check_alarms,
    check_layout,
    check_checkov_skips,
    check_tfvars_example,
    check_envs_call_stack,
)
