//! An AWS IoT topic rule's SQL, in the forms Vigil's Terraform uses, evaluated on one message the
//! way IoT Core's rules engine does:
//! - `SELECT` items: `*` (a JSON object payload's fields), `encode(*, 'base64')` (the raw
//!   payload), `topic()` / `topic(n)` (the whole topic / its n-th level, from 1),
//!   `timestamp()` (milliseconds since the epoch), each `AS name` (required except for `*`);
//! - `FROM 'filter'` with MQTT wildcards `+` and `#`;
//! - Basic Ingest: a message published to `$aws/rules/<rule name>/<topic>` goes to that rule
//!   only (whatever its filter), and the rule sees `<topic>`.
//!
//! Anything else (WHERE, other functions, nested fields) is refused when the rule is read, so a
//! rule this stand-in cannot honour fails at start instead of behaving differently from AWS.

use base64::Engine;
use serde_json::{Map, Value};

/// Why a rule cannot be read or applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("topic rule SQL {sql:?}: {why}")]
    Unsupported { sql: String, why: String },
    #[error("SELECT * on a payload that is not a JSON object (topic {0:?})")]
    NotAnObject(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Star,
    EncodeBase64(String),
    Topic(Option<usize>, String),
    Timestamp(String),
}

/// One topic rule: its name (for Basic Ingest) and its parsed SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRule {
    pub name: String,
    items: Vec<Item>,
    filter: String,
}

impl TopicRule {
    pub fn parse(name: &str, sql: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::Unsupported {
            sql: sql.to_string(),
            why: why.to_string(),
        };
        let text = sql.trim();
        let upper = text.to_ascii_uppercase();
        if !upper.starts_with("SELECT ") {
            return Err(bad("does not start with SELECT"));
        }
        let from = upper.rfind(" FROM ").ok_or_else(|| bad("no FROM"))?;
        let select = &text["SELECT ".len()..from];
        let source = text[from + " FROM ".len()..].trim();
        let filter = source
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .filter(|f| !f.is_empty() && !f.contains('\''))
            .ok_or_else(|| bad("FROM must be one quoted topic filter (no WHERE)"))?;
        let items = split_items(select)
            .iter()
            .map(|item| parse_item(item).map_err(|why| bad(&why)))
            .collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            return Err(bad("nothing selected"));
        }
        Ok(Self {
            name: name.to_string(),
            items,
            filter: filter.to_string(),
        })
    }

    /// The FROM filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The Basic Ingest topic prefix of this rule.
    pub fn basic_ingest_prefix(&self) -> String {
        format!("$aws/rules/{}/", self.name)
    }

    /// The topic the rule sees for a message published on `published`, or `None` when the rule
    /// does not apply to it.
    pub fn applies_to(&self, published: &str) -> Option<String> {
        if let Some(rest) = published.strip_prefix("$aws/rules/") {
            let (rule, topic) = rest.split_once('/')?;
            // Basic Ingest names the rule; rule names are case-insensitive in IoT.
            return (rule.eq_ignore_ascii_case(&self.name) && !topic.is_empty())
                .then(|| topic.to_string());
        }
        topic_matches(&self.filter, published).then(|| published.to_string())
    }

    /// The rule's output for one message on `topic` (as [`Self::applies_to`] gave it).
    pub fn evaluate(&self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Value, RuleError> {
        let mut out = Map::new();
        for item in &self.items {
            match item {
                Item::Star => match serde_json::from_slice::<Value>(payload) {
                    Ok(Value::Object(fields)) => out.extend(fields),
                    _ => return Err(RuleError::NotAnObject(topic.to_string())),
                },
                Item::EncodeBase64(alias) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
                    out.insert(alias.clone(), Value::String(encoded));
                }
                Item::Topic(level, alias) => {
                    let value = match level {
                        None => Value::String(topic.to_string()),
                        // IoT gives nothing (the key is left out) for a level beyond the topic.
                        Some(n) => match topic.split('/').nth(n - 1) {
                            Some(part) => Value::String(part.to_string()),
                            None => continue,
                        },
                    };
                    out.insert(alias.clone(), value);
                }
                Item::Timestamp(alias) => {
                    out.insert(alias.clone(), Value::from(now_ms));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// SELECT items split on the commas outside parentheses and quotes.
fn split_items(select: &str) -> Vec<String> {
    let (mut items, mut current, mut depth, mut quoted) = (vec![], String::new(), 0u32, false);
    for c in select.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_string());
    }
    items
}

fn parse_item(item: &str) -> Result<Item, String> {
    if item == "*" {
        return Ok(Item::Star);
    }
    let upper = item.to_ascii_uppercase();
    let at = upper
        .rfind(" AS ")
        .ok_or_else(|| format!("{item:?} needs AS <name>"))?;
    let alias = item[at + 4..].trim();
    if alias.is_empty() || !alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{item:?}: {alias:?} is not a plain name"));
    }
    let alias = alias.to_string();
    let expr: String = item[..at].chars().filter(|c| !c.is_whitespace()).collect();
    let lower = expr.to_ascii_lowercase();
    if lower == "encode(*,'base64')" {
        return Ok(Item::EncodeBase64(alias));
    }
    if lower == "timestamp()" {
        return Ok(Item::Timestamp(alias));
    }
    if lower == "topic()" {
        return Ok(Item::Topic(None, alias));
    }
    if let Some(n) = lower
        .strip_prefix("topic(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let n: usize = n
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{item:?}: topic(n) needs n >= 1"))?;
        return Ok(Item::Topic(Some(n), alias));
    }
    Err(format!("{item:?} is not a form this stand-in evaluates"))
}

/// Whether an MQTT topic filter (`+` one level, `#` the rest) matches a topic.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for want in filter.split('/') {
        match (want, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (w, Some(got)) if w == got => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQL: &str = "SELECT encode(*, 'base64') AS payload, topic(3) AS device, timestamp() AS received_at FROM 'dt/vigil/+/telemetry'";

    #[test]
    fn the_deployed_rule_gives_the_event_the_function_is_written_for() {
        let rule = TopicRule::parse("vigil_ingest", SQL).unwrap();
        let topic = rule.applies_to("dt/vigil/rig-001/telemetry").unwrap();
        let payload = br#"{"seq":0,"ts":1,"values":{"TS1":1.0}}"#;
        let event = rule.evaluate(&topic, payload, 1_700_000_000_123).unwrap();
        assert_eq!(
            event,
            serde_json::json!({
                "payload": base64::engine::general_purpose::STANDARD.encode(payload),
                "device": "rig-001",
                "received_at": 1_700_000_000_123u64,
            })
        );
        // Not JSON at all still reaches the function (which rejects it, counted).
        assert!(rule.evaluate(&topic, b"\xff\x00", 0).is_ok());
    }

    #[test]
    fn the_filter_and_basic_ingest_decide_which_messages_the_rule_sees() {
        let rule = TopicRule::parse("vigil_ingest", SQL).unwrap();
        assert_eq!(rule.applies_to("dt/vigil/rig-001/condition"), None);
        assert_eq!(rule.applies_to("dt/vigil/rig-001/telemetry/x"), None);
        assert_eq!(rule.applies_to("dt/vigil/telemetry"), None);
        assert_eq!(
            rule.applies_to("$aws/rules/vigil_ingest/dt/vigil/rig-002/telemetry"),
            Some("dt/vigil/rig-002/telemetry".into())
        );
        assert_eq!(
            rule.applies_to("$aws/rules/other_rule/dt/vigil/rig-002/telemetry"),
            None
        );
        let event = rule
            .evaluate("dt/vigil/rig-002/telemetry", b"{}", 5)
            .unwrap();
        assert_eq!(event["device"], "rig-002");
    }

    #[test]
    fn the_older_star_form_merges_the_json_payload() {
        let rule = TopicRule::parse(
            "r",
            "SELECT *, topic(3) AS device FROM 'dt/vigil/+/telemetry'",
        )
        .unwrap();
        let event = rule
            .evaluate(
                "dt/vigil/rig-001/telemetry",
                br#"{"seq":1,"device":"spoof"}"#,
                0,
            )
            .unwrap();
        // Later items win, as in IoT: the topic's device, never the payload's.
        assert_eq!(event, serde_json::json!({"seq": 1, "device": "rig-001"}));
        assert_eq!(
            rule.evaluate("dt/vigil/rig-001/telemetry", b"[1]", 0),
            Err(RuleError::NotAnObject("dt/vigil/rig-001/telemetry".into()))
        );
    }

    #[test]
    fn forms_it_cannot_honour_are_refused_at_start() {
        for sql in [
            "SELECT * FROM 'a/+' WHERE x > 1",
            "SELECT upper(topic(3)) AS d FROM 'a/+'",
            "SELECT topic(0) AS d FROM 'a/+'",
            "SELECT topic(3) FROM 'a/+'",
            "DELETE FROM 'a'",
        ] {
            assert!(TopicRule::parse("r", sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn filters_match_like_mqtt() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "a"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a"));
    }
}
