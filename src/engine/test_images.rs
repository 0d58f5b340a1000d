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
