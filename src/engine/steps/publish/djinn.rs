//! The Djinn API client: an HTTP client that never follows redirects, the name-taken check
//! that pages through `GET /images`, and `POST /images` with the file streamed as the body,
//! each answer turned into a [`PublishError`] that says what to do.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LINK};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio_util::bytes::Bytes;

use super::compact::{compact, sha256, write_checksum};
use super::{Destination, Meter, Outcome, PublishError, PublishRequest, TOKEN_ENV, io_error};
use crate::engine::host::http::{self, error_chain};
use crate::engine::host::temp_file::{TempFile, parent_dir};
use crate::engine::task::{Cancelled, Reporter};
use crate::engine::units::human_bytes;

/// The content type of a raw qcow2 upload (docs/driver-contract.md §5).
pub const QEMU_DISK: &str = "application/x-qemu-disk";
/// Uploads read the file in blocks this large. Each byte is copied twice, out of the page cache
/// into a block and out of the block into the socket, and the second copy is cheap only while
/// the block is still in the CPU cache: all the blocks together (512 KiB) fit a 1 MiB L2 cache.
/// Measured with benches/upload.sh (2 GiB over loopback on 2 shared cores; the figures are in
/// benches/README.md): with 1 MiB blocks the copy into the socket cost 3-4x the CPU, and on a
/// busy machine the upload often fell behind `curl -T`; with 128 KiB blocks it rarely did. On
/// an idle machine 1 MiB blocks were ahead (fewer thread wake-ups), both well above curl;
/// 64 KiB blocks only cost more wake-ups.
const UPLOAD_BUFFER: usize = 128 << 10;
/// Upload blocks in existence at once: one being read, the others queued or being sent (hyper
/// writes up to three queued blocks in one `writev`). More only enlarge what must stay cached:
/// 8 blocks of 256 KiB were slower than 4.
const UPLOAD_BUFFERS: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `GET /images` page may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// An upload that moves no byte for this long has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long Djinn may take to answer once it has every byte (it stores and checks the file).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of a response body kiln reads (error messages, one page of the image list).
const MAX_ANSWER: usize = 16 << 20;
/// A bound on `Link: rel="next"` pages, against a server that links in circles.
const MAX_PAGES: usize = 10_000;

/// A checked Djinn API base: `…/images` is where images live.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub(super) base: String,
    pub(super) images: Url,
}

pub(super) fn parse_api_url(url: &str) -> Result<(Api, bool), PublishError> {
    let invalid = |why: &str| PublishError::InvalidOption(format!("--url {url}: {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: the URL holds a secret.
        return Err(PublishError::InvalidOption(format!(
            "--url: credentials do not belong in the URL; put the token in {TOKEN_ENV} or the token file"
        )));
    }
    let plain = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => return Err(invalid(&format!("`{other}` is not http or https"))),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("give the API base without a query or fragment"));
    }
    let base = parsed.as_str().trim_end_matches('/').to_string();
    let images = Url::parse(&format!("{base}/images")).map_err(|e| invalid(&e.to_string()))?;
    Ok((Api { base, images }, plain))
}

/// The HTTP client for the API at `base` (named in the error if TLS cannot be set up).
pub(super) fn http_client(base: &str) -> Result<reqwest::Client, PublishError> {
    http::client_builder()
        // A redirected POST cannot replay a streamed body, and must not carry the token away.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        // One long stream: HTTP/2 flow-control windows would only slow it down.
        .http1_only()
        .build()
        .map_err(|e| PublishError::Unreachable {
            url: base.to_string(),
            reason: format!("cannot set up HTTPS: {}", error_chain(&e)),
        })
}

/// Read at most `limit` bytes of a response body, for at most [`LIST_TIMEOUT`]: a server that
/// sends an endless body, or trickles one, gets what arrived by then judged.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let reading = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LIST_TIMEOUT, reading).await;
    body
}

/// Djinn's `{"message": "…"}`, or the start of whatever else the body says.
fn server_message(body: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(message)) = map.get("message")
    {
        return message.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A 400's `{"field": ["message", …]}` as `field: message` lines.
fn field_errors(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        let message = server_message(body);
        return vec![if message.is_empty() {
            "400 Bad Request".to_string()
        } else {
            message
        }];
    };
    let mut lines = Vec::new();
    for (field, value) in &map {
        let messages: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        };
        for message in messages {
            if field == "message" {
                lines.push(message);
            } else {
                lines.push(format!("{field}: {message}"));
            }
        }
    }
    lines
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let link = link.trim();
        let url = link.strip_prefix('<')?.split_once('>')?;
        let is_next = url.1.split(';').any(|param| {
            param.trim().split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        is_next.then(|| url.0.to_string())
    })
}

/// The same scheme, host and port: the token is only ever sent to the server it was given for.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A status with its reason, `401 Unauthorized`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An image of the same name already in the namespace.
#[derive(Debug, PartialEq)]
struct Taken {
    id: Option<u64>,
}

/// Find `name` in `namespace` on one page of `GET /images`; `Err` if the page is not a list.
fn find_in_page(page: &Value, name: &str, namespace: &str) -> Result<Option<Taken>, String> {
    let Value::Array(images) = page else {
        return Err("GET /images did not answer with a list of images".into());
    };
    Ok(images.iter().find_map(|image| {
        let same_name = image.get("name").and_then(Value::as_str) == Some(name);
        let same_namespace = image.get("namespace").and_then(Value::as_str) == Some(namespace);
        (same_name && same_namespace).then(|| Taken {
            id: image.get("id").and_then(Value::as_u64),
        })
    }))
}

/// Counts bytes handed to the HTTP client and reports them as progress.
struct UploadProgress {
    sent: Arc<AtomicU64>,
    meter: Meter,
    reporter: Reporter,
}

impl UploadProgress {
    fn add(&mut self, n: usize) {
        let done = self.sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.meter.update(&self.reporter, done);
    }
}

/// One image on its way to a Djinn server.
pub(super) struct DjinnUpload {
    pub(super) client: reqwest::Client,
    pub(super) authorization: HeaderValue,
    pub(super) api: Api,
    pub(super) name: String,
    pub(super) namespace: Option<crate::engine::namespace::Namespace>,
}

impl DjinnUpload {
    pub(super) async fn publish(
        &self,
        request: &PublishRequest,
        reporter: &Reporter,
    ) -> Result<Outcome, PublishError> {
        match &self.namespace {
            Some(namespace) => {
                reporter.info(format!(
                    "looking for `{}` in {namespace} on {}",
                    self.name, self.api.base
                ));
                let found = tokio::select! {
                    found = self.find_existing(namespace.as_str(), reporter) => found?,
                    _ = reporter.cancelled() => {
                        return Err(PublishError::Cancelled(Cancelled("nothing was published".into())));
                    }
                };
                if let Some(Taken { id }) = found {
                    return Err(PublishError::NameTaken {
                        name: self.name.clone(),
                        namespace: namespace.to_string(),
                        id,
                    });
                }
            }
            None => reporter.info(
                "no namespace given: the image goes to the token owner's own namespace, where Djinn checks the name",
            ),
        }

        let source_dir = parent_dir(&request.image);
        let mut compacted = None;
        let compaction = match request.compact {
            Some(options) => {
                let temp = TempFile::create(&source_dir, &self.name, "compact")
                    .map_err(io_error("cannot create a file in", &source_dir))?;
                let sizes = compact(&request.image, temp.path(), options, reporter).await?;
                compacted = Some(temp);
                Some(sizes)
            }
            None => None,
        };
        let upload_path = compacted
            .as_ref()
            .map_or(request.image.as_path(), TempFile::path);
        let checksum = if request.sha256 {
            Some(sha256(upload_path, reporter).await?)
        } else {
            None
        };
        let transfer = Instant::now();
        let (id, url, bytes) = self.upload(upload_path, reporter).await?;
        let transfer_seconds = transfer.elapsed().as_secs_f64();
        drop(compacted);
        let checksum = match checksum {
            Some(hex) => Some(write_checksum(&source_dir, &self.name, hex)?),
            None => None,
        };
        let destination = Destination::Djinn {
            id,
            url,
            name: self.name.clone(),
            namespace: self.namespace.as_ref().map(ToString::to_string),
        };
        Ok(Outcome {
            destination,
            bytes,
            transfer_seconds,
            compaction,
            checksum,
        })
    }

    fn unreachable(&self, error: &reqwest::Error) -> PublishError {
        let mut reason = error_chain(error);
        if reason.contains("certificate") {
            reason.push_str(
                "; the server's certificate is not trusted here: add its CA to the system trust store (update-ca-certificates)",
            );
        }
        PublishError::Unreachable {
            url: self.api.base.clone(),
            reason,
        }
    }

    fn no_api(&self, detail: impl Into<String>) -> PublishError {
        PublishError::NoApi {
            url: self.api.base.clone(),
            detail: detail.into(),
        }
    }

    /// Page through `GET /images` (the server has no search) for `name` in `namespace`.
    async fn find_existing(
        &self,
        namespace: &str,
        reporter: &Reporter,
    ) -> Result<Option<Taken>, PublishError> {
        let mut next = Some(self.api.images.clone());
        let mut seen = Vec::new();
        while let Some(url) = next.take() {
            if seen.contains(&url) || seen.len() >= MAX_PAGES {
                break;
            }
            seen.push(url.clone());
            let response = self
                .client
                .get(url.clone())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(ACCEPT, "application/json")
                .timeout(LIST_TIMEOUT)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            let status = response.status();
            let link = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            match status {
                StatusCode::OK => {}
                StatusCode::UNAUTHORIZED => {
                    return Err(PublishError::TokenRejected {
                        status: status_text(status),
                    });
                }
                StatusCode::FORBIDDEN => {
                    reporter.warn(
                        "the token may not list images (no image:read scope), so kiln cannot check the name first; Djinn will check it after the upload",
                    );
                    return Ok(None);
                }
                StatusCode::NOT_FOUND => {
                    return Err(self.no_api(format!("GET {url} answered 404 Not Found")));
                }
                other => {
                    let body = read_limited(response, MAX_ANSWER).await;
                    return Err(PublishError::Unexpected {
                        status: format!("{} to GET /images", status_text(other)),
                        message: server_message(&body),
                    });
                }
            }
            let body = read_limited(response, MAX_ANSWER).await;
            let page: Value = serde_json::from_slice(&body)
                .map_err(|_| self.no_api("GET /images did not answer with JSON"))?;
            if let Some(taken) =
                find_in_page(&page, &self.name, namespace).map_err(|e| self.no_api(e))?
            {
                return Ok(Some(taken));
            }
            if let Some(link) = link {
                let target = url.join(&link).map_err(|_| {
                    self.no_api(format!(
                        "GET /images linked to a next page kiln cannot read: {link}"
                    ))
                })?;
                if !same_origin(&target, &self.api.images) {
                    reporter.warn(format!(
                        "GET /images links its next page to another server ({target}); not following it with the token, so the name check is incomplete"
                    ));
                    return Ok(None);
                }
                next = Some(target);
            }
        }
        Ok(None)
    }

    /// `POST /images?name=…&namespace=…` with the file streamed as the body.
    async fn upload(
        &self,
        path: &Path,
        reporter: &Reporter,
    ) -> Result<(Option<u64>, Option<String>, u64), PublishError> {
        let file = File::open(path).map_err(io_error("cannot read", path))?;
        let total = file
            .metadata()
            .map_err(io_error("cannot read", path))?
            .len();
        let mut url = self.api.images.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("name", &self.name);
            if let Some(namespace) = &self.namespace {
                query.append_pair("namespace", namespace.as_str());
            }
        }
        reporter.info(format!(
            "uploading {} ({}) to {}",
            path.display(),
            human_bytes(total),
            self.api.base
        ));
        let sent = Arc::new(AtomicU64::new(0));
        let mut progress = UploadProgress {
            sent: Arc::clone(&sent),
            meter: Meter::new(Some(total)),
            reporter: reporter.clone(),
        };
        progress.meter.update(reporter, 0);
        let body = file_blocks(file).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                progress.add(bytes.len());
            }
            chunk
        });
        let send = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, QEMU_DISK)
            .header(CONTENT_LENGTH, total)
            .header(ACCEPT, "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let sent_so_far = || {
            format!(
                "{} of {} sent",
                human_bytes(sent.load(Ordering::Relaxed)),
                human_bytes(total)
            )
        };
        let response = tokio::select! {
            response = send => response,
            _ = reporter.cancelled() => {
                return Err(PublishError::Cancelled(Cancelled(format!(
                    "the upload stopped with {}; Djinn discards an incomplete upload, nothing was published",
                    sent_so_far()
                ))));
            }
            error = watch_upload(&sent, total) => return Err(error),
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let done = sent.load(Ordering::Relaxed);
                let reason = error_chain(&error);
                return Err(if error.is_connect() {
                    self.unreachable(&error)
                } else if done < total {
                    PublishError::Incomplete(format!(
                        "the connection failed with {} ({reason}); nothing was published, run the command again",
                        sent_so_far()
                    ))
                } else {
                    PublishError::Incomplete(format!(
                        "every byte was sent but the connection ended before Djinn answered ({reason}); run the command again: its name check shows whether the image arrived"
                    ))
                });
            }
        };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(response, MAX_ANSWER).await;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let image: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = image.get("id").and_then(Value::as_u64);
                let url = image
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(location);
                if id.is_none() {
                    reporter.warn("Djinn accepted the image but its answer has no image id");
                }
                Ok((id, url, total))
            }
            StatusCode::BAD_REQUEST => Err(PublishError::Refused(field_errors(&body))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(PublishError::TokenRejected {
                status: status_text(status),
            }),
            StatusCode::NOT_FOUND => Err(self.no_api("POST /images answered 404 Not Found")),
            s if s.is_server_error() => {
                let message = server_message(&body);
                Err(PublishError::Incomplete(format!(
                    "Djinn answered {}{}; run the command again later: its name check shows whether the image arrived",
                    status_text(s),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({message})")
                    }
                )))
            }
            s if s.is_redirection() => Err(PublishError::Unexpected {
                status: status_text(s),
                message: format!(
                    "a redirect to {}; give that as --url",
                    location.as_deref().unwrap_or("an unnamed place")
                ),
            }),
            s => Err(PublishError::Unexpected {
                status: status_text(s),
                message: server_message(&body),
            }),
        }
    }
}

/// A block of the file on its way to the server; dropping it hands the buffer back to the reader.
struct Block {
    data: Vec<u8>,
    len: usize,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = self.recycle.send(std::mem::take(&mut self.data));
    }
}

/// The file as a stream of blocks, read on a blocking thread a few blocks ahead of the network
/// through [`UPLOAD_BUFFERS`] reused buffers: the bytes are copied once out of the page cache
/// and once into the socket, never in between, and nothing is allocated per block. Dropping
/// the stream stops the reader.
fn file_blocks(mut file: File) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let (blocks, receiver) = tokio::sync::mpsc::channel(UPLOAD_BUFFERS);
    let (recycle, returned) = std::sync::mpsc::channel::<Vec<u8>>();
    tokio::task::spawn_blocking(move || {
        let mut made = 0;
        loop {
            let mut data = match returned.try_recv() {
                Ok(data) => data,
                Err(_) if made < UPLOAD_BUFFERS => {
                    made += 1;
                    vec![0u8; UPLOAD_BUFFER]
                }
                // Every buffer is out: wait until the network is done with one.
                Err(_) => match returned.recv() {
                    Ok(data) => data,
                    Err(_) => break,
                },
            };
            match read_full(&mut file, &mut data) {
                Ok(0) => break,
                Ok(len) => {
                    let block = Block {
                        data,
                        len,
                        recycle: recycle.clone(),
                    };
                    if blocks.blocking_send(Ok(Bytes::from_owner(block))).is_err() {
                        break; // the upload ended
                    }
                }
                Err(e) => {
                    let _ = blocks.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|block| (block, receiver))
    })
}

/// Fill `buffer` from `file`; fewer bytes only at the end of the file.
fn read_full(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Resolves with an error when the upload stops moving: no byte for [`STALL_TIMEOUT`] while
/// sending, or no answer for [`ANSWER_TIMEOUT`] once everything was sent.
async fn watch_upload(sent: &AtomicU64, total: u64) -> PublishError {
    let mut last = sent.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if now < total && since.elapsed() >= STALL_TIMEOUT {
            return PublishError::Incomplete(format!(
                "nothing moved for {} s after {} of {}; nothing was published, run the command again",
                STALL_TIMEOUT.as_secs(),
                human_bytes(now),
                human_bytes(total)
            ));
        } else if now >= total && since.elapsed() >= ANSWER_TIMEOUT {
            return PublishError::Incomplete(format!(
                "Djinn did not answer within {} min of receiving the last byte; run the command again: its name check shows whether the image arrived",
                ANSWER_TIMEOUT.as_secs() / 60
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"<https://h/images?page=2>; rel="next""#).as_deref(),
            Some("https://h/images?page=2")
        );
        assert_eq!(
            next_link(
                r#"<https://h/images?page=1>; rel="prev", <https://h/images?page=3>; rel=next"#
            )
            .as_deref(),
            Some("https://h/images?page=3")
        );
        assert_eq!(next_link(r#"<https://h/images?page=1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        let a = Url::parse("https://h/images").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://h:443/images?page=2").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://evil/images").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://h/images").unwrap()));
    }

    #[test]
    fn server_answers_become_messages() {
        let lines = field_errors(br#"{"name":["image already exists"],"namespace":["a","b"]}"#);
        assert_eq!(
            lines,
            ["name: image already exists", "namespace: a", "namespace: b"]
        );
        assert_eq!(field_errors(b"<html>bad</html>"), ["<html>bad</html>"]);
        assert_eq!(
            server_message(br#"{"message":"invalid token"}"#),
            "invalid token"
        );
        let err = PublishError::Refused(lines);
        assert!(
            err.to_string()
                .contains("name: image already exists; namespace: a")
        );

        let page: Value = serde_json::json!([
            {"id": 1, "name": "debian", "namespace": "ci/base"},
            {"id": 2, "name": "debian", "namespace": "ci"},
        ]);
        assert_eq!(
            find_in_page(&page, "debian", "ci").unwrap(),
            Some(Taken { id: Some(2) })
        );
        assert_eq!(find_in_page(&page, "alpine", "ci").unwrap(), None);
        assert!(find_in_page(&serde_json::json!({"images": []}), "a", "b").is_err());
    }

    #[tokio::test]
    async fn upload_blocks_carry_the_whole_file_through_reused_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        // More blocks than buffers, and a short last block.
        let data: Vec<u8> = (0..(UPLOAD_BUFFER * (UPLOAD_BUFFERS + 3) + 777))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut blocks = std::pin::pin!(file_blocks(File::open(&path).unwrap()));
        let mut received = Vec::new();
        let mut count = 0;
        while let Some(block) = blocks.next().await {
            let block = block.unwrap();
            assert!(block.len() == UPLOAD_BUFFER || received.len() + block.len() == data.len());
            received.extend_from_slice(&block);
            count += 1;
        }
        assert_eq!(count, UPLOAD_BUFFERS + 4);
        assert!(received == data, "the blocks differ from the file");

        // Reused: while the network holds every buffer the reader waits for one to come back
        // instead of allocating another, and the next block is read into the one handed back.
        let mut blocks = std::pin::pin!(file_blocks(File::open(&path).unwrap()));
        let mut held = Vec::new();
        for _ in 0..UPLOAD_BUFFERS {
            held.push(blocks.next().await.unwrap().unwrap());
        }
        let more = tokio::time::timeout(Duration::from_millis(300), blocks.next()).await;
        assert!(
            more.is_err(),
            "a block came while all {UPLOAD_BUFFERS} buffers were held"
        );
        let handed_back = held.remove(0);
        let buffer = handed_back.as_ptr();
        drop(handed_back);
        let next = tokio::time::timeout(Duration::from_secs(5), blocks.next())
            .await
            .expect("the reader fills the buffer handed back")
            .unwrap()
            .unwrap();
        assert_eq!(
            next.as_ptr(),
            buffer,
            "the block is not in the buffer handed back"
        );
        assert!(next[..] == data[UPLOAD_BUFFERS * UPLOAD_BUFFER..][..UPLOAD_BUFFER]);
    }

    /// An upload that ends early (refused, failed, cancelled) drops the stream mid-file: the
    /// reader ends and closes the file, neither reading on to the end nor waiting for a buffer.
    #[tokio::test]
    async fn dropping_the_upload_stream_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        // Sparse, and big enough that reading it to the end takes far longer than the wait below.
        File::create(&path).unwrap().set_len(64 << 30).unwrap();
        let path = path.canonicalize().unwrap();
        let mut blocks = Box::pin(file_blocks(File::open(&path).unwrap()));
        let first = blocks.next().await.unwrap().unwrap();
        assert!(open_in_this_process(&path), "the reader has the file open");
        drop(blocks);
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_in_this_process(&path) {
            assert!(
                Instant::now() < deadline,
                "the reader still has the file open 5 s after the stream was dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a descriptor of this process is open on `path` (the reader's file is the only one).
    fn open_in_this_process(path: &Path) -> bool {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    }
}
