//! The few AWS calls the stand-in makes itself (the rule's SQS and Kinesis actions, the event
//! source mappings' polling), over loopback HTTP to moto in the services' JSON protocol. moto
//! does not check signatures but routes a request by the service named in its credential scope,
//! so the `Authorization` header names the service and nothing is signed. Also the plain HTTP
//! POST the function's invocations use.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read back (Lambda's synchronous response limit is 6 MB; a GetRecords answer
/// is at most 10 MB).
const MAX_ANSWER_BYTES: u64 = 12 * 1024 * 1024;

/// `http://host:port` (loopback emulators: no TLS, no path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("endpoint {url:?}: only http://host:port"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("endpoint {url:?}: no port"))?;
        let port = port
            .parse()
            .map_err(|_| anyhow::anyhow!("endpoint {url:?}: bad port"))?;
        if host.is_empty() || host.contains('/') {
            anyhow::bail!("endpoint {url:?}: bad host");
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// One HTTP answer: status, lower-cased head, body (de-chunked).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// One `POST` with `Connection: close`.
pub async fn post(
    at: &Endpoint,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect((at.host.as_str(), at.port)).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
        at.host,
        at.port,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .await?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head in the answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = answer[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Answer { status, head, body })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 2 + size + 2).min(body.len())..];
    }
    out
}

/// A JSON-protocol AWS service at an emulator.
#[derive(Clone, Debug)]
pub struct AwsJson {
    pub endpoint: Endpoint,
    /// The signing name: `sqs`, `kinesis`.
    service: &'static str,
    /// `AmazonSQS`, `Kinesis_20131202`.
    target: &'static str,
    content_type: &'static str,
    pub region: String,
}

impl AwsJson {
    pub fn sqs(endpoint: Endpoint, region: &str) -> Self {
        Self {
            endpoint,
            service: "sqs",
            target: "AmazonSQS",
            content_type: "application/x-amz-json-1.0",
            region: region.to_string(),
        }
    }

    pub fn kinesis(endpoint: Endpoint, region: &str) -> Self {
        Self {
            endpoint,
            service: "kinesis",
            target: "Kinesis_20131202",
            content_type: "application/x-amz-json-1.1",
            region: region.to_string(),
        }
    }

    /// One operation; an error answer becomes an error naming the operation and AWS's message.
    pub async fn call(&self, operation: &str, input: &Value) -> anyhow::Result<Value> {
        let target = format!("{}.{operation}", self.target);
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/{}/{}/aws4_request, SignedHeaders=host, Signature=0",
            self.region, self.service
        );
        let answer = post(
            &self.endpoint,
            "/",
            &[
                ("Content-Type", self.content_type),
                ("X-Amz-Target", &target),
                ("Authorization", &authorization),
            ],
            input.to_string().as_bytes(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{} {operation}: {e}", self.service))?;
        let value: Value = if answer.body.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&answer.body).map_err(|e| {
                anyhow::anyhow!(
                    "{} {operation}: answer is not JSON ({e}): {}",
                    self.service,
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                )
            })?
        };
        if !(200..300).contains(&answer.status) {
            anyhow::bail!(
                "{} {operation}: HTTP {}: {} {}",
                self.service,
                answer.status,
                value["__type"].as_str().unwrap_or(""),
                value["message"]
                    .as_str()
                    .or(value["Message"].as_str())
                    .unwrap_or("")
            );
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_answers_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn endpoints_are_http_host_port() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:5000/").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert!(Endpoint::parse("https://x:1").is_err());
        assert!(Endpoint::parse("http://x").is_err());
        assert!(Endpoint::parse("http://:1").is_err());
    }
}
