use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::*;
use crate::engine::task::{Summary, TaskOptions, TaskPanicked, spawn};

/// A server for one file that honours `Range: bytes=N-` and records each request's Range.
fn range_server(body: Vec<u8>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/images/netboot/linux",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(value.trim().trim_end_matches('-').to_string());
                }
                line.clear();
            }
            record.lock().unwrap().push(range.clone());
            let from: usize = range.and_then(|r| r.parse().ok()).unwrap_or(0);
            let status = if from > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - from
            );
            let _ = stream.write_all(&body[from..]);
        }
    });
    (url, seen)
}

struct Got(Result<PathBuf, String>);

impl Summary for Got {
    fn summary(&self) -> String {
        String::new()
    }
}

async fn obtain_now(
    location: &Location,
    checksum: &Checksum,
    cache: &Cache,
) -> Result<PathBuf, String> {
    let (location, checksum, cache) = (location.clone(), checksum.clone(), cache.clone());
    let task = spawn("download", TaskOptions::default(), |reporter| async move {
        let got = obtain(&location, Some(&checksum), Some(&cache), &reporter).await;
        Ok::<_, TaskPanicked>(Got(got.map_err(|e| e.to_string())))
    });
    task.result().await.unwrap().0
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_partial_download_resumes_and_a_kept_file_is_not_fetched_again() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (url, seen) = range_server(body.clone());
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::at(home.path());
    let checksum = Checksum::Hex(sha256(&body));
    // What an interrupted try left behind: the first 70,000 bytes.
    let kept = cache.path_for(&sha256(&body), "linux");
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::write(cache::part_path(&kept), &body[..70_000]).unwrap();

    let location = Location::parse(&url);
    let path = obtain_now(&location, &checksum, &cache).await.unwrap();
    assert_eq!(path, kept);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(*seen.lock().unwrap(), [Some("70000".to_string())]);
    assert!(!cache::part_path(&kept).exists());

    // Kept: the next build asks nothing of the server.
    let again = obtain_now(&location, &checksum, &cache).await.unwrap();
    assert_eq!(again, kept);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let files = cache.files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].bytes, body.len() as u64);
    assert_eq!(cache.clear().unwrap(), body.len() as u64);
    assert!(cache.files().unwrap().is_empty());
}

#[tokio::test]
async fn a_mismatch_keeps_nothing_and_names_the_file_and_both_sums() {
    let body = b"not the kernel you are looking for".to_vec();
    let (url, _seen) = range_server(body.clone());
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::at(home.path());
    let wrong = "0".repeat(64);
    let error = obtain_now(
        &Location::parse(&url),
        &Checksum::Hex(wrong.clone()),
        &cache,
    )
    .await
    .unwrap_err();
    assert!(error.contains(&url), "{error}");
    assert!(error.contains(&wrong), "{error}");
    assert!(error.contains(&sha256(&body)), "{error}");
    assert!(cache.files().unwrap().is_empty(), "{:?}", cache.files());
}

#[test]
fn checksums_are_read_once_from_what_people_write() {
    let hex = "ab".repeat(32);
    assert_eq!(hex.parse::<Checksum>().unwrap(), Checksum::Hex(hex.clone()));
    assert!("abc123".parse::<Checksum>().is_err());
    let listed: Checksum = "http://m/images/SHA256SUMS#./netboot/linux"
        .parse()
        .unwrap();
    assert_eq!(
        listed,
        Checksum::Listed {
            list: Location::Url("http://m/images/SHA256SUMS".into()),
            entry: Some("./netboot/linux".into()),
        }
    );
    assert_eq!(
        listed.to_string(),
        "http://m/images/SHA256SUMS#./netboot/linux"
    );
    // Without #PATH, a URL below the list's directory is found by the path between them.
    let list = Location::Url("http://m/d/images/SHA256SUMS".into());
    let file = Location::Url("http://m/d/images/netboot/debian-installer/amd64/linux".into());
    assert_eq!(
        entry_below(&list, &file),
        "netboot/debian-installer/amd64/linux"
    );
    assert_eq!(entry_below(&Location::File("SUMS".into()), &file), "linux");
}
