//! Just enough HTTP/1.1 for the monitoring endpoint: one request per connection, a bounded head
//! and a bounded body (POST needs a Content-Length), answers with `Connection: close`.
//! Also the bearer token: where it comes from, and its constant-time check.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request body accepted (an alarm action is a few hundred bytes).
pub const MAX_BODY: usize = 4 * 1024;
/// A client that does not finish its request in this time is dropped.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub query: String,
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// A query parameter, as given (the endpoint's values need no percent-decoding).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find_map(|(k, v)| (k == name).then_some(v))
    }
}

/// Why a request was refused before routing: (status, reason, text).
pub type Refusal = (u16, &'static str, String);

/// Reads one request: head up to the blank line, then exactly Content-Length bytes of body.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err((
                431,
                "Request Header Fields Too Large",
                "head too large\n".into(),
            ));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| (400, "Bad Request", format!("{e}\n")))?;
        if n == 0 {
            return Err((400, "Bad Request", "incomplete request head\n".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut request =
        parse_head(&buf[..head_end]).map_err(|r| (400, "Bad Request", format!("{r}\n")))?;
    let length =
        content_length(&buf[..head_end]).map_err(|r| (400, "Bad Request", format!("{r}\n")))?;
    // Without a length a request has no body (chunked bodies are not spoken here).
    if headers(&buf[..head_end]).any(|(k, _)| k == "transfer-encoding") {
        return Err((
            411,
            "Length Required",
            "send a Content-Length, not chunks\n".into(),
        ));
    }
    match length {
        None => return Ok(request),
        Some(n) if n > MAX_BODY => {
            return Err((
                413,
                "Payload Too Large",
                format!("body of {n} bytes is over the {MAX_BODY}-byte limit\n"),
            ))
        }
        Some(n) => {
            let mut body = buf[head_end..].to_vec();
            while body.len() < n {
                let got = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| (400, "Bad Request", format!("{e}\n")))?;
                if got == 0 {
                    return Err((
                        400,
                        "Bad Request",
                        "body shorter than Content-Length\n".into(),
                    ));
                }
                body.extend_from_slice(&chunk[..got]);
            }
            body.truncate(n);
            request.body = body;
        }
    }
    Ok(request)
}

fn headers(head: &[u8]) -> impl Iterator<Item = (String, &str)> {
    std::str::from_utf8(head)
        .unwrap_or("")
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
}

fn content_length(head: &[u8]) -> Result<Option<usize>, &'static str> {
    match headers(head).find(|(k, _)| k == "content-length") {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| "Content-Length is not a number"),
    }
}

pub fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("incomplete request line")?;
    let line = std::str::from_utf8(&head[..end]).map_err(|_| "request line is not UTF-8")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected: METHOD PATH HTTP/1.x");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("only HTTP/1.x is spoken here");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let bearer = headers(head)
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        bearer,
        body: vec![],
    })
}

pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub extra: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, reason: &'static str, body: String) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: None,
            body: body.into_bytes(),
        }
    }

    pub fn json(status: u16, reason: &'static str, value: &serde_json::Value) -> Self {
        Self {
            status,
            reason,
            content_type: "application/json",
            extra: None,
            body: serde_json::to_vec(value).expect("JSON value serializes"),
        }
    }

    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if let Some(extra) = self.extra {
            out.push_str(extra);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// File in the state directory that keeps the generated token across restarts.
pub const TOKEN_FILE: &str = "http-token";

/// The token: the one given (flag or environment), else the one stored in the state directory,
/// else a new random one stored there (mode 0600). Returns it and whether it was generated now.
pub fn token(state_dir: &Path, given: Option<&str>) -> std::io::Result<(String, bool)> {
    if let Some(t) = given {
        if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the HTTP token must be at least 16 printable ASCII characters",
            ));
        }
        return Ok((t.to_string(), false));
    }
    let path = state_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok((t.to_string(), false));
        }
    }
    let mut raw = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
    let t: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(state_dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, t.as_bytes())?;
    Ok((t, true))
}

/// Compares in time independent of where the strings differ.
pub fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, Refusal> {
        let mut input = bytes;
        block_on(read_request(&mut input))
    }

    /// The tests run without a runtime: the reader never waits on a slice.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn request_lines_are_parsed_or_refused_with_a_reason() {
        let r = parse_head(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/metrics", "x=1")
        );
        assert_eq!(r.bearer.as_deref(), Some("abc"));
        assert_eq!(r.param("x"), Some("1"));
        assert_eq!(
            parse_head(b"GET /metrics\r\n\r\n"),
            Err("expected: METHOD PATH HTTP/1.x")
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2\r\n\r\n"),
            Err("only HTTP/1.x is spoken here")
        );
        assert_eq!(parse_head(b"GET / HT"), Err("incomplete request line"));
    }

    #[test]
    fn bodies_are_bounded_and_need_a_length() {
        let r = read(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello and more").unwrap();
        assert_eq!(r.body, b"hello");
        assert!(read(b"POST /a HTTP/1.1\r\n\r\n").unwrap().body.is_empty());
        assert_eq!(
            read(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .0,
            411
        );
        let big = format!(
            "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(big.as_bytes()).unwrap_err().0, 413);
        assert_eq!(
            read(b"POST /a HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            read(b"POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .0,
            400
        );
        let long = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(read(&long).unwrap_err().0, 431);
    }

    #[test]
    fn a_token_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, new1) = token(dir.path(), None).unwrap();
        let (t2, new2) = token(dir.path(), None).unwrap();
        assert!(new1 && !new2);
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        assert!(token(dir.path(), Some("short")).is_err());
        assert_eq!(
            token(dir.path(), Some("given-token-123456")).unwrap().0,
            "given-token-123456"
        );
        assert!(same_token(&t1, &t2));
        assert!(!same_token(&t1, &t1[1..]));
        assert!(!same_token("aaaa", "aaab"));
    }
}
