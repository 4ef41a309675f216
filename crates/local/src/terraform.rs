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

impl PipelineTerraform {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
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
        Ok(Self::from_text(&dir.display().to_string(), text))
    }

    pub fn from_text(dir: &str, text: String) -> Self {
        Self {
            dir: dir.to_string(),
            text,
        }
    }

    /// The body of `resource "<kind>" "<name>" { ... }` (braces balanced, strings skipped).
    fn resource(&self, kind: &str, name: &str) -> anyhow::Result<&str> {
        let header = format!("resource \"{kind}\" \"{name}\"");
        let start = self
            .text
            .find(&header)
            .with_context(|| format!("{}: no {header}", self.dir))?;
        let open = start
            + self.text[start..]
                .find('{')
                .with_context(|| format!("{}: {header} has no body", self.dir))?;
        let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
        for (i, c) in self.text[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '{' if !quoted => depth += 1,
                '}' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(&self.text[open + 1..open + i]);
                    }
                }
                _ => {}
            }
        }
        bail!("{}: {header}: unbalanced braces", self.dir)
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
