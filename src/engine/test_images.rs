//! Real images for unit tests, made with the real qemu-img.

/// Run `qemu-img ARGS…`; the test fails with qemu-img's words if it does.
pub async fn qemu_img(args: &[&str]) {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img create` of a qcow2 with this `compat` (`1.1` is v3, `0.10` v2) and virtual size.
pub async fn qcow2(path: &str, compat: &str, size: &str) {
    let compat = format!("compat={compat}");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", &compat, path, size]).await;
}

/// A qcow2 whose header names a host file as its backing file (`/etc/hostname`, raw).
pub async fn backed_by_host_file(path: &std::path::Path) {
    let path = path.display().to_string();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "/etc/hostname",
        "-F",
        "raw",
        &path,
    ])
    .await;
}

/// A 16 MiB qcow2 that keeps its guest data in the external (raw) file `data`.
pub async fn with_external_data(path: &std::path::Path, data: &std::path::Path) {
    let option = format!("data_file={},data_file_raw=on", data.display());
    let path = path.display().to_string();
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", &option, &path, "16M"]).await;
}
