//! A fake Djinn API server that enforces the publish contract (docs/driver-contract.md §5), so a
//! client bug fails a test instead of passing against a lenient stand-in.
//!
//! HTTP/1.1 is written by hand over `std::net` rather than with tiny_http: the fake must be
//! able to drop a connection mid-body without replying (tiny_http answers 500 for a request
//! dropped unanswered), send `100 Continue` only when it means to read the body, and copy
//! bodies straight to disk with a large buffer.
//!
//! Routes (all relative to [`DjinnServer::base_url`]):
//!
//! - `POST /images?name=NAME&namespace=PATH[@OWNER]`, body `application/x-qemu-disk` (raw,
//!   Content-Length or chunked) or `multipart/form-data` (fields `name`, `namespace`, `file`).
//!   Checked in this order: Bearer token known (401), scope `image:write` (403), content type
//!   (415), name present and `^[a-zA-Z0-9_-]+$` (400 `name`), name free in the namespace
//!   (400 `name`), namespace `^[a-zA-Z/]+(@[a-zA-Z0-9_-]+)?$` (400 `namespace`), body starts
//!   with `QFI\xfb` (400 `file`). Only the first failure is reported. 201 with the image.
//!   A missing or empty namespace means the token user's own space.
//! - `GET /images[?page=N]` (image:read): 25 per page, oldest first, `Link: <…>; rel="next"`
//!   while more follow. No server-side search: the client filters the pages itself.
//! - `GET /images/ID` (image:read): the JSON object, or the bytes with
//!   `Accept: application/x-qemu-disk`.
//! - `DELETE /images/ID` (image:write): 204.
//! - Anything else: 404 `{"message":"not found"}`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The token [`DjinnConfig::default`] accepts with `image:write` and `image:read`.
pub const GOOD_TOKEN: &str = "good";
/// The token [`DjinnConfig::default`] accepts with `image:read` only.
pub const READONLY_TOKEN: &str = "readonly";
/// The content type of a raw qcow2 upload or download.
pub const QEMU_DISK: &str = "application/x-qemu-disk";
/// The first four bytes of every qcow2 file; the only format check Djinn makes.
pub const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// Images per page of `GET /images`.
pub const PAGE_SIZE: usize = 25;

/// Bodies are copied in blocks this large (the benchmark compares against `curl -T`).
const COPY_BUFFER: usize = 1 << 20;
const READ_BUFFER: usize = 256 << 10;
const MAX_LINE: u64 = 16 << 10;
const MAX_HEADERS: usize = 128;
const MAX_FIELD: u64 = 64 << 10;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bearer token the fake accepts: whose it is and what it may do.
#[derive(Clone, Debug)]
pub struct Token {
    pub secret: String,
    pub user: String,
    pub scopes: Vec<String>,
}

/// How `POST /images` misbehaves, to test kiln's error handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Behave.
    #[default]
    None,
    /// Read the whole body, then answer 500 `{"message":"internal server error"}`.
    Status500,
    /// Read this many body bytes, then close the connection without answering.
    CloseAfter(u64),
}

/// What a [`DjinnServer`] accepts and how it fails.
#[derive(Clone, Debug)]
pub struct DjinnConfig {
    pub tokens: Vec<Token>,
    pub fail: FailMode,
}

impl Default for DjinnConfig {
    /// `good` (user `tester`, image:write + image:read) and `readonly` (user `reader`, image:read).
    fn default() -> DjinnConfig {
        DjinnConfig::empty()
            .token(GOOD_TOKEN, "tester", &["image:write", "image:read"])
            .token(READONLY_TOKEN, "reader", &["image:read"])
    }
}

impl DjinnConfig {
    /// No tokens at all: every request is refused until [`DjinnConfig::token`] adds one.
    pub fn empty() -> DjinnConfig {
        DjinnConfig {
            tokens: Vec::new(),
            fail: FailMode::None,
        }
    }

    /// Also accept `secret` as `user`'s token with `scopes`.
    pub fn token(mut self, secret: &str, user: &str, scopes: &[&str]) -> DjinnConfig {
        self.tokens.push(Token {
            secret: secret.to_string(),
            user: user.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Start in failure mode `fail` (see also [`DjinnServer::set_fail_mode`]).
    pub fn fail(mut self, fail: FailMode) -> DjinnConfig {
        self.fail = fail;
        self
    }
}

/// How an image reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKind {
    Raw,
    Multipart,
}

/// An image the fake has accepted, with where its bytes are on disk.
#[derive(Clone, Debug)]
pub struct StoredImage {
    pub id: u64,
    pub name: String,
    /// The namespace as the API reports it: as sent, or the user's name for their own space.
    pub namespace: String,
    /// The namespace's owner: the `@owner` part, or the uploading user.
    pub owner: String,
    /// The uploading token's user.
    pub user: String,
    pub path: PathBuf,
    pub size: u64,
    pub via: UploadKind,
    pub created_at: String,
    namespace_path: String,
    namespace_id: u64,
    user_id: u64,
}

impl StoredImage {
    /// The JSON object Djinn answers with for this image.
    pub fn json(&self, base_url: &str) -> Value {
        let url = format!("{base_url}/images/{}", self.id);
        json!({
            "id": self.id,
            "author_id": self.user_id,
            "user_id": self.user_id,
            "namespace_id": self.namespace_id,
            "driver": "qemu",
            "name": self.name,
            "created_at": self.created_at,
            "url": url,
            "namespace": self.namespace,
            "download": url,
        })
    }
}

/// One request as the fake saw it, kept so tests can inspect what a client really sent.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Every header line in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes the server read (after chunked decoding).
    pub body_bytes: u64,
    /// The status answered; `None` when the server hung up without answering.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// The fake server: listens on a random loopback port until dropped.
pub struct DjinnServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    _storage: tempfile::TempDir,
}

struct Shared {
    base_url: String,
    storage: PathBuf,
    tokens: Vec<Token>,
    fail: Mutex<FailMode>,
    state: Mutex<State>,
    stopping: AtomicBool,
    connections: Mutex<Vec<Connection>>,
}

/// A connection being served: a second handle on its socket, so dropping the server can shut
/// it down. Removed by its own thread when it ends — a handle kept past that would keep the
/// socket open, and a client still writing a body the server stopped reading would wait
/// forever instead of being reset.
struct Connection {
    id: u64,
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    images: Vec<StoredImage>,
    requests: Vec<RecordedRequest>,
    upload_count: usize,
    last_id: u64,
    last_part: u64,
    users: HashMap<String, u64>,
    namespaces: HashMap<(String, String), u64>,
}

impl DjinnServer {
    /// Bind `127.0.0.1:0` and serve `config` on background threads.
    pub fn start(config: DjinnConfig) -> DjinnServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the fake Djinn server");
        let addr = listener.local_addr().expect("fake Djinn address");
        let storage = tempfile::Builder::new()
            .prefix("kiln-fake-djinn-")
            .tempdir()
            .expect("fake Djinn storage dir");
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            storage: storage.path().to_path_buf(),
            tokens: config.tokens,
            fail: Mutex::new(config.fail),
            state: Mutex::new(State::default()),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("djinn-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn the fake Djinn acceptor")
        };
        DjinnServer {
            shared,
            addr,
            acceptor: Some(acceptor),
            _storage: storage,
        }
    }

    /// The API base, `http://127.0.0.1:PORT`; routes are `/images` and `/images/ID` under it.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Change how `POST /images` fails from the next request on.
    pub fn set_fail_mode(&self, fail: FailMode) {
        *lock(&self.shared.fail) = fail;
    }

    /// The stored images, oldest first.
    pub fn images(&self) -> Vec<StoredImage> {
        lock(&self.shared.state).images.clone()
    }

    /// Where image `id`'s bytes are, if it is stored.
    pub fn stored_path(&self, id: u64) -> Option<PathBuf> {
        lock(&self.shared.state)
            .images
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.path.clone())
    }

    /// Image `id`'s bytes read into memory (for small test images); panics if it is not stored.
    pub fn stored_bytes(&self, id: u64) -> Vec<u8> {
        let path = self
            .stored_path(id)
            .unwrap_or_else(|| panic!("image {id} is not stored"));
        std::fs::read(path).expect("read a stored image")
    }

    /// Every request seen so far, in the order they were answered (or hung up on).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// How many `POST /images` requests arrived, whatever their outcome.
    pub fn upload_count(&self) -> usize {
        lock(&self.shared.state).upload_count
    }
}

impl Drop for DjinnServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for connection in &connections {
            let _ = connection.stream.shutdown(Shutdown::Both);
        }
        for thread in connections.into_iter().filter_map(|c| c.thread) {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for (id, stream) in (0u64..).zip(listener.incoming()) {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        // Listed before the thread starts, so the thread's own removal always finds it.
        lock(&shared.connections).push(Connection {
            id,
            stream: handle,
            thread: None,
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("djinn-conn".into())
                .spawn(move || {
                    serve_connection(stream, &shared);
                    lock(&shared.connections).retain(|c| c.id != id);
                })
        };
        let mut connections = lock(&shared.connections);
        match thread {
            Ok(thread) => {
                if let Some(connection) = connections.iter_mut().find(|c| c.id == id) {
                    connection.thread = Some(thread);
                }
            }
            Err(_) => connections.retain(|c| c.id != id),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing

/// A parsed request line and header block.
struct Head {
    method: String,
    target: String,
    keep_alive: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of query parameter `key`, percent-decoded.
    fn query(&self, key: &str) -> Option<String> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent_decode(k) == key)
            .map(|(_, v)| percent_decode(v))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How the current request's body is delimited, and how much of it is left.
enum Framing {
    Length(u64),
    Chunked { left_in_chunk: u64, done: bool },
}

/// One client connection; `Read` yields the current request's body.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    framing: Framing,
    /// The client sent `Expect: 100-continue` and is waiting for it before sending the body.
    continue_pending: bool,
    body_read: u64,
}

fn bad_request(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// One CRLF-terminated line (without the line end), at most MAX_LINE long; `None` at EOF.
fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 >= MAX_LINE {
            bad_request("header line too long")
        } else {
            io::ErrorKind::UnexpectedEof.into()
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad_request("header line is not UTF-8"))
}

impl Conn {
    /// The next request's head, and the body framing set up for it; `None` at a clean EOF.
    fn read_head(&mut self) -> io::Result<Option<Head>> {
        let request_line = loop {
            match read_line(&mut self.reader)? {
                None => return Ok(None),
                Some(line) if line.is_empty() => continue,
                Some(line) => break line,
            }
        };
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_request("malformed request line"));
        };
        if !target.starts_with('/') {
            return Err(bad_request("request target must be a path"));
        }
        let http11 = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(bad_request("unsupported HTTP version")),
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(bad_request("too many headers"));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad_request("malformed header line"));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad_request("malformed header name"));
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let has_token = |name: &str, token: &str| {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        let keep_alive = http11 && !has_token("connection", "close");
        let expects_continue = has_token("expect", "100-continue");

        let transfer_encoding = header(&headers, "transfer-encoding");
        self.framing = if let Some(te) = transfer_encoding {
            let last = te.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(bad_request("unsupported Transfer-Encoding"));
            }
            Framing::Chunked {
                left_in_chunk: 0,
                done: false,
            }
        } else {
            let mut length = None;
            for (_, value) in headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                let n: u64 = value
                    .parse()
                    .map_err(|_| bad_request("malformed Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad_request("conflicting Content-Length headers"));
                }
                length = Some(n);
            }
            Framing::Length(length.unwrap_or(0))
        };
        self.body_read = 0;
        self.continue_pending = expects_continue && !self.body_done();
        Ok(Some(Head {
            method: method.to_string(),
            target: target.to_string(),
            keep_alive,
            headers,
        }))
    }

    fn body_done(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Chunked { done: true, .. }
        )
    }

    /// Read and discard the rest of the body.
    fn drain_body(&mut self) -> io::Result<u64> {
        copy_with_buffer(self, &mut io::sink())
    }

    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let line = read_line(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let size = line.split(';').next().unwrap_or("").trim();
        u64::from_str_radix(size, 16).map_err(|_| bad_request("malformed chunk size"))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.body_done() {
            return Ok(0);
        }
        if self.continue_pending {
            self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.continue_pending = false;
        }
        let want = match self.framing {
            Framing::Length(left) => left,
            Framing::Chunked {
                left_in_chunk: 0, ..
            } => {
                let size = self.read_chunk_size()?;
                if size == 0 {
                    // Trailer fields, then the blank line that ends the body.
                    while !read_line(&mut self.reader)?
                        .ok_or(io::ErrorKind::UnexpectedEof)?
                        .is_empty()
                    {}
                    self.framing = Framing::Chunked {
                        left_in_chunk: 0,
                        done: true,
                    };
                    return Ok(0);
                }
                size
            }
            Framing::Chunked { left_in_chunk, .. } => left_in_chunk,
        };
        let limit = buf.len().min(usize::try_from(want).unwrap_or(usize::MAX));
        let n = self.reader.read(&mut buf[..limit])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let left = want - n as u64;
        match &mut self.framing {
            Framing::Length(l) => *l = left,
            Framing::Chunked { left_in_chunk, .. } => {
                *left_in_chunk = left;
                if left == 0 && !read_line(&mut self.reader)?.is_some_and(|l| l.is_empty()) {
                    return Err(bad_request("chunk data not followed by CRLF"));
                }
            }
        }
        self.body_read += n as u64;
        Ok(n)
    }
}

/// Copy all of `from` into `to` through one large buffer; the byte count.
fn copy_with_buffer(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

/// What the server answers; `None` in its place means "hang up without answering".
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
}

enum ReplyBody {
    Empty,
    Json(Vec<u8>),
    File(PathBuf),
}

impl Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(value.to_string().into_bytes()),
        }
    }

    fn message(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({ "message": message }))
    }

    /// 400 with Djinn's field-error shape `{"field": ["message"]}`.
    fn field_error(field: &str, message: &str) -> Reply {
        Reply::json(400, json!({ field: [message] }))
    }

    fn not_found() -> Reply {
        Reply::message(404, "not found")
    }

    fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

fn write_reply(writer: &mut TcpStream, reply: &Reply, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut file = None;
    match &reply.body {
        ReplyBody::Empty => {}
        ReplyBody::Json(bytes) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            bytes.len()
        )),
        ReplyBody::File(path) => {
            let f = File::open(path)?;
            let len = f.metadata()?.len();
            head.push_str(&format!(
                "Content-Type: {QEMU_DISK}\r\nContent-Length: {len}\r\n"
            ));
            file = Some(f);
        }
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    match (&reply.body, file) {
        (ReplyBody::Json(bytes), _) => writer.write_all(bytes)?,
        (_, Some(mut f)) => {
            io::copy(&mut f, writer)?;
        }
        _ => {}
    }
    writer.flush()
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut conn = Conn {
        reader: BufReader::with_capacity(READ_BUFFER, stream),
        writer,
        framing: Framing::Length(0),
        continue_pending: false,
        body_read: 0,
    };
    loop {
        let head = match conn.read_head() {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let reply = Reply::message(400, &e.to_string());
                    let _ = write_reply(&mut conn.writer, &reply, true);
                }
                let _ = conn.writer.shutdown(Shutdown::Both);
                return;
            }
        };
        let keep_alive = handle(&mut conn, shared, &head);
        if !keep_alive || shared.stopping.load(Ordering::SeqCst) {
            let _ = conn.writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Answer one request; whether the connection can carry another.
fn handle(conn: &mut Conn, shared: &Shared, head: &Head) -> bool {
    let reply = route(conn, shared, head);
    let mut close = !head.keep_alive;
    if reply.is_some() && !conn.body_done() {
        if conn.continue_pending {
            // The client is still waiting to send the body: answer and hang up instead.
            close = true;
        } else if conn.drain_body().is_err() {
            close = true;
        }
    }
    let recorded = RecordedRequest {
        method: head.method.clone(),
        target: head.target.clone(),
        headers: head.headers.clone(),
        body_bytes: conn.body_read,
        status: reply.as_ref().map(|r| r.status),
    };
    // Recorded before answering, so a test that has its answer also sees the record.
    lock(&shared.state).requests.push(recorded);
    match reply {
        None => false,
        Some(reply) => write_reply(&mut conn.writer, &reply, close).is_ok() && !close,
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

fn route(conn: &mut Conn, shared: &Shared, head: &Head) -> Option<Reply> {
    let path = head.path();
    let id = path
        .strip_prefix("/images/")
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<u64>().ok());
    let reply = match (head.method.as_str(), path, id) {
        ("POST", "/images", _) => return post_image(conn, shared, head),
        ("GET", "/images", _) => list_images(shared, head),
        ("GET", _, Some(id)) => get_image(shared, head, id),
        ("DELETE", _, Some(id)) => delete_image(shared, head, id),
        _ => Reply::not_found(),
    };
    Some(reply)
}

/// The token in `Authorization: Bearer TOKEN` if it is known (401) and has `scope` (403).
fn authorize<'a>(shared: &'a Shared, head: &Head, scope: &str) -> Result<&'a Token, Reply> {
    let Some(value) = head.header("authorization") else {
        return Err(Reply::message(401, "missing Authorization header"));
    };
    let secret = match value.split_once(' ') {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => secret.trim(),
        _ => return Err(Reply::message(401, "Authorization must be Bearer TOKEN")),
    };
    let Some(token) = shared.tokens.iter().find(|t| t.secret == secret) else {
        return Err(Reply::message(401, "invalid token"));
    };
    if !token.scopes.iter().any(|s| s == scope) {
        return Err(Reply::message(
            403,
            &format!("token lacks the {scope} scope"),
        ));
    }
    Ok(token)
}

fn post_image(conn: &mut Conn, shared: &Shared, head: &Head) -> Option<Reply> {
    lock(&shared.state).upload_count += 1;
    let fail = *lock(&shared.fail);
    match fail {
        FailMode::None => {}
        FailMode::Status500 => {
            let _ = conn.drain_body();
            return Some(Reply::message(500, "internal server error"));
        }
        FailMode::CloseAfter(n) => {
            let _ = copy_with_buffer(&mut conn.by_ref().take(n), &mut io::sink());
            return None;
        }
    }
    let token = match authorize(shared, head, "image:write") {
        Ok(token) => token,
        Err(reply) => return Some(reply),
    };
    let content_type = head.header("content-type").unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(QEMU_DISK) {
        post_raw(conn, shared, head, token)
    } else if mime.eq_ignore_ascii_case("multipart/form-data") {
        post_multipart(conn, shared, token, content_type)
    } else {
        Some(Reply::message(
            415,
            &format!("Content-Type must be {QEMU_DISK} or multipart/form-data, not {mime:?}"),
        ))
    }
}

/// Where an upload goes, once its name and namespace passed the checks.
struct Target {
    name: String,
    namespace: String,
    owner: String,
    namespace_path: String,
}

/// Name present and valid, free in the namespace, namespace valid — in that order.
fn check_target(
    shared: &Shared,
    token: &Token,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<Target, Reply> {
    let name = name.unwrap_or("");
    if name.is_empty() {
        return Err(Reply::field_error("name", "name is required"));
    }
    if !is_name(name) {
        return Err(Reply::field_error(
            "name",
            "name can only contain letters, numbers, dashes, and underscores",
        ));
    }
    let namespace = namespace.filter(|n| !n.is_empty());
    let target = match namespace {
        None => Target {
            name: name.to_string(),
            namespace: token.user.clone(),
            owner: token.user.clone(),
            namespace_path: String::new(),
        },
        Some(ns) => {
            let (path, owner) = ns.split_once('@').unwrap_or((ns, &token.user));
            Target {
                name: name.to_string(),
                namespace: ns.to_string(),
                owner: owner.to_string(),
                namespace_path: path.to_string(),
            }
        }
    };
    if lock(&shared.state).images.iter().any(|i| target.holds(i)) {
        return Err(Reply::field_error("name", "image already exists"));
    }
    if namespace.is_some_and(|ns| !is_namespace(ns)) {
        return Err(Reply::field_error(
            "namespace",
            "namespace must be a path of letters and slashes, optionally followed by @owner",
        ));
    }
    Ok(target)
}

impl Target {
    /// `image` already has this target's name in this target's namespace.
    fn holds(&self, image: &StoredImage) -> bool {
        image.name == self.name
            && image.owner == self.owner
            && image.namespace_path == self.namespace_path
    }
}

/// `^[a-zA-Z0-9_-]+$`
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `^[a-zA-Z/]+(@[a-zA-Z0-9_-]+)?$`
fn is_namespace(s: &str) -> bool {
    let (path, owner) = match s.split_once('@') {
        Some((path, owner)) => (path, Some(owner)),
        None => (s, None),
    };
    !path.is_empty()
        && path.bytes().all(|b| b.is_ascii_alphabetic() || b == b'/')
        && owner.is_none_or(is_name)
}

/// A file being received: counts bytes and keeps the first four for the magic check.
struct Upload {
    file: File,
    path: PathBuf,
    size: u64,
    magic: Vec<u8>,
}

impl Upload {
    fn create(shared: &Shared) -> io::Result<Upload> {
        let part = {
            let mut state = lock(&shared.state);
            state.last_part += 1;
            state.last_part
        };
        let path = shared.storage.join(format!("upload-{part}.part"));
        Ok(Upload {
            file: File::create(&path)?,
            path,
            size: 0,
            magic: Vec::with_capacity(4),
        })
    }

    fn is_qcow2(&self) -> bool {
        self.magic == QCOW2_MAGIC
    }

    fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        let want = (4 - self.magic.len()).min(n);
        self.magic.extend_from_slice(&buf[..want]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A body read error: malformed framing gets a 400, a vanished client gets nothing.
fn body_error(e: io::Error) -> Option<Reply> {
    (e.kind() == io::ErrorKind::InvalidData).then(|| Reply::message(400, &e.to_string()))
}

fn post_raw(conn: &mut Conn, shared: &Shared, head: &Head, token: &Token) -> Option<Reply> {
    let name = head.query("name");
    let namespace = head.query("namespace");
    let target = match check_target(shared, token, name.as_deref(), namespace.as_deref()) {
        Ok(target) => target,
        Err(reply) => return Some(reply),
    };
    let mut upload = match Upload::create(shared) {
        Ok(upload) => upload,
        Err(e) => return Some(Reply::message(500, &format!("storage: {e}"))),
    };
    if let Err(e) = copy_with_buffer(conn, &mut upload) {
        upload.discard();
        return body_error(e);
    }
    Some(store(shared, token, target, upload, UploadKind::Raw))
}

/// Check the magic, check the name is still free, and keep the upload as a new image.
fn store(shared: &Shared, token: &Token, target: Target, upload: Upload, via: UploadKind) -> Reply {
    if !upload.is_qcow2() {
        upload.discard();
        return Reply::field_error("file", "not a valid QCOW2 file format");
    }
    let mut state = lock(&shared.state);
    if state.images.iter().any(|i| target.holds(i)) {
        drop(state);
        upload.discard();
        return Reply::field_error("name", "image already exists");
    }
    state.last_id += 1;
    let id = state.last_id;
    let path = shared.storage.join(format!("image-{id}.qcow2"));
    if let Err(e) = std::fs::rename(&upload.path, &path) {
        drop(state);
        upload.discard();
        return Reply::message(500, &format!("storage: {e}"));
    }
    let next_user = state.users.len() as u64 + 1;
    let user_id = *state.users.entry(token.user.clone()).or_insert(next_user);
    let next_namespace = state.namespaces.len() as u64 + 1;
    let namespace_id = *state
        .namespaces
        .entry((target.owner.clone(), target.namespace_path.clone()))
        .or_insert(next_namespace);
    let image = StoredImage {
        id,
        name: target.name,
        namespace: target.namespace,
        owner: target.owner,
        user: token.user.clone(),
        path,
        size: upload.size,
        via,
        created_at: rfc3339(SystemTime::now()),
        namespace_path: target.namespace_path,
        namespace_id,
        user_id,
    };
    let body = image.json(&shared.base_url);
    state.images.push(image);
    Reply::json(201, body).with_header("Location", format!("{}/images/{id}", shared.base_url))
}

fn list_images(shared: &Shared, head: &Head) -> Reply {
    if let Err(reply) = authorize(shared, head, "image:read") {
        return reply;
    }
    let page = match head.query("page") {
        None => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(p) if p >= 1 => p,
            _ => return Reply::field_error("page", "page must be a positive integer"),
        },
    };
    let state = lock(&shared.state);
    let start = (page - 1).saturating_mul(PAGE_SIZE);
    let items: Vec<Value> = state
        .images
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|i| i.json(&shared.base_url))
        .collect();
    let mut reply = Reply::json(200, Value::Array(items));
    if state.images.len() > start.saturating_add(PAGE_SIZE) {
        reply = reply.with_header(
            "Link",
            format!(
                "<{}/images?page={}>; rel=\"next\"",
                shared.base_url,
                page + 1
            ),
        );
    }
    reply
}

fn get_image(shared: &Shared, head: &Head, id: u64) -> Reply {
    if let Err(reply) = authorize(shared, head, "image:read") {
        return reply;
    }
    let state = lock(&shared.state);
    let Some(image) = state.images.iter().find(|i| i.id == id) else {
        return Reply::not_found();
    };
    let wants_disk = head
        .header("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains(QEMU_DISK));
    if wants_disk {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::File(image.path.clone()),
        }
    } else {
        Reply::json(200, image.json(&shared.base_url))
    }
}

fn delete_image(shared: &Shared, head: &Head, id: u64) -> Reply {
    if let Err(reply) = authorize(shared, head, "image:write") {
        return reply;
    }
    let mut state = lock(&shared.state);
    let Some(index) = state.images.iter().position(|i| i.id == id) else {
        return Reply::not_found();
    };
    let image = state.images.remove(index);
    let _ = std::fs::remove_file(&image.path);
    Reply {
        status: 204,
        headers: Vec::new(),
        body: ReplyBody::Empty,
    }
}

// ---------------------------------------------------------------------------------------------
// multipart/form-data, streamed

/// The fields of a multipart upload; the file part is already on disk.
struct Form {
    name: Option<String>,
    namespace: Option<String>,
    file: Option<Upload>,
}

impl Form {
    fn discard(self) {
        if let Some(file) = self.file {
            file.discard();
        }
    }
}

fn post_multipart(
    conn: &mut Conn,
    shared: &Shared,
    token: &Token,
    content_type: &str,
) -> Option<Reply> {
    let Some(boundary) = param(content_type, "boundary").filter(|b| (1..=70).contains(&b.len()))
    else {
        return Some(Reply::message(400, "multipart/form-data needs a boundary"));
    };
    let mut form = Form {
        name: None,
        namespace: None,
        file: None,
    };
    if let Err(e) = read_form(conn, shared, &boundary, &mut form) {
        form.discard();
        return body_error(e);
    }
    let target = match check_target(
        shared,
        token,
        form.name.as_deref(),
        form.namespace.as_deref(),
    ) {
        Ok(target) => target,
        Err(reply) => {
            form.discard();
            return Some(reply);
        }
    };
    let Some(upload) = form.file else {
        return Some(Reply::field_error("file", "file is required"));
    };
    Some(store(shared, token, target, upload, UploadKind::Multipart))
}

/// Parameter `key` of a header value like `form-data; name="file"` (quotes removed).
fn param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Parse the multipart body part by part, streaming the `file` part into an [`Upload`].
fn read_form(conn: &mut Conn, shared: &Shared, boundary: &str, form: &mut Form) -> io::Result<()> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // A leading CRLF lets the first boundary match the same delimiter as the others.
    let mut stream = PartStream {
        body: conn,
        buffer: b"\r\n".to_vec(),
    };
    stream.copy_until(&delimiter, &mut io::sink(), u64::MAX)?;
    loop {
        if stream.peek(2)? == b"--" {
            return Ok(()); // closing delimiter; the epilogue is drained by the caller
        }
        if !stream.line()?.trim().is_empty() {
            return Err(bad_request("malformed multipart boundary line"));
        }
        let mut field = None;
        for _ in 0..MAX_HEADERS {
            let line = stream.line()?;
            if line.is_empty() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case("content-disposition")
            {
                field = param(value, "name");
            }
        }
        match field.as_deref() {
            Some("file") if form.file.is_none() => {
                let mut upload = Upload::create(shared)?;
                let copied = stream.copy_until(&delimiter, &mut upload, u64::MAX);
                form.file = Some(upload);
                copied?;
            }
            Some(key @ ("name" | "namespace")) => {
                let mut value = Vec::new();
                stream.copy_until(&delimiter, &mut value, MAX_FIELD)?;
                let value = String::from_utf8_lossy(&value).into_owned();
                let slot = if key == "name" {
                    &mut form.name
                } else {
                    &mut form.namespace
                };
                slot.get_or_insert(value);
            }
            _ => {
                stream.copy_until(&delimiter, &mut io::sink(), u64::MAX)?;
            }
        }
    }
}

/// The request body with a look-ahead buffer, so delimiters can be found across reads.
struct PartStream<'a> {
    body: &'a mut Conn,
    buffer: Vec<u8>,
}

impl PartStream<'_> {
    /// Append one read from the body; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        let len = self.buffer.len();
        self.buffer.resize(len + COPY_BUFFER, 0);
        let n = loop {
            match self.body.read(&mut self.buffer[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buffer.truncate(len + *n.as_ref().unwrap_or(&0));
        Ok(n? > 0)
    }

    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.buffer.len() < n {
            if !self.fill()? {
                return Err(bad_request("multipart body ends early"));
            }
        }
        Ok(&self.buffer[..n])
    }

    /// Copy everything before the next `delimiter` to `out` and consume the delimiter.
    fn copy_until(&mut self, delimiter: &[u8], out: &mut impl Write, limit: u64) -> io::Result<()> {
        let mut written = 0u64;
        loop {
            let found = find(&self.buffer, delimiter);
            let emit = found.unwrap_or(self.buffer.len().saturating_sub(delimiter.len() - 1));
            written += emit as u64;
            if written > limit {
                return Err(bad_request("multipart field too long"));
            }
            out.write_all(&self.buffer[..emit])?;
            if let Some(at) = found {
                self.buffer.drain(..at + delimiter.len());
                return Ok(());
            }
            self.buffer.drain(..emit);
            if !self.fill()? {
                return Err(bad_request(
                    "multipart body ends before its closing boundary",
                ));
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.copy_until(b"\r\n", &mut line, MAX_LINE)?;
        String::from_utf8(line).map_err(|_| bad_request("multipart header is not UTF-8"))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut start = 0;
    while start <= last_start {
        let at = start
            + haystack[start..=last_start]
                .iter()
                .position(|&b| b == needle[0])?;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        start = at + 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `2024-05-06T07:08:09Z`
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
