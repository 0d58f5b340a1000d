//! The answer-file server (Packer's `http_directory`): while an unattended install runs, serve
//! one directory — a preseed, a kickstart, autoinstall user-data, an sshd_config — over HTTP.
//! QEMU's user network forwards the guest's connections to 10.0.2.2:PORT to the host's
//! 127.0.0.1:PORT, so the server listens on loopback only: answer files may hold passwords and
//! nobody else on the network needs them.
//!
//! Only regular files are served. `/` and directories are 404 (no listing: installers fetch the
//! names they were given). A path that leaves the directory — `..`, also percent-encoded, or a
//! symlink pointing out — is 403 and never the file. Other methods than GET and HEAD are 405.
//! Range requests are not supported: the whole file is sent with a 200. Every request is reported
//! as a [`ServedRequest`] so the install step can log what the guest fetched.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use crate::engine::units::human_bytes;

/// Where the guest finds the host's loopback through QEMU's user network (slirp).
pub const GUEST_HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// A connection that has not sent its request headers by then is closed, so a guest (or anything
/// else on loopback) that connects and says nothing holds no task forever. Generous because an
/// installer under software emulation can be slow.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Read size when streaming a file: large enough for ISO-sized files, small enough to keep
/// memory flat however big the file is.
const CHUNK_SIZE: usize = 64 * 1024;

/// A pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One request the guest made, so the install step can show what the installer fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    pub method: Method,
    /// The path as the guest sent it (still percent-encoded, so the log shows exactly that).
    pub path: String,
    pub status: u16,
    /// Body bytes sent: the file's size for a 200 GET, 0 for HEAD.
    pub bytes: u64,
    pub peer: SocketAddr,
}

impl fmt::Display for ServedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match (self.status, &self.method) {
            (200, &Method::HEAD) => write!(f, "guest checked {path} (HEAD), 200"),
            (200, _) => write!(f, "guest fetched {path}, 200, {}", human_bytes(self.bytes)),
            (405, method) => {
                write!(
                    f,
                    "guest asked for {path} with {method}: 405 method not allowed"
                )
            }
            (status, _) => write!(f, "guest asked for {path}: {status} {}", reason(status)),
        }
    }
}

/// `not found` for 404: the status's standard reason, lowercase, for log lines.
fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("unexpected status")
        .to_ascii_lowercase()
}

/// Why the server could not start; reported before any machine boots.
#[derive(Debug, thiserror::Error)]
pub enum AnswerServerError {
    #[error("HTTP directory {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("HTTP directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read HTTP directory {}: {source}", dir.display())]
    Unreadable { dir: PathBuf, source: io::Error },
    #[error(
        "port {0} on 127.0.0.1 is taken; choose another HTTP port, or leave it unset for any free one"
    )]
    PortInUse(u16),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: io::Error },
}

/// A running answer-file server. Dropping it (or [`AnswerServer::shutdown`]) stops serving,
/// closes the listener and ends every open connection.
#[derive(Debug)]
pub struct AnswerServer {
    address: SocketAddr,
    stop: CancellationToken,
    serving: Option<JoinHandle<()>>,
}

impl AnswerServer {
    /// Serve `dir` on 127.0.0.1:`port` (any free port when `None`); each request the guest makes
    /// is sent to `requests`. Must be called inside a tokio runtime.
    pub fn start(
        dir: &Path,
        port: Option<u16>,
        requests: UnboundedSender<ServedRequest>,
    ) -> Result<AnswerServer, AnswerServerError> {
        Self::start_with_header_timeout(dir, port, requests, HEADER_TIMEOUT)
    }

    fn start_with_header_timeout(
        dir: &Path,
        port: Option<u16>,
        requests: UnboundedSender<ServedRequest>,
        header_timeout: Duration,
    ) -> Result<AnswerServer, AnswerServerError> {
        let root = served_root(dir)?;
        let listener = listen_on_loopback(port.unwrap_or(0))?;
        let address = listener
            .local_addr()
            .map_err(|source| AnswerServerError::Listen {
                port: port.unwrap_or(0),
                source,
            })?;
        let site = Arc::new(Site {
            root,
            requests,
            header_timeout,
        });
        let stop = CancellationToken::new();
        let serving = tokio::spawn(accept_connections(listener, site, stop.clone()));
        tracing::info!(%address, dir = %dir.display(), "answer-file server started");
        Ok(AnswerServer {
            address,
            stop,
            serving: Some(serving),
        })
    }

    /// The port on 127.0.0.1 the server listens on (the one the guest reaches on 10.0.2.2).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `http://10.0.2.2:PORT`: the base URL to put into the installer's boot command.
    pub fn guest_url(&self) -> String {
        format!("http://{GUEST_HOST_ADDRESS}:{}", self.port())
    }

    /// Stop serving and wait until the listener and every connection are closed.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(serving) = self.serving.take()
            && let Err(error) = serving.await
        {
            tracing::warn!("the answer-file server ended badly: {error}");
        }
    }
}

impl Drop for AnswerServer {
    fn drop(&mut self) {
        self.stop.cancel();
        // Aborting drops the listener and the connection set, which aborts every connection.
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// What every connection needs: the directory, where reports go, how long headers may take.
struct Site {
    /// Canonical, so a resolved file is inside exactly when its real path starts with it.
    root: PathBuf,
    requests: UnboundedSender<ServedRequest>,
    header_timeout: Duration,
}

impl Site {
    fn report(&self, served: ServedRequest) {
        tracing::debug!(%served, peer = %served.peer, "answer-file request");
        // Nobody listening any more is fine: the report is only for the log.
        let _ = self.requests.send(served);
    }
}

/// The canonical path of `dir`, once it is known to be a directory.
fn served_root(dir: &Path) -> Result<PathBuf, AnswerServerError> {
    let unreadable = |source| AnswerServerError::Unreadable {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(AnswerServerError::Missing(dir.to_path_buf()));
        }
        Err(error) => return Err(unreadable(error)),
        Ok(metadata) if !metadata.is_dir() => {
            return Err(AnswerServerError::NotADirectory(dir.to_path_buf()));
        }
        Ok(_) => {}
    }
    std::fs::canonicalize(dir).map_err(unreadable)
}

fn listen_on_loopback(port: u16) -> Result<TcpListener, AnswerServerError> {
    let listen_error = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => AnswerServerError::PortInUse(port),
        _ => AnswerServerError::Listen { port, source },
    };
    // Bound synchronously so a taken port is an error from `start`, before any machine boots.
    let listener =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    TcpListener::from_std(listener).map_err(listen_error)
}

/// Accept until stopped, one task per connection so a slow or silent client blocks no other.
async fn accept_connections(listener: TcpListener, site: Arc<Site>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::warn!("an answer-file connection failed: {error}");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, site.clone()));
                }
                Err(error) => {
                    tracing::warn!("answer-file server could not accept a connection: {error}");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, site: Arc<Site>) {
    let header_timeout = site.header_timeout;
    let service = service_fn(move |request| answer(request, peer, site.clone()));
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::warn!(%peer, "answer-file connection closed: {error}");
    }
}

type Body = BoxBody<Bytes, io::Error>;

/// A response and how many body bytes it carries, for the report.
struct Reply {
    response: Response<Body>,
    body_bytes: u64,
}

async fn answer(
    request: Request<Incoming>,
    peer: SocketAddr,
    site: Arc<Site>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let with_body = method != Method::HEAD;
    let reply = match method {
        Method::GET | Method::HEAD => match open_served_file(&site.root, &path).await {
            Ok(found) => file_reply(found, with_body),
            Err(status) => refusal(status, with_body),
        },
        _ => refusal(StatusCode::METHOD_NOT_ALLOWED, with_body),
    };
    site.report(ServedRequest {
        method,
        path,
        status: reply.response.status().as_u16(),
        bytes: reply.body_bytes,
        peer,
    });
    Ok(reply.response)
}

/// An open file ready to stream, with what its response needs.
struct FoundFile {
    file: File,
    len: u64,
    content_type: &'static str,
}

/// Find the file a request path names, or the status that says why it is not served.
async fn open_served_file(root: &Path, request_path: &str) -> Result<FoundFile, StatusCode> {
    let relative = relative_path(request_path)?;
    let real = tokio::fs::canonicalize(root.join(&relative))
        .await
        .map_err(status_for)?;
    // A symlink may point anywhere; only what really lies under the directory is served.
    if !real.starts_with(root) {
        return Err(StatusCode::FORBIDDEN);
    }
    // No listing for directories, and opening a FIFO would block (a device might never end).
    if !tokio::fs::metadata(&real)
        .await
        .map_err(status_for)?
        .is_file()
    {
        return Err(StatusCode::NOT_FOUND);
    }
    let file = File::open(&real).await.map_err(status_for)?;
    let len = file.metadata().await.map_err(status_for)?.len();
    Ok(FoundFile {
        file,
        len,
        content_type: content_type(&relative),
    })
}

/// The request path as a path under the served directory. Decoded first, so `%2e%2e` is a `..`
/// like any other, and any `..` is refused outright rather than resolved.
fn relative_path(request_path: &str) -> Result<PathBuf, StatusCode> {
    let decoded = percent_decode(request_path).ok_or(StatusCode::NOT_FOUND)?;
    let mut relative = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(StatusCode::FORBIDDEN),
            // Has no `/` (it was split on), so it can only add one name, never restart at `/`.
            name => relative.push(name),
        }
    }
    Ok(relative)
}

/// `%2e%2e` → `..`; `None` for a broken escape, a NUL or bytes that are not UTF-8. Ten lines
/// here rather than `percent-encoding`, which kiln only has through reqwest's `url`.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    if decoded.contains(&0) {
        return None;
    }
    String::from_utf8(decoded).ok()
}

fn status_for(error: io::Error) -> StatusCode {
    match error.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::InvalidFilename => StatusCode::NOT_FOUND,
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => {
            tracing::warn!("answer-file server could not read a file: {error}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Answer files are text the installer parses; it does not look at the type, but a person
/// checking with curl sees them instead of a download prompt.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        None
        | Some(
            "cfg" | "conf" | "txt" | "ks" | "preseed" | "seed" | "sh" | "yaml" | "yml" | "ini",
        ) => "text/plain",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// 200 with the file streamed in chunks, never read whole into memory.
fn file_reply(found: FoundFile, with_body: bool) -> Reply {
    let FoundFile {
        file,
        len,
        content_type,
    } = found;
    let (body, body_bytes) = if with_body {
        // `take`: a file that grows while being sent must not overrun its Content-Length.
        let chunks = ReaderStream::with_capacity(file.take(len), CHUNK_SIZE).map_ok(Frame::data);
        (StreamBody::new(chunks).boxed(), len)
    } else {
        (empty_body(), 0)
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, len)
        .body(body)
        .expect("a status and two valid headers make a valid response");
    Reply {
        response,
        body_bytes,
    }
}

/// A short plain-text error (`404 not found`), with `Allow` on a 405.
fn refusal(status: StatusCode, with_body: bool) -> Reply {
    let text = format!("{} {}\n", status.as_u16(), reason(status.as_u16()));
    let len = text.len() as u64;
    let (body, body_bytes) = if with_body {
        (Full::new(Bytes::from(text)).map_err(never).boxed(), len)
    } else {
        (empty_body(), 0)
    };
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .header(CONTENT_LENGTH, len);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response = response.header(ALLOW, "GET, HEAD");
    }
    let response = response
        .body(body)
        .expect("a status and valid headers make a valid response");
    Reply {
        response,
        body_bytes,
    }
}

fn empty_body() -> Body {
    Empty::new().map_err(never).boxed()
}

fn never(never: Infallible) -> io::Error {
    match never {}
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc::{self, UnboundedReceiver};

    /// How long any single network step in these tests may take before the test fails.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A served directory `answers/` with a secret next to it that must never be served.
    struct Fixture {
        _temp: tempfile::TempDir,
        answers: PathBuf,
        secret: PathBuf,
    }

    const SECRET: &[u8] = b"root:the-secret-outside-the-http-directory\n";

    fn fixture() -> Fixture {
        let temp = tempfile::tempdir().unwrap();
        let answers = temp.path().join("answers");
        std::fs::create_dir(&answers).unwrap();
        std::fs::create_dir(answers.join("sub")).unwrap();
        let secret = temp.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        Fixture {
            _temp: temp,
            answers,
            secret,
        }
    }

    fn start(dir: &Path) -> (AnswerServer, UnboundedReceiver<ServedRequest>) {
        let (requests, reports) = mpsc::unbounded_channel();
        let server = AnswerServer::start(dir, None, requests).unwrap();
        (server, reports)
    }

    /// A response as read off the wire by a client that trusts nothing.
    #[derive(Debug)]
    struct Fetched {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Fetched {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    /// Raw TCP, because HTTP clients normalise `..` away before sending.
    async fn send(port: u16, method: &str, target: &str) -> Fetched {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let request =
            format!("{method} {target} HTTP/1.1\r\nHost: 10.0.2.2\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
            .await
            .expect("the server closes the connection after answering")
            .unwrap();
        parse_response(&raw)
    }

    fn parse_response(raw: &[u8]) -> Fetched {
        let end = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a complete response head");
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_string(), value.trim().to_string())
            })
            .collect();
        Fetched {
            status: status.parse().unwrap(),
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    async fn get(port: u16, target: &str) -> Fetched {
        send(port, "GET", target).await
    }

    async fn next_report(reports: &mut UnboundedReceiver<ServedRequest>) -> ServedRequest {
        tokio::time::timeout(PATIENCE, reports.recv())
            .await
            .expect("every request is reported")
            .unwrap()
    }

    /// Bytes that differ at every offset, so a reordered or shifted chunk shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[tokio::test]
    async fn serves_a_file_byte_for_byte_and_reports_it() {
        let fixture = fixture();
        let content = pattern(2150);
        std::fs::write(fixture.answers.join("preseed.cfg"), &content).unwrap();
        let (server, mut reports) = start(&fixture.answers);

        let fetched = get(server.port(), "/preseed.cfg").await;

        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.header("content-length"), Some("2150"));
        assert_eq!(fetched.header("content-type"), Some("text/plain"));
        assert!(fetched.body == content, "the body differs from the file");
        let report = next_report(&mut reports).await;
        assert_eq!(report.path, "/preseed.cfg");
        assert_eq!((report.status, report.bytes), (200, 2150));
        assert_eq!(report.peer.ip(), Ipv4Addr::LOCALHOST);
        assert_eq!(
            report.to_string(),
            "guest fetched /preseed.cfg, 200, 2.1 KiB"
        );
    }

    #[tokio::test]
    async fn head_sends_the_length_without_a_body() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("ks.cfg"), pattern(1000)).unwrap();
        let (server, mut reports) = start(&fixture.answers);

        let fetched = send(server.port(), "HEAD", "/ks.cfg").await;

        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.header("content-length"), Some("1000"));
        assert_eq!(fetched.body, b"");
        let report = next_report(&mut reports).await;
        assert_eq!((report.status, report.bytes), (200, 0));
        assert_eq!(report.to_string(), "guest checked /ks.cfg (HEAD), 200");
    }

    #[tokio::test]
    async fn a_missing_file_is_404_and_reported_as_such() {
        let fixture = fixture();
        let (server, mut reports) = start(&fixture.answers);

        let fetched = get(server.port(), "/late.sh").await;

        assert_eq!(fetched.status, 404);
        assert_eq!(fetched.body, b"404 not found\n");
        let report = next_report(&mut reports).await;
        assert_eq!(report.status, 404);
        assert_eq!(
            report.to_string(),
            "guest asked for /late.sh: 404 not found"
        );
    }

    #[tokio::test]
    async fn the_root_and_directories_are_404_without_a_listing() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("sub/user-data"), b"#cloud-config\n").unwrap();
        let (server, _reports) = start(&fixture.answers);

        for target in ["/", "/sub", "/sub/"] {
            let fetched = get(server.port(), target).await;
            assert_eq!(fetched.status, 404, "{target}");
            assert_eq!(fetched.body, b"404 not found\n", "{target}");
        }
        let nested = get(server.port(), "/sub/user-data").await;
        assert_eq!(nested.status, 200);
        assert_eq!(nested.body, b"#cloud-config\n");
    }

    #[tokio::test]
    async fn percent_encoded_names_are_decoded() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("my answers.cfg"), b"d-i x y\n").unwrap();
        let (server, _reports) = start(&fixture.answers);

        let fetched = get(server.port(), "/my%20answers.cfg").await;

        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.body, b"d-i x y\n");
    }

    #[tokio::test]
    async fn paths_leaving_the_directory_are_refused() {
        let fixture = fixture();
        let (server, mut reports) = start(&fixture.answers);
        assert!(
            fixture.answers.join("../secret").exists(),
            "the bait is there"
        );

        for target in [
            "/../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/..%2fsecret",
            "/sub/../../secret",
            "/sub/%2e%2e/%2e%2e/secret",
            "//../secret",
            "http://10.0.2.2/../secret",
        ] {
            let fetched = get(server.port(), target).await;
            assert_eq!(fetched.status, 403, "{target}");
            assert!(!contains(&fetched.body, SECRET), "{target} leaked the file");
            assert_eq!(next_report(&mut reports).await.status, 403, "{target}");
        }
        let passwd = get(server.port(), "/../../../../../../../../etc/passwd").await;
        assert_eq!(passwd.status, 403);
    }

    #[tokio::test]
    async fn symlinks_are_served_only_when_they_stay_inside() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("real.cfg"), b"inside\n").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, fixture.answers.join(name)).unwrap()
        };
        link(&fixture.secret, "secret.cfg");
        link(Path::new("/etc/passwd"), "passwd");
        link(fixture.secret.parent().unwrap(), "parent");
        link(Path::new("real.cfg"), "alias.cfg");
        let (server, _reports) = start(&fixture.answers);

        for target in ["/secret.cfg", "/passwd", "/parent/secret"] {
            let fetched = get(server.port(), target).await;
            assert_eq!(fetched.status, 403, "{target}");
            assert!(!contains(&fetched.body, SECRET), "{target} leaked the file");
            assert!(
                !contains(&fetched.body, b"root:"),
                "{target} leaked a passwd"
            );
        }
        let inside = get(server.port(), "/alias.cfg").await;
        assert_eq!(
            (inside.status, inside.body.as_slice()),
            (200, &b"inside\n"[..])
        );
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[tokio::test]
    async fn other_methods_are_405_with_allow() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("preseed.cfg"), b"x").unwrap();
        let (server, mut reports) = start(&fixture.answers);

        for method in ["POST", "PUT", "DELETE"] {
            let fetched = send(server.port(), method, "/preseed.cfg").await;
            assert_eq!(fetched.status, 405, "{method}");
            assert_eq!(fetched.header("allow"), Some("GET, HEAD"));
        }
        let report = next_report(&mut reports).await;
        assert_eq!(
            report.to_string(),
            "guest asked for /preseed.cfg with POST: 405 method not allowed"
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_refused_before_listening() {
        let fixture = fixture();
        let missing = fixture.answers.join("nope");
        let (requests, _reports) = mpsc::unbounded_channel();

        let error = AnswerServer::start(&missing, None, requests).unwrap_err();

        assert!(matches!(error, AnswerServerError::Missing(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("HTTP directory {} does not exist", missing.display())
        );
    }

    #[tokio::test]
    async fn a_file_instead_of_a_directory_is_refused() {
        let fixture = fixture();
        let (requests, _reports) = mpsc::unbounded_channel();

        let error = AnswerServer::start(&fixture.secret, None, requests).unwrap_err();

        assert!(matches!(error, AnswerServerError::NotADirectory(_)));
        assert_eq!(
            error.to_string(),
            format!(
                "HTTP directory {} is not a directory",
                fixture.secret.display()
            )
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_named_in_the_error() {
        let fixture = fixture();
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let (requests, _reports) = mpsc::unbounded_channel();

        let error = AnswerServer::start(&fixture.answers, Some(port), requests).unwrap_err();

        assert!(matches!(error, AnswerServerError::PortInUse(p) if p == port));
        assert!(
            error.to_string().contains(&format!("port {port} ")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_given_port_is_used() {
        let fixture = fixture();
        let port = {
            let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            probe.local_addr().unwrap().port()
        };
        let (requests, _reports) = mpsc::unbounded_channel();

        let server = AnswerServer::start(&fixture.answers, Some(port), requests).unwrap();

        assert_eq!(server.port(), port);
        assert_eq!(server.guest_url(), format!("http://10.0.2.2:{port}"));
        assert_eq!(get(port, "/missing").await.status, 404);
    }

    #[tokio::test]
    async fn listens_on_loopback_only() {
        let fixture = fixture();
        let (server, _reports) = start(&fixture.answers);

        assert_eq!(server.address.ip(), Ipv4Addr::LOCALHOST);
        if let Some(outside) = non_loopback_address() {
            let connected = TcpStream::connect((outside, server.port())).await;
            assert!(connected.is_err(), "reachable on {outside}");
        }
    }

    /// The address this host would send from towards another network, if it has one. A UDP
    /// `connect` only picks a route; no packet leaves.
    fn non_loopback_address() -> Option<std::net::IpAddr> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
        let address = socket.local_addr().ok()?.ip();
        (!address.is_loopback() && !address.is_unspecified()).then_some(address)
    }

    #[tokio::test]
    async fn shutdown_closes_the_listener_and_open_connections() {
        let fixture = fixture();
        let (server, _reports) = start(&fixture.answers);
        let port = server.port();
        let mut silent = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();

        server.shutdown().await;

        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err()
        );
        assert_closed(&mut silent).await;
    }

    #[tokio::test]
    async fn dropping_the_server_closes_the_listener_and_open_connections() {
        let fixture = fixture();
        let (server, _reports) = start(&fixture.answers);
        let port = server.port();
        assert_eq!(get(port, "/missing").await.status, 404);
        let mut silent = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();

        drop(server);

        assert_closed(&mut silent).await;

        // The abort lands when the runtime next polls the task, so allow it a moment.
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            assert!(Instant::now() < deadline, "port {port} still accepts");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn assert_closed(stream: &mut TcpStream) {
        let mut buffer = [0; 64];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the server closes the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    }

    #[tokio::test]
    async fn a_silent_client_does_not_block_others() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("preseed.cfg"), b"d-i\n").unwrap();
        let (server, _reports) = start(&fixture.answers);
        let _silent = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port()))
            .await
            .unwrap();

        let fetched = tokio::time::timeout(PATIENCE, get(server.port(), "/preseed.cfg"))
            .await
            .expect("served while another connection says nothing");

        assert_eq!(fetched.body, b"d-i\n");
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_header_timeout() {
        let fixture = fixture();
        let (requests, _reports) = mpsc::unbounded_channel();
        let server = AnswerServer::start_with_header_timeout(
            &fixture.answers,
            None,
            requests,
            Duration::from_millis(200),
        )
        .unwrap();
        let mut silent = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port()))
            .await
            .unwrap();
        let started = Instant::now();

        assert_closed(&mut silent).await;

        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn garbage_on_one_connection_does_not_stop_the_server() {
        let fixture = fixture();
        std::fs::write(fixture.answers.join("preseed.cfg"), b"d-i\n").unwrap();
        let (server, _reports) = start(&fixture.answers);
        let mut garbage = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port()))
            .await
            .unwrap();
        garbage
            .write_all(b"\x00\x01 not http\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, garbage.read_to_end(&mut answer))
            .await
            .expect("the server closes the broken connection")
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");

        let fetched = get(server.port(), "/preseed.cfg").await;

        assert_eq!(fetched.body, b"d-i\n");
    }

    #[tokio::test]
    async fn a_large_file_streams_intact() {
        let fixture = fixture();
        let content = pattern(32 << 20);
        std::fs::write(fixture.answers.join("big.img"), &content).unwrap();
        let (server, mut reports) = start(&fixture.answers);

        let fetched = get(server.port(), "/big.img").await;

        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.header("content-length"), Some("33554432"));
        assert_eq!(
            fetched.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(fetched.body.len(), content.len());
        assert!(fetched.body == content, "the body differs from the file");
        assert_eq!(next_report(&mut reports).await.bytes, 32 << 20);
    }

    #[test]
    fn percent_decoding_refuses_broken_escapes_and_nul() {
        assert_eq!(percent_decode("/a%20b%2Fc").as_deref(), Some("/a b/c"));
        for broken in ["/%", "/%2", "/%zz", "/%+1", "/%00", "/%ff"] {
            assert_eq!(percent_decode(broken), None, "{broken}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (name, expected) in [
            ("preseed.cfg", "text/plain"),
            ("user-data", "text/plain"),
            ("anaconda.KS", "text/plain"),
            ("autounattend.xml", "application/xml"),
            ("disk.qcow2", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }
}
