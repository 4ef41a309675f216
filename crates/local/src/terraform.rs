//! What the local stand-in takes from the Terraform in `infra/modules/pipeline`, so that it runs
//! what is deployed rather than a copy: the topic rule's SQL and the names of the function's
//! environment variables. A small reader of the few attributes needed (HCL string literals and
//! one map block), not an HCL parser: it fails, naming the file, when the shape it expects is
//! not there, rather than guessing.

use std::path::Path;

/// The device policy, from `infra/modules/fleet`.
pub mod policy;

use anyhow::{bail, Context};

/// The pipeline module's Terraform, all `*.tf` files of the directory concatenated.
#[derive(Debug, Clone)]
pub struct PipelineTerraform {
    dir: String,
    text: String,
}

/// Every `.tf` file of a module directory, in name order, as one text.
pub fn module_text(dir: &Path) -> anyhow::Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("Terraform module {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    let mut text = String::new();
    for f in files {
        text.push_str(&std::fs::read_to_string(&f).with_context(|| f.display().to_string())?);
        text.push('\n');
    }
    Ok(text)
}

impl PipelineTerraform {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        Ok(Self::from_text(
            &dir.display().to_string(),
            module_text(dir)?,
        ))
    }

    pub fn from_text(dir: &str, text: String) -> Self {
        Self {
            dir: dir.to_string(),
            text,
        }
    }

    /// The body of `resource "<kind>" "<name>" { ... }` (braces balanced, strings skipped).
    fn resource(&self, kind: &str, name: &str) -> anyhow::Result<&str> {
        self.block(&format!("resource \"{kind}\" \"{name}\""))
    }

    /// The body of the first block whose header is `header`.
    fn block(&self, header: &str) -> anyhow::Result<&str> {
        let start = self
            .text
            .find(header)
            .with_context(|| format!("{}: no {header}", self.dir))?;
        block_body(&self.text[start..])
            .with_context(|| format!("{}: {header}: no balanced body", self.dir))
    }

    /// The ingest topic rule's SQL.
    pub fn topic_rule_sql(&self) -> anyhow::Result<String> {
        let body = self.resource("aws_iot_topic_rule", "ingest")?;
        let line = body
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("sql ") || l.starts_with("sql="))
            .with_context(|| format!("{}: aws_iot_topic_rule.ingest has no sql", self.dir))?;
        let value = line.split_once('=').map(|(_, v)| v.trim()).unwrap_or("");
        string_literal(value).with_context(|| {
            format!(
                "{}: aws_iot_topic_rule.ingest sql is not one string literal: {value}",
                self.dir
            )
        })
    }

    /// The names in the ingest function's `environment { variables = { ... } }`.
    pub fn function_environment(&self) -> anyhow::Result<Vec<String>> {
        let body = self.resource("aws_lambda_function", "ingest")?;
        let start = body.find("variables").with_context(|| {
            format!(
                "{}: aws_lambda_function.ingest has no environment variables",
                self.dir
            )
        })?;
        let block = &body[start..];
        let open = block.find('{').context("variables block")?;
        let close = block
            .find("\n    }")
            .or_else(|| block.find('}'))
            .context("variables block end")?;
        let names: Vec<String> = block[open + 1..close]
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        if names.is_empty() {
            bail!(
                "{}: aws_lambda_function.ingest: no environment variables read",
                self.dir
            );
        }
        Ok(names)
    }
}

/// How a stack's resources are named: the Terraform's `var.name` (the env's `name`), and the
/// account and region its data sources would report (moto: `123456789012`, `us-east-1`).
#[derive(Clone, Debug)]
pub struct NameInputs {
    pub name: String,
    pub account_id: String,
    pub region: String,
}

/// The names the pipeline module gives its resources, evaluated from its HCL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceNames {
    pub table: String,
    pub alerts_topic: String,
    pub rejects_queue: String,
    pub failures_queue: String,
    pub ingest_queue: String,
    pub ingest_dlq: String,
    pub ingest_stream: String,
    pub archive_bucket: String,
    pub models_bucket: String,
    pub function: String,
    pub rule: String,
}

/// The SQS mode's event source mapping and queue, as the Terraform sets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsSource {
    pub batch_size: usize,
    pub batching_window: std::time::Duration,
    pub report_batch_item_failures: bool,
    /// The ingest queue's redrive policy: receives before the dead-letter queue.
    pub max_receive_count: u32,
}

/// The Kinesis mode's event source mapping, as the Terraform sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisSource {
    pub batch_size: usize,
    pub batching_window: std::time::Duration,
    pub report_batch_item_failures: bool,
    pub bisect_on_error: bool,
    pub max_retries: u32,
    /// `TRIM_HORIZON` or `LATEST`.
    pub starting_position: String,
    /// The rule action's partition key template (`${topic(3)}`).
    pub partition_key: String,
}

impl PipelineTerraform {
    /// The expression of `attr` at the top level of `body` (not inside a nested block).
    fn attribute<'a>(&self, what: &str, body: &'a str, attr: &str) -> anyhow::Result<&'a str> {
        let mut depth = 0i32;
        for line in body.lines() {
            let t = line.trim();
            if depth == 0 {
                if let Some(rest) = t.strip_prefix(attr) {
                    if let Some(value) = rest.trim_start().strip_prefix('=') {
                        return Ok(value.trim());
                    }
                }
            }
            for c in strip_strings(t).chars() {
                match c {
                    '{' | '[' | '(' => depth += 1,
                    '}' | ']' | ')' => depth -= 1,
                    _ => {}
                }
            }
        }
        bail!("{}: {what} has no {attr}", self.dir)
    }

    /// `local.<name>`'s expression, from any `locals` block.
    fn local(&self, name: &str) -> anyhow::Result<&str> {
        let mut rest = self.text.as_str();
        while let Some(at) = rest.find("\nlocals {") {
            let body = block_body(&rest[at..])
                .with_context(|| format!("{}: a locals block is not balanced", self.dir))?;
            if let Ok(v) = self.attribute("locals", body, name) {
                return Ok(v);
            }
            rest = &rest[at + 1..];
        }
        bail!("{}: no local.{name}", self.dir)
    }

    /// A variable's `default` expression.
    fn variable_default(&self, name: &str) -> anyhow::Result<&str> {
        let body = self.block(&format!("variable \"{name}\""))?;
        self.attribute(&format!("variable {name}"), body, "default")
    }

    /// `name`'s default in this directory's variables (an env's `name`, the stack prefix).
    pub fn name_default(&self) -> anyhow::Result<String> {
        let value = self.variable_default("name")?;
        string_literal(value).with_context(|| {
            format!(
                "{}: variable name's default is not a string literal: {value}",
                self.dir
            )
        })
    }

    /// `expr` itself, or the default of the variable it names (`var.x`).
    fn literal<'e>(&'e self, expr: &'e str) -> anyhow::Result<&'e str> {
        match expr.strip_prefix("var.") {
            Some(var) => self.variable_default(var),
            None => Ok(expr),
        }
    }

    /// A whole number: a literal, or a variable with a literal default.
    fn number(&self, what: &str, expr: &str) -> anyhow::Result<u64> {
        self.literal(expr)?.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: {what} = {expr}: not a whole number the stand-in can read",
                self.dir
            )
        })
    }

    fn boolean(&self, what: &str, expr: &str) -> anyhow::Result<bool> {
        match self.literal(expr)? {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => bail!(
                "{}: {what} = {expr}: not a boolean the stand-in can read",
                self.dir
            ),
        }
    }

    /// A name template: a string whose interpolations are `var.name`, `local.<x>` (itself a
    /// template), `local.account_id` / `local.region` (the data sources) and
    /// `replace(var.name, "<a>", "<b>")`.
    fn template(&self, what: &str, expr: &str, inputs: &NameInputs) -> anyhow::Result<String> {
        let bad = |why: &str| anyhow::anyhow!("{}: {what} = {expr}: {why}", self.dir);
        let inner = expr
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or_else(|| bad("not a string template"))?;
        let mut out = String::new();
        let mut rest = inner;
        while let Some(at) = rest.find("${") {
            if rest[..at].ends_with('$') {
                out.push_str(&rest[..at]);
                out.push('{');
                rest = &rest[at + 2..];
                continue;
            }
            out.push_str(&rest[..at]);
            let close = rest[at..].find('}').ok_or_else(|| bad("unclosed ${"))? + at;
            let reference = rest[at + 2..close].trim();
            out.push_str(&self.reference(what, reference, inputs)?);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        if out.contains('"') || out.contains('\\') {
            return Err(bad("escapes in a name"));
        }
        Ok(out)
    }

    fn reference(
        &self,
        what: &str,
        reference: &str,
        inputs: &NameInputs,
    ) -> anyhow::Result<String> {
        match reference {
            "var.name" => return Ok(inputs.name.clone()),
            "local.account_id" => return Ok(inputs.account_id.clone()),
            "local.region" => return Ok(inputs.region.clone()),
            _ => {}
        }
        if let Some(local) = reference.strip_prefix("local.") {
            let expr = self.local(local)?;
            return self.template(&format!("local.{local}"), expr, inputs);
        }
        if let Some(args) = reference
            .strip_prefix("replace(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let args: Vec<&str> = args.split(',').map(str::trim).collect();
            if let [subject, from, to] = args[..] {
                let subject = self.reference(what, subject, inputs)?;
                let (from, to) = (string_literal(from), string_literal(to));
                if let (Some(from), Some(to)) = (from, to) {
                    return Ok(subject.replace(&from, &to));
                }
            }
        }
        bail!(
            "{}: {what}: ${{{reference}}} is not a form the stand-in evaluates",
            self.dir
        )
    }

    fn resource_name(
        &self,
        kind: &str,
        name: &str,
        attr: &str,
        inputs: &NameInputs,
    ) -> anyhow::Result<String> {
        let what = format!("{kind}.{name}");
        let body = self.resource(kind, name)?;
        let expr = self.attribute(&what, body, attr)?;
        self.template(&format!("{what} {attr}"), expr, inputs)
    }

    /// Every resource name the stand-in creates or calls, as the Terraform forms it.
    pub fn resource_names(&self, inputs: &NameInputs) -> anyhow::Result<ResourceNames> {
        let local = |name: &str| self.template(&format!("local.{name}"), self.local(name)?, inputs);
        Ok(ResourceNames {
            table: self.resource_name("aws_dynamodb_table", "state", "name", inputs)?,
            alerts_topic: self.resource_name("aws_sns_topic", "alerts", "name", inputs)?,
            rejects_queue: self.resource_name("aws_sqs_queue", "rejects", "name", inputs)?,
            failures_queue: self.resource_name("aws_sqs_queue", "failures", "name", inputs)?,
            ingest_queue: self.resource_name("aws_sqs_queue", "ingest", "name", inputs)?,
            ingest_dlq: self.resource_name("aws_sqs_queue", "ingest_dlq", "name", inputs)?,
            ingest_stream: self.resource_name("aws_kinesis_stream", "ingest", "name", inputs)?,
            archive_bucket: self.resource_name("aws_s3_bucket", "archive", "bucket", inputs)?,
            models_bucket: self.resource_name("aws_s3_bucket", "models", "bucket", inputs)?,
            function: local("function_name")?,
            rule: local("rule_name")?,
        })
    }

    /// The function's `timeout`.
    pub fn function_timeout(&self) -> anyhow::Result<std::time::Duration> {
        let what = "aws_lambda_function.ingest";
        let body = self.resource("aws_lambda_function", "ingest")?;
        let seconds = self.number(what, self.attribute(what, body, "timeout")?)?;
        Ok(std::time::Duration::from_secs(seconds))
    }

    /// Retries of a failed asynchronous invocation (the event invoke config's
    /// `maximum_retry_attempts`).
    pub fn async_retries(&self) -> anyhow::Result<u32> {
        let what = "aws_lambda_function_event_invoke_config.ingest";
        let body = self.resource("aws_lambda_function_event_invoke_config", "ingest")?;
        Ok(self.number(what, self.attribute(what, body, "maximum_retry_attempts")?)? as u32)
    }

    /// The rule's action block for a mode (`sqs`, `kinesis`), checked to deliver to the
    /// ingest queue or stream.
    fn rule_action(&self, mode: &str, target: &str) -> anyhow::Result<&str> {
        let rule = self.resource("aws_iot_topic_rule", "ingest")?;
        let header = format!("dynamic \"{mode}\"");
        let at = rule
            .find(&header)
            .with_context(|| format!("{}: aws_iot_topic_rule.ingest has no {header}", self.dir))?;
        let body = block_body(&rule[at..])
            .and_then(|b| b.find("content").and_then(|c| block_body(&b[c..])))
            .with_context(|| format!("{}: {header}: no balanced content block", self.dir))?;
        if !body.contains(target) {
            bail!(
                "{}: aws_iot_topic_rule.ingest {header} does not deliver to {target}",
                self.dir
            );
        }
        Ok(body)
    }

    fn mapping(&self, name: &str) -> anyhow::Result<(&str, String)> {
        let body = self.resource("aws_lambda_event_source_mapping", name)?;
        Ok((body, format!("aws_lambda_event_source_mapping.{name}")))
    }

    fn reports_item_failures(&self, what: &str, body: &str) -> anyhow::Result<bool> {
        let types = self.attribute(what, body, "function_response_types")?;
        Ok(types.contains("\"ReportBatchItemFailures\""))
    }

    /// The SQS mode as the Terraform wires it.
    pub fn sqs_source(&self) -> anyhow::Result<SqsSource> {
        self.rule_action("sqs", "aws_sqs_queue.ingest[0].url")?;
        let (body, what) = self.mapping("sqs")?;
        if !self
            .attribute(&what, body, "event_source_arn")?
            .starts_with("aws_sqs_queue.ingest[0].arn")
        {
            bail!("{}: {what} does not read the ingest queue", self.dir);
        }
        let queue = self.resource("aws_sqs_queue", "ingest")?;
        let dlq = queue
            .find("deadLetterTargetArn")
            .map(|at| &queue[at..])
            .filter(|s| {
                s.lines()
                    .next()
                    .is_some_and(|l| l.contains("aws_sqs_queue.ingest_dlq"))
            })
            .with_context(|| {
                format!(
                    "{}: aws_sqs_queue.ingest has no redrive policy to ingest_dlq",
                    self.dir
                )
            })?;
        let receives = dlq
            .lines()
            .find_map(|l| l.trim().strip_prefix("maxReceiveCount"))
            .and_then(|l| l.trim().strip_prefix('='))
            .map(str::trim)
            .with_context(|| format!("{}: aws_sqs_queue.ingest: no maxReceiveCount", self.dir))?;
        Ok(SqsSource {
            batch_size: self.number(&what, self.attribute(&what, body, "batch_size")?)? as usize,
            batching_window: std::time::Duration::from_secs(self.number(
                &what,
                self.attribute(&what, body, "maximum_batching_window_in_seconds")?,
            )?),
            report_batch_item_failures: self.reports_item_failures(&what, body)?,
            max_receive_count: self.number("maxReceiveCount", receives)? as u32,
        })
    }

    /// The Kinesis mode as the Terraform wires it.
    pub fn kinesis_source(&self) -> anyhow::Result<KinesisSource> {
        let action = self.rule_action("kinesis", "aws_kinesis_stream.ingest[0].name")?;
        let key = self.attribute("the rule's kinesis action", action, "partition_key")?;
        let partition_key = string_literal(key).with_context(|| {
            format!(
                "{}: the rule's kinesis partition_key is not a literal: {key}",
                self.dir
            )
        })?;
        let (body, what) = self.mapping("kinesis")?;
        if !self
            .attribute(&what, body, "event_source_arn")?
            .starts_with("aws_kinesis_stream.ingest[0].arn")
        {
            bail!("{}: {what} does not read the ingest stream", self.dir);
        }
        let position = self.attribute(&what, body, "starting_position")?;
        let starting_position = string_literal(position)
            .filter(|p| p == "TRIM_HORIZON" || p == "LATEST")
            .with_context(|| format!("{}: {what} starting_position {position}", self.dir))?;
        Ok(KinesisSource {
            batch_size: self.number(&what, self.attribute(&what, body, "batch_size")?)? as usize,
            batching_window: std::time::Duration::from_secs(self.number(
                &what,
                self.attribute(&what, body, "maximum_batching_window_in_seconds")?,
            )?),
            report_batch_item_failures: self.reports_item_failures(&what, body)?,
            bisect_on_error: self.boolean(
                &what,
                self.attribute(&what, body, "bisect_batch_on_function_error")?,
            )?,
            max_retries: self.number(
                &what,
                self.attribute(&what, body, "maximum_retry_attempts")?,
            )? as u32,
            starting_position,
            partition_key,
        })
    }
}

/// A line with its quoted strings removed (for counting brackets).
fn strip_strings(line: &str) -> String {
    let (mut out, mut quoted, mut escaped) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

/// The body between the first `{` of `text` and its matching `}` (strings skipped).
fn block_body(text: &str) -> Option<&str> {
    let open = text.find('{')?;
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for (i, c) in text[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// An HCL quoted string without interpolation: `\"`, `\\` and `$${` (a literal `${`) undone.
fn string_literal(value: &str) -> Option<String> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '$' if chars.peek() == Some(&'{') => return None, // interpolation: not a literal
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                out.push('$');
            }
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_pipeline() -> PipelineTerraform {
        PipelineTerraform::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/modules/pipeline"),
        )
        .unwrap()
    }

    #[test]
    fn the_repositorys_rule_and_function_environment_are_read() {
        let tf = repo_pipeline();
        let sql = tf.topic_rule_sql().unwrap();
        assert!(
            sql.starts_with("SELECT ") && sql.contains("FROM 'dt/vigil/+/telemetry'"),
            "{sql}"
        );
        crate::rule::TopicRule::parse("ingest", &sql)
            .expect("the deployed rule is one the stand-in evaluates");
        let env = tf.function_environment().unwrap();
        for name in [
            "VIGIL_TABLE_NAME",
            "VIGIL_IOT_DATA_ENDPOINT",
            "ORT_DYLIB_PATH",
        ] {
            assert!(env.iter().any(|n| n == name), "{name} in {env:?}");
        }
    }

    fn inputs(name: &str) -> NameInputs {
        NameInputs {
            name: name.into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn resource_names_follow_the_terraform() {
        let names = repo_pipeline().resource_names(&inputs("vl-7-0")).unwrap();
        assert_eq!(names.table, "vl-7-0-state");
        assert_eq!(names.alerts_topic, "vl-7-0-alerts");
        assert_eq!(names.rejects_queue, "vl-7-0-rejects");
        assert_eq!(names.failures_queue, "vl-7-0-failures");
        assert_eq!(names.ingest_queue, "vl-7-0-ingest");
        assert_eq!(names.ingest_dlq, "vl-7-0-ingest-dlq");
        assert_eq!(names.ingest_stream, "vl-7-0-ingest");
        assert_eq!(
            names.archive_bucket,
            "vl-7-0-archive-123456789012-us-east-1"
        );
        assert_eq!(names.models_bucket, "vl-7-0-models-123456789012-us-east-1");
        assert_eq!(names.function, "vl-7-0-ingest");
        assert_eq!(names.rule, "vl_7_0_ingest");
    }

    #[test]
    fn the_batched_modes_are_read_as_wired() {
        let tf = repo_pipeline();
        let sqs = tf.sqs_source().unwrap();
        assert!(sqs.report_batch_item_failures, "{sqs:?}");
        assert!(sqs.batch_size >= 1 && sqs.max_receive_count >= 1, "{sqs:?}");
        let kinesis = tf.kinesis_source().unwrap();
        assert_eq!(kinesis.partition_key, "${topic(3)}");
        assert!(kinesis.bisect_on_error && kinesis.report_batch_item_failures);
        assert_eq!(kinesis.starting_position, "TRIM_HORIZON");
        assert_eq!(
            tf.function_timeout().unwrap(),
            std::time::Duration::from_secs(30)
        );
        // Lambda's default for asynchronous invocations.
        assert_eq!(tf.async_retries().unwrap(), 2);
        let env = PipelineTerraform::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/envs/localstack"),
        )
        .unwrap();
        assert_eq!(env.name_default().unwrap(), "vigil");
    }

    #[test]
    fn unknown_shapes_fail_naming_the_file() {
        let tf = PipelineTerraform::from_text(
            "mod",
            r#"
resource "aws_dynamodb_table" "state" {
  name = "${var.name}-${random_id.x.hex}"
}
resource "aws_sns_topic" "alerts" {
  name = var.topic
}
locals {
  function_name = "${var.name}-ingest"
}
"#
            .into(),
        );
        let e = tf
            .resource_name("aws_dynamodb_table", "state", "name", &inputs("a"))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("mod: ") && e.to_string().contains("random_id.x.hex"),
            "{e}"
        );
        let e = tf
            .resource_name("aws_sns_topic", "alerts", "name", &inputs("a"))
            .unwrap_err();
        assert!(e.to_string().contains("not a string template"), "{e}");
        assert_eq!(
            tf.template("t", tf.local("function_name").unwrap(), &inputs("a"))
                .unwrap(),
            "a-ingest"
        );
        let e = tf.sqs_source().unwrap_err();
        assert!(e.to_string().starts_with("mod: "), "{e}");
    }

    #[test]
    fn string_literals_only() {
        assert_eq!(
            string_literal(r#""a \"b\" $${x}""#).as_deref(),
            Some(r#"a "b" ${x}"#)
        );
        assert_eq!(string_literal(r#""${var.sql}""#), None);
        assert_eq!(string_literal("var.sql"), None);
    }
}
