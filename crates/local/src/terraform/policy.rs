//! The device policy as the Terraform writes it (`infra/modules/fleet`): the
//! `data "aws_iam_policy_document" "device"` block, its `${local.*}`, `${var.*}` and `${data.*}`
//! references resolved from the module's `locals` and the values given for the rest, rendered
//! as the IAM JSON that `aws_iot_policy.device` hands IoT Core (IoT policy variables such as
//! `$${iot:Connection.Thing.ThingName}` kept for the gateway to fill in per connection).
//!
//! A reader of the HCL forms that block uses, not an HCL implementation: attributes and nested
//! blocks, string templates with references, lists, and `[for x in LIST : "template"]`. Any
//! other form, and any reference without a value, fails naming it, so the local stack never
//! enforces a policy that differs from the Terraform's without saying so.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

/// A body's items in order: `name = expression` and `name "label"... { body }`.
#[derive(Debug)]
enum Item<'a> {
    Attr(&'a str, &'a str),
    Block(&'a str, Vec<String>, &'a str),
}

/// The end (exclusive) of the bracketed run opening at `text[0]`, strings and comments skipped.
fn matching(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(text, i)?,
            b'#' => i = text[i..].find('\n').map_or(text.len(), |n| i + n),
            b'{' | b'[' | b'(' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The end (exclusive) of the quoted string starting at `text[start]`; `${...}` inside may
/// hold braces.
fn string_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'$' if bytes.get(i + 1) == Some(&b'{') => i += 1 + matching(&text[i + 1..])?,
            _ => i += 1,
        }
    }
    None
}

/// The end of an attribute's expression: the first newline (or comment) outside brackets and
/// strings.
fn expression_end(value: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(value, i)?,
            b'{' | b'[' | b'(' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'#' if depth == 0 => return Some(i),
            b'\n' if depth == 0 => return Some(i),
            _ => i += 1,
        }
    }
    (depth == 0).then_some(bytes.len())
}

fn items(body: &str) -> anyhow::Result<Vec<Item<'_>>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start();
        if rest.starts_with('#') || rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |n| &rest[n..]);
            continue;
        }
        if rest.is_empty() {
            return Ok(out);
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            bail!("unexpected {:?}", rest.chars().take(40).collect::<String>());
        }
        rest = rest[name_end..].trim_start();
        if let Some(value) = rest.strip_prefix('=') {
            // The expression runs to the end of the line where its brackets are closed.
            let value = value.trim_start();
            let end = expression_end(value).with_context(|| format!("{name}: unbalanced"))?;
            out.push(Item::Attr(name, value[..end].trim()));
            rest = &value[end..];
            continue;
        }
        let mut labels = Vec::new();
        while rest.starts_with('"') {
            let end = string_end(rest, 0).context("unclosed label")?;
            labels.push(rest[1..end - 1].to_string());
            rest = rest[end..].trim_start();
        }
        if !rest.starts_with('{') {
            bail!("{name}: neither an attribute nor a block");
        }
        let end = matching(rest).with_context(|| format!("{name}: unbalanced braces"))?;
        out.push(Item::Block(name, labels, &rest[1..end - 1]));
        rest = &rest[end..];
    }
}

/// A value: a string or a list of strings (all the device policy uses).
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Str(String),
    List(Vec<String>),
}

/// What references resolve to: the module's locals (evaluated on use) and the given values.
struct Scope<'a> {
    locals: BTreeMap<&'a str, &'a str>,
    given: &'a BTreeMap<String, String>,
    /// The variable of an enclosing `for`.
    bound: Option<(&'a str, String)>,
    depth: usize,
}

impl Scope<'_> {
    fn reference(&self, name: &str) -> anyhow::Result<Val> {
        if let Some((var, value)) = &self.bound {
            if name == *var {
                return Ok(Val::Str(value.clone()));
            }
        }
        if let Some(local) = name.strip_prefix("local.") {
            let expr = self
                .locals
                .get(local)
                .with_context(|| format!("no local {local:?}"))?;
            if self.depth > 16 {
                bail!("local.{local}: references nested too deep");
            }
            let inner = Scope {
                locals: self.locals.clone(),
                given: self.given,
                bound: None,
                depth: self.depth + 1,
            };
            return inner.eval(expr);
        }
        match self.given.get(name) {
            Some(v) => Ok(Val::Str(v.clone())),
            None => bail!("{name}: no value for it (give one for the local stack)"),
        }
    }

    fn eval(&self, expr: &str) -> anyhow::Result<Val> {
        let expr = expr.trim();
        if expr.starts_with('"') {
            return self.template(expr).map(Val::Str);
        }
        if let Some(inner) = expr.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
            let inner = inner.trim();
            if let Some(for_expr) = inner.strip_prefix("for ") {
                return self.for_list(for_expr);
            }
            let mut out = Vec::new();
            for element in split_top_level(inner) {
                match self.eval(element)? {
                    Val::Str(s) => out.push(s),
                    Val::List(_) => bail!("{element}: a list inside a list"),
                }
            }
            return Ok(Val::List(out));
        }
        if is_reference(expr) {
            return self.reference(expr);
        }
        bail!("{expr:?}: not a form the local stack reads (strings, lists, references, for)")
    }

    /// `t in LIST : "template"`.
    fn for_list(&self, for_expr: &str) -> anyhow::Result<Val> {
        let (var, rest) = for_expr.split_once(" in ").context("for without in")?;
        let (list, template) = rest.split_once(':').context("for without :")?;
        let Val::List(items) = self.eval(list)? else {
            bail!("for over {list:?}, which is not a list");
        };
        let mut out = Vec::new();
        for item in items {
            let scope = Scope {
                locals: self.locals.clone(),
                given: self.given,
                bound: Some((var.trim(), item)),
                depth: self.depth,
            };
            match scope.eval(template)? {
                Val::Str(s) => out.push(s),
                Val::List(_) => bail!("for yielding lists"),
            }
        }
        Ok(Val::List(out))
    }

    /// A quoted template: escapes undone, `$${` a literal `${`, `${ref}` resolved.
    fn template(&self, quoted: &str) -> anyhow::Result<String> {
        let inner = &quoted[1..quoted.len() - 1];
        let mut out = String::new();
        let mut i = 0;
        let bytes = inner.as_bytes();
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    let c = inner[i + 1..].chars().next().context("dangling \\")?;
                    out.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        c => c,
                    });
                    i += 1 + c.len_utf8();
                }
                b'$' if inner[i..].starts_with("$${") => {
                    out.push_str("${");
                    i += 3;
                }
                b'$' if inner[i..].starts_with("${") => {
                    let end = matching(&inner[i + 1..]).context("unclosed ${")?;
                    let name = inner[i + 2..i + end].trim();
                    match self.reference(name)? {
                        Val::Str(s) => out.push_str(&s),
                        Val::List(_) => bail!("${{{name}}}: a list inside a string"),
                    }
                    i += 1 + end;
                }
                _ => {
                    let c = inner[i..].chars().next().context("text")?;
                    out.push(c);
                    i += c.len_utf8();
                }
            }
        }
        Ok(out)
    }
}

fn is_reference(expr: &str) -> bool {
    !expr.is_empty()
        && expr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Commas at bracket depth 0, outside strings and comments.
fn split_top_level(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    let bytes = inner.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(inner, i).unwrap_or(bytes.len()),
            b'[' | b'{' | b'(' => i += matching(&inner[i..]).unwrap_or(bytes.len() - i),
            b'#' => i = inner[i..].find('\n').map_or(bytes.len(), |n| i + n),
            b',' => {
                parts.push(&inner[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(|p| strip_comments(p).trim())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `text` without its whole-line `#` comments.
fn strip_comments(text: &str) -> &str {
    let mut t = text.trim();
    while t.starts_with('#') {
        t = t.find('\n').map_or("", |n| t[n..].trim());
    }
    t
}

/// The device policy of the Terraform module in `dir`, as IoT Core receives it (IAM JSON).
/// `given` holds a value for each `var.*` and `data.*` reference the policy makes (e.g.
/// `var.basic_ingest_rule_name`, `data.aws_region.current.region`).
pub fn device_policy_json(dir: &Path, given: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let text = super::module_text(dir)?;
    policy_json(&text, given).with_context(|| format!("{}: the device policy", dir.display()))
}

fn policy_json(text: &str, given: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let top = items(text)?;
    let mut locals = BTreeMap::new();
    let mut document = None;
    for item in &top {
        match item {
            Item::Block("locals", _, body) => {
                for local in items(body)? {
                    if let Item::Attr(name, expr) = local {
                        locals.insert(name, expr);
                    }
                }
            }
            Item::Block("data", labels, body)
                if labels
                    .iter()
                    .map(String::as_str)
                    .eq(["aws_iam_policy_document", "device"]) =>
            {
                document = Some(*body);
            }
            _ => {}
        }
    }
    let document = document.context("no data \"aws_iam_policy_document\" \"device\"")?;
    let scope = Scope {
        locals,
        given,
        bound: None,
        depth: 0,
    };
    let list = |expr: &str| -> anyhow::Result<Vec<String>> {
        match scope.eval(expr)? {
            Val::List(l) => Ok(l),
            Val::Str(s) => Ok(vec![s]),
        }
    };
    let mut statements = Vec::new();
    for item in items(document)? {
        let Item::Block("statement", _, body) = item else {
            bail!("{item:?}: only statement blocks are read");
        };
        let mut statement = Map::new();
        statement.insert("Effect".into(), json!("Allow"));
        let mut conditions: Map<String, Value> = Map::new();
        for part in items(body)? {
            match part {
                Item::Attr("sid", e) => {
                    statement.insert("Sid".into(), json!(scope.template(e)?));
                }
                Item::Attr("effect", e) => {
                    statement.insert("Effect".into(), json!(scope.template(e)?));
                }
                Item::Attr("actions", e) => {
                    statement.insert("Action".into(), json!(list(e)?));
                }
                Item::Attr("resources", e) => {
                    statement.insert("Resource".into(), json!(list(e)?));
                }
                Item::Block("condition", _, cond) => {
                    let mut fields = BTreeMap::new();
                    for attr in items(cond)? {
                        let Item::Attr(name, e) = attr else {
                            bail!("condition: only attributes");
                        };
                        fields.insert(name, scope.eval(e)?);
                    }
                    let (Some(Val::Str(test)), Some(Val::Str(variable)), Some(values)) = (
                        fields.get("test"),
                        fields.get("variable"),
                        fields.get("values"),
                    ) else {
                        bail!("condition needs test, variable and values");
                    };
                    let values = match values {
                        Val::List(l) => l.clone(),
                        Val::Str(s) => vec![s.clone()],
                    };
                    conditions
                        .entry(test.clone())
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .context("condition")?
                        .insert(variable.clone(), json!(values));
                }
                other => bail!("statement: {other:?} is not read by the local stack"),
            }
        }
        if !conditions.is_empty() {
            statement.insert("Condition".into(), Value::Object(conditions));
        }
        statements.push(Value::Object(statement));
    }
    Ok(json!({ "Version": "2012-10-17", "Statement": statements }).to_string())
}

/// The values the local stack gives the fleet module's policy: IoT's partition, a local region
/// and account (the gateway compares resources after them), and the topic rule's name.
pub fn local_values(basic_ingest_rule: &str) -> BTreeMap<String, String> {
    [
        ("data.aws_partition.current.partition", "aws"),
        ("data.aws_region.current.region", "us-east-1"),
        (
            "data.aws_caller_identity.current.account_id",
            "000000000000",
        ),
        ("var.basic_ingest_rule_name", basic_ingest_rule),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::DeviceId;
    use vigil_edge::gateway::policy::{probe_names, Action};
    use vigil_edge::gateway::{DevicePolicy, PolicyDocument};

    fn fleet() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/modules/fleet")
    }

    /// The Terraform's policy, read and enforced, decides every probe as the built-in copy
    /// `vigil edge` uses does (with Basic Ingest to the same rule).
    #[test]
    fn the_terraforms_device_policy_agrees_with_the_builtin() {
        let json = device_policy_json(&fleet(), &local_values("vigil_ingest")).unwrap();
        let terraform = PolicyDocument::from_json(&json).unwrap();
        assert_eq!(terraform.statements.len(), 5, "{json}");
        let builtin = PolicyDocument::builtin(Some("vigil_ingest"));
        let thing = DeviceId::new("rig-001").unwrap();
        let (tf, bi) = (
            DevicePolicy::for_thing(&terraform, &thing),
            DevicePolicy::for_thing(&builtin, &thing),
        );
        let mut allowed = 0;
        for name in probe_names(&thing, "vigil_ingest") {
            for action in [
                Action::Connect,
                Action::Publish,
                Action::Subscribe,
                Action::Receive,
            ] {
                assert_eq!(
                    tf.allows(action, &name),
                    bi.allows(action, &name),
                    "{action:?} {name}"
                );
                allowed += usize::from(tf.allows(action, &name));
            }
        }
        // Connect + 3 publishes + 7 subscriptions + 7 receives.
        assert_eq!(allowed, 18);
        assert!(tf.may_publish("$aws/rules/vigil_ingest/dt/vigil/rig-001/telemetry"));
        assert!(!tf.may_publish("$aws/rules/vigil_ingest/dt/vigil/rig-002/telemetry"));
    }

    #[test]
    fn forms_and_references_it_cannot_resolve_fail_naming_them() {
        let given = local_values("r");
        let unknown = r#"
            locals { t = "${var.other}" }
            data "aws_iam_policy_document" "device" {
              statement {
                actions   = ["iot:Publish"]
                resources = ["${local.t}"]
              }
            }"#;
        let e = format!("{:#}", policy_json(unknown, &given).unwrap_err());
        assert!(e.contains("var.other"), "{e}");
        let function = r#"
            data "aws_iam_policy_document" "device" {
              statement {
                actions   = ["iot:Publish"]
                resources = concat(["a"], ["b"])
              }
            }"#;
        assert!(policy_json(function, &given).is_err());
        let deny = r##"
            locals {
              # a comment, and a "#" inside a string
              topics = ["a/#", "b"]
            }
            data "aws_iam_policy_document" "device" {
              statement {
                effect    = "Deny"
                actions   = ["iot:Subscribe"]
                resources = [for t in local.topics : "arn:aws:iot:r:1:topicfilter/${t}"]
              }
            }"##;
        let doc: Value = serde_json::from_str(&policy_json(deny, &given).unwrap()).unwrap();
        assert_eq!(doc["Statement"][0]["Effect"], "Deny");
        assert_eq!(
            doc["Statement"][0]["Resource"],
            json!([
                "arn:aws:iot:r:1:topicfilter/a/#",
                "arn:aws:iot:r:1:topicfilter/b"
            ])
        );
    }
}
