//! `vigil alarm ack|snooze|disable|enable|reset DEVICE CONDITION`: an operator's action, sent to
//! a running edge's HTTP endpoint (`POST /api/alarm`). The action id is chosen once and reused
//! on retries, so a retried request is applied once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use vigil_edge::monitor::http::TOKEN_FILE;

#[derive(Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub action: Action,
    /// The edge's HTTP endpoint (its --http).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9464",
        env = "VIGIL_HTTP"
    )]
    pub http: SocketAddr,
    /// Bearer token; default: the one the edge keeps in its state directory.
    #[arg(long, global = true, env = "VIGIL_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The edge's state directory, to read its token from.
    #[arg(long, global = true, default_value = ".vigil/edge")]
    pub state: PathBuf,
    /// Who acts (default: $USER).
    #[arg(long, global = true)]
    pub by: Option<String>,
    /// Action id (default: a fresh random one); the same id is applied at most once.
    #[arg(long, global = true)]
    pub id: Option<String>,
}

#[derive(Subcommand)]
pub enum Action {
    /// Acknowledge: someone has it (an active alarm), or saw it (a latched, cleared one).
    Ack {
        device: String,
        condition: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Hold notifications for a while (e.g. 30m, 2h, 90s).
    Snooze {
        device: String,
        condition: String,
        #[arg(long = "for", value_parser = parse_duration)]
        duration: u64,
    },
    /// No notifications until enabled.
    Disable {
        device: String,
        condition: String,
    },
    Enable {
        device: String,
        condition: String,
    },
    /// Back to what the condition says now, forgetting acknowledgement, snooze and escalation.
    Reset {
        device: String,
        condition: String,
    },
}

/// Seconds from `90s`, `30m`, `2h`, `1d` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30m"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    Ok(n.saturating_mul(scale))
}

fn random_id() -> anyhow::Result<String> {
    let mut raw = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

pub async fn run(args: AlarmArgs) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let path = args.state.join(TOKEN_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| format!("no --token and cannot read {}", path.display()))?
                .trim()
                .to_string()
        }
    };
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    let id = match &args.id {
        Some(id) => id.clone(),
        None => random_id()?,
    };
    let (device, condition, command) = match &args.action {
        Action::Ack {
            device,
            condition,
            note,
        } => (
            device,
            condition,
            json!({"action": "acknowledge", "note": note}),
        ),
        Action::Snooze {
            device,
            condition,
            duration,
        } => (
            device,
            condition,
            json!({"action": "snooze", "for_s": duration}),
        ),
        Action::Disable { device, condition } => (device, condition, json!({"action": "disable"})),
        Action::Enable { device, condition } => (device, condition, json!({"action": "enable"})),
        Action::Reset { device, condition } => (device, condition, json!({"action": "reset"})),
    };
    let mut body = json!({"device": device, "condition": condition, "by": by, "id": id});
    body.as_object_mut()
        .expect("an object")
        .extend(command.as_object().expect("an object").clone());
    let body = body.to_string();
    let addr = args.http;
    // Blocking I/O, a few hundred bytes: off the runtime's workers.
    let (status, answer) = tokio::task::spawn_blocking(move || send(addr, &token, &body)).await??;
    if status != 200 {
        bail!("the edge refused ({status}): {}", answer.trim());
    }
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    println!(
        "{device} {condition}: {} ({}, id {id})",
        v["state"].as_str().unwrap_or("?"),
        v["outcome"]["outcome"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// POSTs the action, retrying (same id) when the edge is unreachable or busy.
pub fn send(addr: SocketAddr, token: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        match post_once(addr, token, body) {
            Ok((503, text)) => last = Some(anyhow::anyhow!("503: {text}")),
            Ok(answer) => return Ok(answer),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
        .with_context(|| format!("POST http://{addr}/api/alarm"))
}

fn post_once(addr: SocketAddr, token: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST /api/alarm HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.take(64 * 1024).read_to_string(&mut answer)?;
    let (head, text) = answer
        .split_once("\r\n\r\n")
        .context("the edge's answer has no head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the edge's answer has no status")?;
    Ok((status, text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("m").is_err());
    }
}
