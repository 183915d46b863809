//! A scripted loopback server that speaks both wire formats (feature
//! `testing`).
//!
//! [`TestServer::start`] listens on `127.0.0.1:0` (plain HTTP/1.1 over
//! `std::net`, a thread per connection, keep-alive and `Connection: close`
//! both honoured) and serves `POST /v1/chat/completions`,
//! `POST /chat/completions` and `POST /v1/messages`. Each request to those
//! paths takes the next [`ScriptedReply`] from a queue; an
//! [`ScriptedReply::Always`] at the head answers every request from then
//! on. With the queue empty it answers 500 with a body that says so. Every
//! request is recorded (method, path, headers, body) for assertions.
//!
//! ```no_run
//! use waymark_llm::testing::{ScriptedReply, TestServer};
//!
//! let server = TestServer::start().expect("loopback server");
//! server.push(ScriptedReply::rate_limited(1));
//! server.push(ScriptedReply::openai_text("hello"));
//! // point an `openai` provider at server.openai_base_url() ...
//! assert!(server.requests().len() <= 2);
//! ```

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{ProviderConfig, ProviderKind};

/// The paths served.
pub const OPENAI_PATHS: [&str; 2] = ["/v1/chat/completions", "/chat/completions"];
/// The Anthropic messages path served.
pub const ANTHROPIC_PATH: &str = "/v1/messages";

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How often an idle connection looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);
/// How long an idle keep-alive connection is kept (longer than ureq's
/// pool keeps one, so the client always closes first).
const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptedReply {
    /// A JSON body with this status.
    Json {
        /// The HTTP status.
        status: u16,
        /// The body, sent as JSON.
        body: Value,
    },
    /// Any body (malformed JSON, HTML error pages) with this status.
    Raw {
        /// The HTTP status.
        status: u16,
        /// The body, sent as is.
        body: String,
    },
    /// The reply with extra response headers (e.g. `retry-after`).
    WithHeaders {
        /// Names and values, in the order sent.
        headers: Vec<(String, String)>,
        /// The reply they are added to.
        then: Box<ScriptedReply>,
    },
    /// Waits `ms` before giving the reply (to provoke client timeouts).
    Delay {
        /// How long to wait, ms.
        ms: u64,
        /// The reply given after the wait.
        then: Box<ScriptedReply>,
    },
    /// Closes the connection without answering.
    Hangup,
    /// Answers every request from now on with the reply; stays at the head
    /// of the queue.
    Always(Box<ScriptedReply>),
}

impl ScriptedReply {
    /// [`ScriptedReply::Json`].
    pub fn json(status: u16, body: Value) -> Self {
        Self::Json { status, body }
    }

    /// [`ScriptedReply::Raw`].
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        Self::Raw {
            status,
            body: body.into(),
        }
    }

    /// `then`, after waiting `ms` milliseconds.
    pub fn delayed(ms: u64, then: ScriptedReply) -> Self {
        Self::Delay {
            ms,
            then: Box::new(then),
        }
    }

    /// `reply` to every request from now on.
    pub fn always(reply: ScriptedReply) -> Self {
        Self::Always(Box::new(reply))
    }

    /// This reply with one more response header.
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        match self {
            Self::WithHeaders { mut headers, then } => {
                headers.push((name.into(), value.into()));
                Self::WithHeaders { headers, then }
            }
            other => Self::WithHeaders {
                headers: vec![(name.into(), value.into())],
                then: Box::new(other),
            },
        }
    }

    /// 429 with `retry-after: <seconds>`, in both providers' error shapes
    /// (the body is only for show).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::json(
            429,
            json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "slow down" } }),
        )
        .with_header("retry-after", retry_after_secs.to_string())
    }

    /// A 500 with an error body.
    pub fn server_error() -> Self {
        Self::json(
            500,
            json!({ "type": "error", "error": { "type": "api_error", "message": "internal error" } }),
        )
    }

    /// A 200 whose body is not JSON.
    pub fn malformed() -> Self {
        Self::raw(200, "{ this is not json")
    }

    /// An OpenAI chat completion with text content.
    pub fn openai_text(content: &str) -> Self {
        Self::json(
            200,
            json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "test-model",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": content },
                    "finish_reason": "stop"
                }],
                "usage": { "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 }
            }),
        )
    }

    /// An OpenAI chat completion calling tools: `(id, name, arguments)`,
    /// arguments sent as a JSON string as OpenAI does.
    pub fn openai_tool_calls(calls: &[(&str, &str, Value)]) -> Self {
        let tool_calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments.to_string() }
                })
            })
            .collect();
        Self::json(
            200,
            json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": "test-model",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": null, "tool_calls": tool_calls },
                    "finish_reason": "tool_calls"
                }],
                "usage": { "prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29 }
            }),
        )
    }

    /// An Anthropic message with text content.
    pub fn anthropic_text(content: &str) -> Self {
        let text = json!({ "type": "text", "text": content });
        Self::anthropic_message(
            vec![text],
            "end_turn",
            json!({ "input_tokens": 12, "output_tokens": 6 }),
        )
    }

    /// An Anthropic message calling tools: `(id, name, input)`, after an
    /// optional text block.
    pub fn anthropic_tool_use(text: Option<&str>, calls: &[(&str, &str, Value)]) -> Self {
        let mut content: Vec<Value> = text
            .map(|t| json!({ "type": "text", "text": t }))
            .into_iter()
            .collect();
        content.extend(
            calls
                .iter()
                .map(|(id, name, input)| json!({ "type": "tool_use", "id": id, "name": name, "input": input })),
        );
        Self::anthropic_message(
            content,
            "tool_use",
            json!({ "input_tokens": 30, "output_tokens": 15 }),
        )
    }

    fn anthropic_message(content: Vec<Value>, stop_reason: &str, usage: Value) -> Self {
        Self::json(
            200,
            json!({
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": "test-claude",
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": null,
                "usage": usage
            }),
        )
    }
}

/// One request as the server read it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The HTTP method (`POST`, ...).
    pub method: String,
    /// The request path, without its query.
    pub path: String,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (Null when it is not JSON).
    pub body: Value,
    /// The body as text (invalid UTF-8 replaced).
    pub raw_body: String,
}

impl RecordedRequest {
    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<ScriptedReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    stopping: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestServer {
    /// Listens on `127.0.0.1:0`.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        let acceptor = thread::Builder::new()
            .name("llm-test-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `base_url` of an `openai` provider: `http://127.0.0.1:<port>/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// The `base_url` of an `anthropic` provider: `http://127.0.0.1:<port>`.
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// A provider of this kind pointed at this server: model `test-model`,
    /// no key, default timeouts.
    pub fn provider_config(&self, kind: ProviderKind) -> ProviderConfig {
        let base_url = match kind {
            ProviderKind::OpenAi => self.openai_base_url(),
            ProviderKind::Anthropic => self.anthropic_base_url(),
        };
        ProviderConfig::new(kind, base_url).with_model("test-model")
    }

    /// A whole configuration file (for a `waymark` subprocess, say) with
    /// one provider `name` of this kind pointed at this server, the
    /// default; its key, if `api_key_env` is given, is read from that
    /// variable.
    pub fn config_toml(&self, name: &str, kind: ProviderKind, api_key_env: Option<&str>) -> String {
        let config = self.provider_config(kind);
        let mut text = format!(
            "default_provider = {name:?}\n\n[providers.{name:?}]\nkind = {:?}\nbase_url = {:?}\nmodel = \"test-model\"\n",
            kind.as_str(),
            config.base_url,
        );
        if let Some(var) = api_key_env {
            text.push_str(&format!("api_key_env = {var:?}\n"));
        }
        text
    }

    /// Queues a reply.
    pub fn push(&self, reply: ScriptedReply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// Queues replies in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = ScriptedReply>) {
        lock(&self.shared.replies).extend(replies);
    }

    /// Drops the queued replies.
    pub fn clear_replies(&self) {
        lock(&self.shared.replies).clear();
    }

    /// Replies still queued.
    pub fn pending_replies(&self) -> usize {
        lock(&self.shared.replies).len()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests it has received.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Connections accepted so far (keep-alive reuses one).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("llm-test-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &conn_shared);
            });
        if spawned.is_err() {
            continue;
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader, shared)? else {
            return Ok(());
        };
        let close = request.close;
        let recorded = RecordedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            raw_body: String::from_utf8_lossy(&request.body).into_owned(),
        };
        lock(&shared.requests).push(recorded);

        let served = request.method == "POST"
            && (OPENAI_PATHS.contains(&request.path.as_str()) || request.path == ANTHROPIC_PATH);
        let reply = if served {
            next_reply(shared)
        } else {
            ScriptedReply::json(
                404,
                json!({ "error": { "message": format!(
                    "waymark-llm test server: nothing at {} {}", request.method, request.path) } }),
            )
        };
        if !write_reply(&mut writer, reply, close, shared)? {
            return Ok(());
        }
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn next_reply(shared: &Shared) -> ScriptedReply {
    let mut replies = lock(&shared.replies);
    match replies.front() {
        Some(ScriptedReply::Always(reply)) => (**reply).clone(),
        Some(_) => replies.pop_front().unwrap_or_else(empty_queue_reply),
        None => empty_queue_reply(),
    }
}

fn empty_queue_reply() -> ScriptedReply {
    ScriptedReply::json(
        500,
        json!({ "error": { "type": "test_server_error",
            "message": "waymark-llm test server: no scripted reply left" } }),
    )
}

/// Writes a reply; false when the connection is to be dropped.
fn write_reply(
    writer: &mut TcpStream,
    reply: ScriptedReply,
    close: bool,
    shared: &Shared,
) -> io::Result<bool> {
    let mut extra: Vec<(String, String)> = Vec::new();
    let mut reply = reply;
    loop {
        match reply {
            ScriptedReply::Delay { ms, then } => {
                sleep_unless_stopping(Duration::from_millis(ms), shared);
                reply = *then;
            }
            ScriptedReply::WithHeaders { headers, then } => {
                extra.extend(headers);
                reply = *then;
            }
            ScriptedReply::Always(then) => reply = *then,
            ScriptedReply::Hangup => {
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(false);
            }
            ScriptedReply::Json { status, body } => {
                write_response(writer, status, &body.to_string(), &extra, close)?;
                return Ok(true);
            }
            ScriptedReply::Raw { status, body } => {
                write_response(writer, status, &body, &extra, close)?;
                return Ok(true);
            }
        }
    }
}

fn sleep_unless_stopping(total: Duration, shared: &Shared) {
    let until = Instant::now() + total;
    while !shared.stopping.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        thread::sleep((until - now).min(POLL));
    }
}

fn write_response(
    writer: &mut TcpStream,
    status: u16,
    body: &str,
    extra: &[(String, String)],
    close: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {}\r\n",
        reason(status),
        body.len(),
        if close { "close" } else { "keep-alive" },
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Reads one request; None when the client closed, the server is
/// stopping, or the connection sat idle too long.
fn read_request(reader: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Option<Request>> {
    // The request line, waiting for it as long as the connection is kept.
    let idle_since = Instant::now();
    let mut line = Vec::new();
    loop {
        if shared.stopping.load(Ordering::SeqCst) || idle_since.elapsed() > IDLE_LIMIT {
            return Ok(None);
        }
        match read_line(reader, &mut line) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(_) if line.ends_with(b"\n") => {
                if line.trim_ascii().is_empty() {
                    // Stray CRLF between requests.
                    line.clear();
                    continue;
                }
                break;
            }
            Ok(0) => return Ok(None),
            Ok(_) => continue,
            Err(e) if is_poll_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    let request_line = String::from_utf8_lossy(&line).trim().to_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let version = parts.next().unwrap_or_default().to_owned();

    let mut headers = Vec::new();
    let mut head_bytes = line.len();
    let started = Instant::now();
    line.clear();
    loop {
        match read_line(reader, &mut line) {
            Ok(0) => return Ok(None),
            Ok(_) if line.ends_with(b"\n") => {}
            // The client closed in the middle of a line.
            Ok(_) => return Ok(None),
            Err(e) if is_poll_timeout(&e) => {
                if shared.stopping.load(Ordering::SeqCst) || started.elapsed() > IDLE_LIMIT {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        line.clear();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let connection = header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let close = connection.contains("close")
        || (version == "HTTP/1.0" && !connection.contains("keep-alive"));
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader, shared)?
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request body too large",
            ));
        }
        let mut body = vec![0; length];
        read_exact(reader, &mut body, shared)?;
        body
    };
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
        close,
    }))
}

/// Appends up to and including a newline; retries after poll timeouts are
/// the caller's.
fn read_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> io::Result<usize> {
    reader.read_until(b'\n', line)
}

fn read_exact(
    reader: &mut BufReader<TcpStream>,
    buf: &mut [u8],
    shared: &Shared,
) -> io::Result<()> {
    let mut filled = 0;
    let started = Instant::now();
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if is_poll_timeout(&e) => {
                if shared.stopping.load(Ordering::SeqCst) || started.elapsed() > IDLE_LIMIT {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_chunked(reader: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = Vec::new();
        loop {
            match read_line(reader, &mut size_line) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) if size_line.ends_with(b"\n") => break,
                Ok(_) => {}
                Err(e) if is_poll_timeout(&e) && !shared.stopping.load(Ordering::SeqCst) => {}
                Err(e) => return Err(e),
            }
        }
        let size_text = String::from_utf8_lossy(&size_line);
        let size_text = size_text.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request body too large",
            ));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = Vec::new();
                match read_line(reader, &mut trailer) {
                    Ok(0) => return Ok(body),
                    Ok(_) if trailer.trim_ascii().is_empty() => return Ok(body),
                    Ok(_) => {}
                    Err(e) if is_poll_timeout(&e) && !shared.stopping.load(Ordering::SeqCst) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        read_exact(reader, &mut body[start..], shared)?;
        let mut crlf = [0u8; 2];
        read_exact(reader, &mut crlf, shared)?;
    }
}

fn is_poll_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
