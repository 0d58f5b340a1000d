//! The fake Djinn server itself: each test fails if the fake is more lenient (or stricter)
//! than the publish contract, so kiln's own tests can trust it.

mod support;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::djinn::{
    DjinnConfig, DjinnServer, FailMode, GOOD_TOKEN, PAGE_SIZE, QEMU_DISK, READONLY_TOKEN,
    UploadKind,
};

/// A response read off the wire by hand.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {:?}", String::from_utf8_lossy(&self.body));
        })
    }
}

fn connect(server: &DjinnServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect to the fake");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn request_head(method: &str, target: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: fake-djinn\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed && (body_len > 0 || method == "POST") {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Read one response: the head, then a Content-Length body (or everything to EOF).
fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.push(byte[0]);
    }
    let text = String::from_utf8(raw).expect("UTF-8 response head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 100 || status == 204 {
        return Ok(response);
    }
    match response.header("content-length") {
        Some(len) => {
            response.body = vec![0; len.parse().unwrap()];
            stream.read_exact(&mut response.body)?;
        }
        None => {
            stream.read_to_end(&mut response.body)?;
        }
    }
    Ok(response)
}

/// One request on its own connection; Err when the server hangs up without answering.
fn send(
    server: &DjinnServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = connect(server);
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let head = request_head(method, target, &all, body.len());
    // A server that hangs up mid-body makes the write fail; what it answered still decides.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    read_response(&mut stream)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A raw upload to `/images?QUERY`.
fn upload(server: &DjinnServer, token: Option<&str>, query: &str, body: &[u8]) -> Response {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", QEMU_DISK)];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    send(server, "POST", &format!("/images?{query}"), &headers, body).expect("an answer")
}

fn get(server: &DjinnServer, token: &str, target: &str, accept: Option<&str>) -> Response {
    let auth = bearer(token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(accept) = accept {
        headers.push(("Accept", accept));
    }
    send(server, "GET", target, &headers, b"").expect("an answer")
}

/// `len` bytes that start with the qcow2 magic and are full of CRLFs and dashes, so a
/// multipart parser that splits on the wrong thing corrupts them.
fn qcow2(len: usize) -> Vec<u8> {
    let mut bytes = b"QFI\xfb".to_vec();
    let pattern = b"\r\n--\r\n-\rboundary\n\x00\xff";
    let mut x: u32 = 0x1234_5678;
    while bytes.len() < len {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        if x >> 28 == 0 {
            bytes.extend_from_slice(pattern);
        } else {
            bytes.push((x >> 24) as u8);
        }
    }
    bytes.truncate(len);
    bytes
}

const BOUNDARY: &str = "kiln-boundary-7MA4YWxkTrZu0gW";

/// A multipart/form-data body: text fields, then (optionally) a `file` part, then more fields.
fn multipart(before: &[(&str, &str)], file: Option<&[u8]>, after: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    let field = |body: &mut Vec<u8>, name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    for (name, value) in before {
        field(&mut body, name, value);
    }
    if let Some(file) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"debian.qcow2\"\r\nContent-Type: {QEMU_DISK}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in after {
        field(&mut body, name, value);
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn post_multipart(server: &DjinnServer, token: &str, body: &[u8]) -> Response {
    let auth = bearer(token);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", content_type.as_str()),
    ];
    send(server, "POST", "/images", &headers, body).expect("an answer")
}

fn assert_field_error(response: &Response, field: &str, message: &str) {
    assert_eq!(response.status, 400, "{}", response.json());
    assert_eq!(response.json(), serde_json::json!({ field: [message] }));
}

#[test]
fn raw_upload_stores_exactly_the_bytes_sent() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(3 << 20);
    let response = upload(
        &server,
        Some(GOOD_TOKEN),
        "name=debian-12&namespace=ci/base",
        &body,
    );

    assert_eq!(response.status, 201, "{}", response.json());
    let json = response.json();
    let id = json["id"].as_u64().expect("numeric id");
    let url = format!("{}/images/{id}", server.base_url());
    assert_eq!(json["name"], "debian-12");
    assert_eq!(json["namespace"], "ci/base");
    assert_eq!(json["driver"], "qemu");
    assert_eq!(json["url"], url.as_str());
    assert_eq!(json["download"], url.as_str());
    assert_eq!(response.header("location"), Some(url.as_str()));
    for key in ["author_id", "user_id", "namespace_id"] {
        assert!(json[key].is_u64(), "{key} in {json}");
    }
    let created_at = json["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z'),
        "{created_at}"
    );

    let images = server.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, "debian-12");
    assert_eq!(images[0].namespace, "ci/base");
    assert_eq!(images[0].size, body.len() as u64);
    assert_eq!(images[0].via, UploadKind::Raw);
    assert_eq!(server.stored_bytes(id), body);
    assert_eq!(server.upload_count(), 1);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/images");
    assert_eq!(
        requests[0].target,
        "/images?name=debian-12&namespace=ci/base"
    );
    assert_eq!(requests[0].header("authorization"), Some("Bearer good"));
    assert_eq!(requests[0].body_bytes, body.len() as u64);
    assert_eq!(requests[0].status, Some(201));
}

#[test]
fn chunked_raw_upload_is_decoded() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(100_000);
    let mut chunked = Vec::new();
    for chunk in body.chunks(7_919) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let auth = bearer(GOOD_TOKEN);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", QEMU_DISK),
        ("Transfer-Encoding", "chunked"),
    ];
    let response = send(&server, "POST", "/images?name=chunky", &headers, &chunked).unwrap();
    assert_eq!(response.status, 201, "{}", response.json());
    let id = response.json()["id"].as_u64().unwrap();
    assert_eq!(server.stored_bytes(id), body);
    // No namespace: the token user's own space.
    assert_eq!(response.json()["namespace"], "tester");
}

#[test]
fn multipart_upload_stores_the_file_part() {
    let server = DjinnServer::start(DjinnConfig::default());
    let file = qcow2(2 << 20);
    // The name comes after the file, so the fake cannot check it before streaming the file.
    let body = multipart(
        &[("namespace", "ci/base")],
        Some(&file),
        &[("name", "alpine")],
    );
    let response = post_multipart(&server, GOOD_TOKEN, &body);

    assert_eq!(response.status, 201, "{}", response.json());
    let json = response.json();
    assert_eq!(json["name"], "alpine");
    assert_eq!(json["namespace"], "ci/base");
    let id = json["id"].as_u64().unwrap();
    assert_eq!(server.stored_bytes(id), file);
    assert_eq!(server.images()[0].via, UploadKind::Multipart);

    // The same checks apply to multipart fields.
    let body = multipart(&[("name", "no good")], Some(&file), &[]);
    assert_field_error(
        &post_multipart(&server, GOOD_TOKEN, &body),
        "name",
        "name can only contain letters, numbers, dashes, and underscores",
    );
    let body = multipart(
        &[("name", "alpine"), ("namespace", "ci/base")],
        Some(&file),
        &[],
    );
    assert_field_error(
        &post_multipart(&server, GOOD_TOKEN, &body),
        "name",
        "image already exists",
    );
    let body = multipart(&[("name", "text")], Some(b"not a disk"), &[]);
    assert_field_error(
        &post_multipart(&server, GOOD_TOKEN, &body),
        "file",
        "not a valid QCOW2 file format",
    );
    let body = multipart(&[("name", "nofile")], None, &[]);
    assert_field_error(
        &post_multipart(&server, GOOD_TOKEN, &body),
        "file",
        "file is required",
    );
    let body = multipart(&[], Some(&file), &[]);
    assert_field_error(
        &post_multipart(&server, GOOD_TOKEN, &body),
        "name",
        "name is required",
    );
    // A body cut off before its closing boundary is refused, not stored.
    let mut truncated = multipart(&[("name", "cut")], Some(&file), &[]);
    truncated.truncate(truncated.len() - BOUNDARY.len() - 10);
    assert_eq!(post_multipart(&server, GOOD_TOKEN, &truncated).status, 400);

    assert_eq!(server.images().len(), 1);
    assert_eq!(
        std::fs::read_dir(server.images()[0].path.parent().unwrap())
            .unwrap()
            .count(),
        1,
        "refused uploads leave no files behind"
    );
}

/// Bodies that arrive a few bytes at a time split the magic and every multipart delimiter
/// across reads.
#[test]
fn bodies_trickled_in_small_writes_are_parsed_the_same() {
    let server = DjinnServer::start(DjinnConfig::default());
    let file = qcow2(6_000);
    let trickle = |content_type: &str, target: &str, body: &[u8]| {
        let mut stream = connect(&server);
        stream.set_nodelay(true).unwrap();
        let auth = bearer(GOOD_TOKEN);
        let head = request_head(
            "POST",
            target,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            body.len(),
        );
        stream.write_all(head.as_bytes()).unwrap();
        // Two bytes, then a pause, so the first read of a raw body has half the magic.
        let (start, rest) = body.split_at(2);
        stream.write_all(start).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        for (i, piece) in rest.chunks(3).enumerate() {
            stream.write_all(piece).unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        read_response(&mut stream).unwrap()
    };

    let raw = trickle(QEMU_DISK, "/images?name=raw", &file);
    assert_eq!(raw.status, 201, "{}", raw.json());
    assert_eq!(
        server.stored_bytes(raw.json()["id"].as_u64().unwrap()),
        file
    );

    let content_type = format!("multipart/form-data; boundary=\"{BOUNDARY}\"");
    let body = multipart(&[("name", "form")], Some(&file), &[("namespace", "a/b")]);
    let form = trickle(&content_type, "/images", &body);
    assert_eq!(form.status, 201, "{}", form.json());
    assert_eq!(form.json()["namespace"], "a/b");
    assert_eq!(
        server.stored_bytes(form.json()["id"].as_u64().unwrap()),
        file
    );
}

#[test]
fn missing_or_malformed_token_is_401() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(1024);
    let response = upload(&server, None, "name=x", &body);
    assert_eq!(response.status, 401);
    assert!(
        response.json()["message"].is_string(),
        "{}",
        response.json()
    );

    let headers = [("Content-Type", QEMU_DISK), ("Authorization", "good")];
    let response = send(&server, "POST", "/images?name=x", &headers, &body).unwrap();
    assert_eq!(response.status, 401, "a token without the Bearer scheme");

    assert!(server.images().is_empty());
    assert_eq!(server.upload_count(), 2);
}

#[test]
fn unknown_token_is_401() {
    let server = DjinnServer::start(DjinnConfig::default());
    let response = upload(&server, Some("guessed"), "name=x", &qcow2(1024));
    assert_eq!(response.status, 401);
    assert!(response.json()["message"].is_string());
    assert!(server.images().is_empty());
}

#[test]
fn read_only_token_is_403_before_the_name_is_looked_at() {
    let server = DjinnServer::start(DjinnConfig::default());
    let response = upload(
        &server,
        Some(READONLY_TOKEN),
        "name=bad%20name",
        &qcow2(1024),
    );
    assert_eq!(response.status, 403);
    assert!(response.json()["message"].is_string());
    assert!(server.images().is_empty());
}

#[test]
fn unsupported_content_type_is_415() {
    let server = DjinnServer::start(DjinnConfig::default());
    let auth = bearer(GOOD_TOKEN);
    for headers in [
        vec![("Authorization", auth.as_str())],
        vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/octet-stream"),
        ],
    ] {
        let response = send(&server, "POST", "/images?name=x", &headers, &qcow2(64)).unwrap();
        assert_eq!(response.status, 415);
    }
    assert!(server.images().is_empty());
}

#[test]
fn bad_name_is_400_on_the_name_field() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(1024);
    for query in ["name=bad%20name", "name=a.b", "name=caf%C3%A9", "name=x/y"] {
        assert_field_error(
            &upload(&server, Some(GOOD_TOKEN), query, &body),
            "name",
            "name can only contain letters, numbers, dashes, and underscores",
        );
    }
    for query in ["name=", "namespace=a/b"] {
        assert_field_error(
            &upload(&server, Some(GOOD_TOKEN), query, &body),
            "name",
            "name is required",
        );
    }
    // The name is checked before the namespace.
    assert_field_error(
        &upload(&server, Some(GOOD_TOKEN), "name=a.b&namespace=1", &body),
        "name",
        "name can only contain letters, numbers, dashes, and underscores",
    );
    assert!(server.images().is_empty());
    assert_eq!(
        upload(&server, Some(GOOD_TOKEN), "name=Deb_ian-12", &body).status,
        201
    );
}

#[test]
fn duplicate_name_is_refused_only_within_one_namespace() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(1024);
    let first = upload(&server, Some(GOOD_TOKEN), "name=deb&namespace=a/b", &body);
    assert_eq!(first.status, 201);
    assert_field_error(
        &upload(&server, Some(GOOD_TOKEN), "name=deb&namespace=a/b", &body),
        "name",
        "image already exists",
    );
    // `a/b` is the token user's `a/b`, the same as `a/b@tester`.
    assert_field_error(
        &upload(
            &server,
            Some(GOOD_TOKEN),
            "name=deb&namespace=a/b@tester",
            &body,
        ),
        "name",
        "image already exists",
    );
    for namespace in ["a/c", "a/b@other", ""] {
        let response = upload(
            &server,
            Some(GOOD_TOKEN),
            &format!("name=deb&namespace={namespace}"),
            &body,
        );
        assert_eq!(response.status, 201, "namespace {namespace:?}");
    }
    assert_eq!(server.images().len(), 4);
    let ids: Vec<u64> = server.images().iter().map(|i| i.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
}

#[test]
fn bad_namespace_is_400_on_the_namespace_field() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(1024);
    for namespace in ["a/b1", "a%20b", "a@b@c", "@owner", "a/b@", "a/b@o.k", "a-b"] {
        let response = upload(
            &server,
            Some(GOOD_TOKEN),
            &format!("name=deb&namespace={namespace}"),
            &body,
        );
        assert_eq!(response.status, 400, "namespace {namespace:?}");
        assert!(
            response.json()["namespace"][0].is_string(),
            "{namespace:?}: {}",
            response.json()
        );
    }
    assert!(server.images().is_empty());
    for namespace in ["a", "Ci/Base/", "a/b@some_one-2"] {
        let response = upload(
            &server,
            Some(GOOD_TOKEN),
            &format!("name=deb&namespace={namespace}"),
            &body,
        );
        assert_eq!(response.status, 201, "namespace {namespace:?}");
    }
}

#[test]
fn body_without_qcow2_magic_is_400_on_the_file_field() {
    let server = DjinnServer::start(DjinnConfig::default());
    for body in [&b"QFI"[..], b"", b"QFI\xfa rest", b"\x00QFI\xfb"] {
        assert_field_error(
            &upload(&server, Some(GOOD_TOKEN), "name=x", body),
            "file",
            "not a valid QCOW2 file format",
        );
    }
    assert!(server.images().is_empty());
    // Exactly the magic is enough: Djinn checks nothing else.
    assert_eq!(
        upload(&server, Some(GOOD_TOKEN), "name=x", b"QFI\xfb").status,
        201
    );
}

#[test]
fn listing_is_paginated_with_a_next_link() {
    let server = DjinnServer::start(DjinnConfig::default());
    for n in 0..=PAGE_SIZE {
        if n == PAGE_SIZE {
            let full = get(&server, READONLY_TOKEN, "/images", None);
            assert_eq!(full.json().as_array().unwrap().len(), PAGE_SIZE);
            assert_eq!(
                full.header("link"),
                None,
                "exactly one full page has no next"
            );
        }
        let response = upload(
            &server,
            Some(GOOD_TOKEN),
            &format!("name=img{n}"),
            b"QFI\xfb",
        );
        assert_eq!(response.status, 201);
    }
    assert_eq!(get(&server, GOOD_TOKEN, "/images", None).status, 200);
    let first = get(&server, READONLY_TOKEN, "/images", None);
    assert_eq!(first.status, 200);
    let items = first.json();
    assert_eq!(items.as_array().unwrap().len(), PAGE_SIZE);
    assert_eq!(items[0]["name"], "img0");
    let link = first.header("link").expect("a Link header");
    let next = format!("<{}/images?page=2>; rel=\"next\"", server.base_url());
    assert_eq!(link, next);

    let target = link
        .trim_start_matches(&format!("<{}", server.base_url()))
        .split('>')
        .next()
        .unwrap();
    let second = get(&server, READONLY_TOKEN, target, None);
    assert_eq!(second.status, 200);
    let items = second.json();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["name"], format!("img{PAGE_SIZE}"));
    assert_eq!(
        items[0],
        server.images()[PAGE_SIZE].json(&server.base_url())
    );
    assert_eq!(second.header("link"), None);

    let beyond = get(&server, READONLY_TOKEN, "/images?page=3", None);
    assert_eq!(beyond.json(), serde_json::json!([]));
    assert_eq!(
        get(&server, READONLY_TOKEN, "/images?page=0", None).status,
        400
    );
    let anonymous = send(&server, "GET", "/images", &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);
}

#[test]
fn get_image_answers_json_or_the_bytes() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(300_000);
    let created = upload(&server, Some(GOOD_TOKEN), "name=dl&namespace=a", &body).json();
    let id = created["id"].as_u64().unwrap();

    let json = get(&server, READONLY_TOKEN, &format!("/images/{id}"), None);
    assert_eq!(json.status, 200);
    assert_eq!(json.json(), created);

    let bytes = get(
        &server,
        READONLY_TOKEN,
        &format!("/images/{id}"),
        Some(QEMU_DISK),
    );
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.header("content-type"), Some(QEMU_DISK));
    assert!(
        bytes.body == body,
        "downloaded bytes differ from the upload"
    );

    let missing = get(&server, READONLY_TOKEN, "/images/999", Some(QEMU_DISK));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), serde_json::json!({"message": "not found"}));
    let anonymous = send(&server, "GET", &format!("/images/{id}"), &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);
}

#[test]
fn delete_removes_the_image_and_its_file() {
    let server = DjinnServer::start(DjinnConfig::default());
    let id = upload(&server, Some(GOOD_TOKEN), "name=gone", b"QFI\xfb").json()["id"]
        .as_u64()
        .unwrap();
    let path = server.stored_path(id).unwrap();
    assert!(path.exists());
    let target = format!("/images/{id}");

    let readonly = bearer(READONLY_TOKEN);
    let refused = send(
        &server,
        "DELETE",
        &target,
        &[("Authorization", &readonly)],
        b"",
    )
    .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(server.images().len(), 1);

    let auth = bearer(GOOD_TOKEN);
    let deleted = send(&server, "DELETE", &target, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    assert!(server.images().is_empty());
    assert!(!path.exists());
    assert_eq!(get(&server, GOOD_TOKEN, &target, None).status, 404);
    let again = send(&server, "DELETE", &target, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(again.status, 404);
}

#[test]
fn anything_else_is_404() {
    let server = DjinnServer::start(DjinnConfig::default());
    let auth = bearer(GOOD_TOKEN);
    let headers = [("Authorization", auth.as_str())];
    for (method, target) in [
        ("GET", "/"),
        ("GET", "/api/images"),
        ("GET", "/images/"),
        ("GET", "/images/abc"),
        ("PUT", "/images"),
        ("POST", "/images/1"),
        ("PATCH", "/images/1"),
    ] {
        let response = send(&server, method, target, &headers, b"").unwrap();
        assert_eq!(response.status, 404, "{method} {target}");
        assert_eq!(response.json(), serde_json::json!({"message": "not found"}));
    }
}

#[test]
fn status500_mode_reads_the_body_then_fails() {
    let server = DjinnServer::start(DjinnConfig::default().fail(FailMode::Status500));
    let body = qcow2(1 << 20);
    let response = upload(&server, Some(GOOD_TOKEN), "name=x", &body);
    assert_eq!(response.status, 500);
    assert_eq!(
        response.json(),
        serde_json::json!({"message": "internal server error"})
    );
    assert!(server.images().is_empty());
    let recorded = server.requests().pop().unwrap();
    assert_eq!(recorded.body_bytes, body.len() as u64);
    assert_eq!(recorded.status, Some(500));

    // With `Expect: 100-continue` the body is asked for and read too, then refused.
    let mut stream = connect(&server);
    let auth = bearer(GOOD_TOKEN);
    let head = request_head(
        "POST",
        "/images?name=x",
        &[
            ("Authorization", &auth),
            ("Content-Type", QEMU_DISK),
            ("Expect", "100-continue"),
        ],
        body.len(),
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 100);
    stream.write_all(&body).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 500);
    assert_eq!(
        server.requests().pop().unwrap().body_bytes,
        body.len() as u64
    );

    // A retry after the server recovers succeeds.
    server.set_fail_mode(FailMode::None);
    assert_eq!(
        upload(&server, Some(GOOD_TOKEN), "name=x", &body).status,
        201
    );
    assert_eq!(server.upload_count(), 3);
}

#[test]
fn close_after_mode_hangs_up_mid_body_and_stores_nothing() {
    let server = DjinnServer::start(DjinnConfig::default().fail(FailMode::CloseAfter(1000)));
    let body = qcow2(4 << 20);
    let auth = bearer(GOOD_TOKEN);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", QEMU_DISK),
    ];
    let result = send(&server, "POST", "/images?name=x", &headers, &body);
    assert!(
        result.is_err(),
        "expected a closed connection, got {:?}",
        result.map(|r| r.status)
    );
    assert!(server.images().is_empty());
    let recorded = server.requests().pop().unwrap();
    assert_eq!(recorded.status, None);
    assert_eq!(recorded.body_bytes, 1000);
    assert_eq!(server.upload_count(), 1);
}

#[test]
fn expect_continue_is_answered_only_when_the_body_is_wanted() {
    let server = DjinnServer::start(DjinnConfig::default());
    let body = qcow2(10_000);

    // Refused: the final answer comes instead of 100 Continue, and the body is never read.
    let mut stream = connect(&server);
    let head = request_head(
        "POST",
        "/images?name=x",
        &[
            ("Authorization", "Bearer guessed"),
            ("Content-Type", QEMU_DISK),
            ("Expect", "100-continue"),
        ],
        body.len(),
    );
    stream.write_all(head.as_bytes()).unwrap();
    let refused = read_response(&mut stream).unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(server.requests()[0].body_bytes, 0);

    // Accepted: 100 Continue, then the body, then 201.
    let mut stream = connect(&server);
    let auth = bearer(GOOD_TOKEN);
    let head = request_head(
        "POST",
        "/images?name=x",
        &[
            ("Authorization", &auth),
            ("Content-Type", QEMU_DISK),
            ("Expect", "100-continue"),
        ],
        body.len(),
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 100);
    stream.write_all(&body).unwrap();
    let created = read_response(&mut stream).unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(
        server.stored_bytes(created.json()["id"].as_u64().unwrap()),
        body
    );
}

#[test]
fn one_connection_carries_several_requests() {
    let server = DjinnServer::start(DjinnConfig::default());
    let mut stream = connect(&server);
    let auth = bearer(GOOD_TOKEN);
    let body = qcow2(50_000);
    for name in ["one", "two"] {
        let head = request_head(
            "POST",
            &format!("/images?name={name}"),
            &[("Authorization", &auth), ("Content-Type", QEMU_DISK)],
            body.len(),
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        assert_eq!(read_response(&mut stream).unwrap().status, 201);
    }
    // A refused upload without Expect still has its body read, so the connection stays usable.
    let head = request_head(
        "POST",
        "/images?name=one",
        &[("Authorization", &auth), ("Content-Type", QEMU_DISK)],
        body.len(),
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 400);
    let head = request_head("GET", "/images", &[("Authorization", &auth)], 0);
    stream.write_all(head.as_bytes()).unwrap();
    let list = read_response(&mut stream).unwrap();
    assert_eq!(list.json().as_array().unwrap().len(), 2);
}

#[test]
fn dropping_the_server_stops_it() {
    let server = DjinnServer::start(DjinnConfig::default());
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(server.base_url(), format!("http://{addr}"));
    // An idle keep-alive connection must not keep the server alive.
    let _idle = connect(&server);
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(addr).is_err());
}
