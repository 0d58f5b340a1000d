//! A plain HTTP file server on 127.0.0.1 for the tests: a package mirror's files, fetched by
//! kiln's checks on this host and by an installer in a guest (as 10.0.2.2).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct StaticServer {
    pub port: u16,
    requested: Arc<Mutex<Vec<String>>>,
}

impl StaticServer {
    /// Serve `dir` until the test process ends (GET only; a missing file is a 404).
    pub fn serve(dir: PathBuf) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the static server");
        let port = listener.local_addr().unwrap().port();
        let requested = Arc::new(Mutex::new(Vec::new()));
        let log = requested.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (dir, log) = (dir.clone(), log.clone());
                std::thread::spawn(move || answer(stream, &dir, &log));
            }
        });
        StaticServer { port, requested }
    }

    /// The path of every request so far, in order.
    pub fn requested(&self) -> Vec<String> {
        self.requested.lock().unwrap().clone()
    }
}

fn answer(mut stream: TcpStream, dir: &Path, log: &Mutex<Vec<String>>) {
    let mut request = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The rest of the request's head, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    log.lock().unwrap().push(path.to_string());
    let file = dir.join(path.trim_start_matches('/'));
    let body = (!path.contains(".."))
        .then(|| std::fs::read(&file).ok())
        .flatten();
    let (status, body) = match body {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}
