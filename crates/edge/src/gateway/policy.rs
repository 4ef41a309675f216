//! IoT Core's per-device policy at the gateway: a policy document in IAM's JSON shape (what
//! `data.aws_iam_policy_document.device.json` gives `aws_iot_policy.device` in
//! `infra/modules/fleet`), evaluated the way IoT Core evaluates it for one connection:
//! - the policy variables `${iot:Connection.Thing.ThingName}` and `${iot:ClientId}` become the
//!   connection's thing (the gateway admits a CONNECT only with client id = thing, so both are
//!   the same); any other variable is refused when the document is read;
//! - resources are ARNs; the part after the region and account is compared
//!   (`client/<id>`, `topic/<topic>`, `topicfilter/<filter>`), IoT's `*` and `?` wildcards
//!   honoured (MQTT's `+` and `#` are plain characters there, as in IoT);
//! - an explicit `Deny` wins over any `Allow`; nothing allowed is denied;
//! - conditions: only `Bool` `iot:Connection.Thing.IsAttached` = `true`, which holds for every
//!   connection the gateway admits (it admits attached certificates only); any other condition
//!   is refused when the document is read rather than ignored.
//!
//! [`PolicyDocument::builtin`] is the same policy written out in code, for `vigil edge` (which
//! has no Terraform at hand); `vigil-local` tests that it agrees with the Terraform's.

use rumqttc::Packet;
use serde_json::Value;
use vigil_core::telemetry::{condition_topic, telemetry_topic, CONDITION_SHADOW};
use vigil_core::DeviceId;

use super::{is_reserved_client_id, Violation};

const THING_VARIABLE: &str = "${iot:Connection.Thing.ThingName}";
const CLIENT_VARIABLE: &str = "${iot:ClientId}";
/// The shadow service's answers on a shadow's topics, which a device may receive.
const SHADOW_REPLIES: [&str; 6] = [
    "get/accepted",
    "get/rejected",
    "update/accepted",
    "update/rejected",
    "update/delta",
    "update/documents",
];

/// Why a policy document cannot be enforced.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("device policy: {0}")]
pub struct PolicyError(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement: actions (`iot:Publish`, `iot:*`, ...) on resources (ARNs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A device policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
}

/// The IoT actions the gateway decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Connect => "iot:connect",
            Action::Publish => "iot:publish",
            Action::Subscribe => "iot:subscribe",
            Action::Receive => "iot:receive",
        }
    }

    fn resource_type(self) -> &'static str {
        match self {
            Action::Connect => "client/",
            Action::Publish | Action::Receive => "topic/",
            Action::Subscribe => "topicfilter/",
        }
    }
}

impl PolicyDocument {
    /// Reads an IAM-shaped policy document (`{"Statement": [{"Effect", "Action", "Resource",
    /// "Condition"}]}`), refusing what the gateway could not enforce as IoT Core does.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let bad = |why: String| PolicyError(why);
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let statements = match &doc["Statement"] {
            Value::Array(s) => s.clone(),
            s @ Value::Object(_) => vec![s.clone()],
            _ => return Err(bad("no Statement".into())),
        };
        let strings = |v: &Value, what: &str, i: usize| -> Result<Vec<String>, PolicyError> {
            match v {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(a) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(format!("statement {i}: {what} holds a non-string")))
                    })
                    .collect(),
                _ => Err(bad(format!("statement {i}: no {what}"))),
            }
        };
        let mut out = Vec::new();
        for (i, s) in statements.iter().enumerate() {
            let effect = match s["Effect"].as_str() {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                other => return Err(bad(format!("statement {i}: Effect {other:?}"))),
            };
            if s.get("NotAction").is_some() || s.get("NotResource").is_some() {
                return Err(bad(format!("statement {i}: NotAction/NotResource")));
            }
            check_condition(&s["Condition"]).map_err(|why| bad(format!("statement {i}: {why}")))?;
            let actions = strings(&s["Action"], "Action", i)?;
            let resources = strings(&s["Resource"], "Resource", i)?;
            for r in &resources {
                check_variables(r).map_err(|why| bad(format!("statement {i}: {r:?}: {why}")))?;
            }
            out.push(Statement {
                effect,
                actions,
                resources,
            });
        }
        Ok(Self { statements: out })
    }

    /// `infra/modules/fleet`'s device policy, in code: connect as the own thing; publish
    /// telemetry (also through Basic Ingest to `basic_ingest_rule`, when given) and ask for the
    /// own `condition` shadow; subscribe to and receive the own results and shadow replies.
    pub fn builtin(basic_ingest_rule: Option<&str>) -> Self {
        let arn = |kind: &str, name: &str| format!("arn:aws:iot:*:*:{kind}/{name}");
        let thing = THING_VARIABLE;
        let shadow = format!("$aws/things/{thing}/shadow/name/{CONDITION_SHADOW}");
        let telemetry = format!("dt/vigil/{thing}/telemetry");
        let mut publish = vec![arn("topic", &telemetry)];
        if let Some(rule) = basic_ingest_rule {
            publish.push(arn("topic", &format!("$aws/rules/{rule}/{telemetry}")));
        }
        publish.push(arn("topic", &format!("{shadow}/get")));
        let mut inbound = vec![format!("dt/vigil/{thing}/condition")];
        for reply in SHADOW_REPLIES {
            inbound.push(format!("{shadow}/{reply}"));
        }
        let allow = |action: &str, resources: Vec<String>| Statement {
            effect: Effect::Allow,
            actions: vec![action.to_string()],
            resources,
        };
        Self {
            statements: vec![
                allow("iot:Connect", vec![arn("client", thing)]),
                allow("iot:Publish", publish),
                allow(
                    "iot:Subscribe",
                    inbound.iter().map(|t| arn("topicfilter", t)).collect(),
                ),
                allow(
                    "iot:Receive",
                    inbound.iter().map(|t| arn("topic", t)).collect(),
                ),
            ],
        }
    }
}

/// Only the condition every admitted connection meets.
fn check_condition(condition: &Value) -> Result<(), String> {
    let Some(tests) = condition.as_object() else {
        return if condition.is_null() {
            Ok(())
        } else {
            Err("Condition is not an object".into())
        };
    };
    for (test, variables) in tests {
        let Some(variables) = variables.as_object() else {
            return Err(format!("Condition {test} is not an object"));
        };
        for (variable, values) in variables {
            let truthy = match values {
                Value::String(s) => s == "true",
                Value::Array(a) => a.len() == 1 && a[0] == "true",
                _ => false,
            };
            if !(test == "Bool" && variable == "iot:Connection.Thing.IsAttached" && truthy) {
                return Err(format!(
                    "condition {test} {variable} {values}: the gateway enforces only Bool iot:Connection.Thing.IsAttached = true"
                ));
            }
        }
    }
    Ok(())
}

fn check_variables(resource: &str) -> Result<(), String> {
    let mut rest = resource;
    while let Some(at) = rest.find("${") {
        let var = &rest[at..];
        let end = var.find('}').ok_or("unclosed ${")?;
        let name = &var[..=end];
        if name != THING_VARIABLE && name != CLIENT_VARIABLE {
            return Err(format!(
                "policy variable {name}: the gateway knows only {THING_VARIABLE} and {CLIENT_VARIABLE}"
            ));
        }
        rest = &var[end + 1..];
    }
    Ok(())
}

/// IoT policy wildcards: `*` any run of characters, `?` one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The resource part of an ARN (`arn:partition:iot:region:account:<resource>`).
fn resource_part(arn: &str) -> &str {
    arn.splitn(6, ':').nth(5).unwrap_or(arn)
}

/// A policy document for one thing: what it may do on its connection.
#[derive(Debug, Clone)]
pub struct DevicePolicy {
    thing: String,
    /// Statements with the policy variables replaced: (effect, lower-case actions, resources).
    rules: Vec<(Effect, Vec<String>, Vec<String>)>,
}

impl DevicePolicy {
    /// The built-in policy (without Basic Ingest) for `thing`.
    pub fn new(thing: &DeviceId) -> Self {
        Self::for_thing(&PolicyDocument::builtin(None), thing)
    }

    pub fn for_thing(doc: &PolicyDocument, thing: &DeviceId) -> Self {
        let thing = thing.as_str();
        let rules = doc
            .statements
            .iter()
            .map(|s| {
                (
                    s.effect,
                    s.actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
                    s.resources
                        .iter()
                        .map(|r| {
                            resource_part(r)
                                .replace(THING_VARIABLE, thing)
                                .replace(CLIENT_VARIABLE, thing)
                        })
                        .collect(),
                )
            })
            .collect();
        Self {
            thing: thing.to_string(),
            rules,
        }
    }

    pub fn thing(&self) -> &str {
        &self.thing
    }

    /// Whether the document allows `action` on `name` (a client id, topic or filter).
    pub fn allows(&self, action: Action, name: &str) -> bool {
        // The gateway's own name for `$aws/` topics on the broker is never a device's to use:
        // what it receives from there is checked under the `$aws/` name.
        if super::topics::is_broker_namespace(name) {
            return false;
        }
        let kind = action.resource_type();
        // `<kind><name>` against each resource pattern, without building the string: a pattern
        // either starts with the kind, or with a wildcard that may cover part of it.
        let matches = |r: &String| match r.strip_prefix(kind) {
            Some(pattern) => glob(pattern.as_bytes(), name.as_bytes()),
            None => {
                r.contains(['*', '?']) && glob(r.as_bytes(), format!("{kind}{name}").as_bytes())
            }
        };
        let mut allowed = false;
        for (effect, actions, resources) in &self.rules {
            let acts = actions
                .iter()
                .any(|a| glob(a.as_bytes(), action.name().as_bytes()));
            if !acts || !resources.iter().any(matches) {
                continue;
            }
            match effect {
                Effect::Deny => return false,
                Effect::Allow => allowed = true,
            }
        }
        allowed
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        self.allows(Action::Publish, topic)
    }

    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.allows(Action::Subscribe, filter)
    }

    pub fn may_receive(&self, topic: &str) -> bool {
        self.allows(Action::Receive, topic)
    }

    /// The CONNECT checks of both MQTT versions: not a reserved id, the certificate's thing,
    /// allowed by the document.
    pub fn check_client_id(&self, client_id: &str) -> Result<(), Violation> {
        if is_reserved_client_id(client_id) {
            return Err(Violation::Reserved(client_id.to_string()));
        }
        if client_id != self.thing || !self.allows(Action::Connect, client_id) {
            return Err(Violation::ClientId {
                thing: self.thing.clone(),
                got: client_id.to_string(),
            });
        }
        Ok(())
    }

    /// Whether the MQTT 3.1.1 packet may pass; `connected` is whether CONNECT went through.
    pub fn check(&self, packet: &Packet, connected: bool) -> Result<(), Violation> {
        match packet {
            Packet::Connect(_) if connected => Err(Violation::Reconnect),
            Packet::Connect(c) => {
                self.check_client_id(&c.client_id)?;
                match &c.last_will {
                    Some(will) if !self.may_publish(&will.topic) => {
                        Err(Violation::Will(will.topic.clone()))
                    }
                    _ => Ok(()),
                }
            }
            other if !connected => Err(Violation::NotConnected(super::name(other))),
            Packet::Publish(p) if !self.may_publish(&p.topic) => {
                Err(Violation::Publish(p.topic.clone()))
            }
            Packet::Subscribe(s) => match s.filters.iter().find(|f| !self.may_subscribe(&f.path)) {
                Some(f) => Err(Violation::Subscribe(f.path.clone())),
                None => Ok(()),
            },
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Violation::ServerPacket(super::name(packet)))
            }
            _ => Ok(()),
        }
    }
}

/// The topics and filters the built-in policy names for `thing`, for tests that compare two
/// documents on them (with a few that neither allows).
pub fn probe_names(thing: &DeviceId, basic_ingest_rule: &str) -> Vec<String> {
    let shadow = format!("$aws/things/{thing}/shadow/name/{CONDITION_SHADOW}");
    let mut names = vec![
        thing.to_string(),
        "other-thing".to_string(),
        telemetry_topic(thing),
        condition_topic(thing),
        format!("$aws/rules/{basic_ingest_rule}/{}", telemetry_topic(thing)),
        format!("$aws/rules/other_rule/{}", telemetry_topic(thing)),
        "dt/vigil/other-thing/telemetry".into(),
        "dt/vigil/+/condition".into(),
        "#".into(),
        format!("$aws/things/{thing}/shadow/name/alarm/update"),
    ];
    for suffix in ["get", "update"].into_iter().chain(SHADOW_REPLIES) {
        names.push(format!("{shadow}/{suffix}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig() -> DeviceId {
        DeviceId::new("rig-001").unwrap()
    }

    #[test]
    fn wildcards_are_iots_and_deny_wins() {
        assert!(glob(b"dt/*/telemetry", b"dt/vigil/rig-001/telemetry"));
        assert!(glob(b"rig-00?", b"rig-001"));
        assert!(!glob(b"rig-00?", b"rig-0012"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"dt/+/x", b"dt/a/x"));
        let doc = PolicyDocument::from_json(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"iot:*","Resource":"arn:aws:iot:r:1:topic/dt/vigil/${iot:Connection.Thing.ThingName}/*"},
                {"Effect":"Deny","Action":["iot:Publish"],"Resource":["arn:aws:iot:r:1:topic/dt/vigil/${iot:ClientId}/condition"]}
            ]}"#,
        )
        .unwrap();
        let p = DevicePolicy::for_thing(&doc, &rig());
        assert!(p.may_publish("dt/vigil/rig-001/telemetry"));
        assert!(p.may_receive("dt/vigil/rig-001/condition"));
        assert!(!p.may_publish("dt/vigil/rig-001/condition"));
        assert!(!p.may_publish("dt/vigil/rig-002/telemetry"));
        assert!(
            !p.may_subscribe("dt/vigil/rig-001/condition"),
            "topicfilter is not topic"
        );
    }

    #[test]
    fn what_the_gateway_cannot_enforce_is_refused_when_read() {
        for doc in [
            r#"{"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:r:1:client/${iot:Certificate.Subject.CommonName}"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:ClientMode":"x"}}}]}"#,
            r#"{"Statement":[{"Effect":"Maybe","Action":"iot:Connect","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","NotAction":"iot:Connect","Resource":"*"}]}"#,
            r#"{"Version":"2012-10-17"}"#,
        ] {
            assert!(PolicyDocument::from_json(doc).is_err(), "{doc}");
        }
        let attached = r#"{"Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:r:1:client/${iot:Connection.Thing.ThingName}","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":["true"]}}}}"#;
        let p = DevicePolicy::for_thing(&PolicyDocument::from_json(attached).unwrap(), &rig());
        assert_eq!(p.check_client_id("rig-001"), Ok(()));
        assert!(p.check_client_id("rig-002").is_err());
    }

    #[test]
    fn the_builtin_names_basic_ingest_only_with_a_rule() {
        let with = DevicePolicy::for_thing(&PolicyDocument::builtin(Some("vigil_ingest")), &rig());
        let without = DevicePolicy::new(&rig());
        let ingest = "$aws/rules/vigil_ingest/dt/vigil/rig-001/telemetry";
        assert!(with.may_publish(ingest));
        assert!(!without.may_publish(ingest));
        assert!(!with.may_publish("$aws/rules/vigil_ingest/dt/vigil/rig-002/telemetry"));
    }
}
