//! Noting the server's identification line on its way to russh.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// Longest line the banner sniffer keeps; RFC 4253 caps the identification line at 255.
const MAX_BANNER_LINE: usize = 255;
/// Lines a server may send before its identification (RFC 4253 §4.2) that the sniffer reads.
const MAX_PRE_BANNER_LINES: usize = 20;

/// Passes a stream through unchanged while noting the first line the server sends that starts
/// with "SSH-": russh reads the server's identification but does not expose it.
pub(super) struct BannerSniffer<S> {
    inner: S,
    line: Vec<u8>,
    lines_seen: usize,
    found: Option<oneshot::Sender<String>>,
}

impl<S> BannerSniffer<S> {
    pub(super) fn new(inner: S) -> (BannerSniffer<S>, oneshot::Receiver<String>) {
        let (tx, rx) = oneshot::channel();
        let sniffer = BannerSniffer {
            inner,
            line: Vec::with_capacity(64),
            lines_seen: 0,
            found: Some(tx),
        };
        (sniffer, rx)
    }

    fn sniff(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found.is_none() {
                return;
            }
            if byte != b'\n' {
                if self.line.len() < MAX_BANNER_LINE {
                    self.line.push(byte);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.starts_with(b"SSH-") {
                if let Some(found) = self.found.take() {
                    let _ = found.send(String::from_utf8_lossy(&line).into_owned());
                }
                return;
            }
            // RFC 4253 §4.2 lets a server send other lines first; past a few, give up.
            self.lines_seen += 1;
            if self.lines_seen >= MAX_PRE_BANNER_LINES {
                self.found = None;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BannerSniffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.found.is_some() {
            this.sniff(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BannerSniffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn sniffer_reports_the_banner_and_passes_every_byte_through() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, banner) = BannerSniffer::new(client);
        let sent = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00\x01\x2cbinary";
        server.write_all(sent).await.unwrap();
        drop(server);
        let mut received = Vec::new();
        sniffer.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, sent);
        assert_eq!(
            banner.await.unwrap(),
            "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
        );
    }

    #[tokio::test]
    async fn sniffer_joins_a_banner_split_across_reads_and_skips_pre_banner_lines() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, mut banner) = BannerSniffer::new(client);
        let mut buf = [0u8; 64];
        server
            .write_all(b"hello there\r\nSSH-2.0-Op")
            .await
            .unwrap();
        let n = sniffer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello there\r\nSSH-2.0-Op");
        assert!(banner.try_recv().is_err(), "no banner before its newline");
        server.write_all(b"enSSH_9.2\nrest").await.unwrap();
        let n = sniffer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"enSSH_9.2\nrest");
        assert_eq!(banner.await.unwrap(), "SSH-2.0-OpenSSH_9.2");
    }

    #[tokio::test]
    async fn sniffer_writes_go_to_the_inner_stream() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, _banner) = BannerSniffer::new(client);
        sniffer.write_all(b"SSH-2.0-kiln\r\n").await.unwrap();
        let mut buf = [0u8; 32];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"SSH-2.0-kiln\r\n");
    }

    #[tokio::test]
    async fn sniffer_drops_the_sender_when_the_stream_ends_without_a_banner() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, banner) = BannerSniffer::new(client);
        server.write_all(b"not ssh\n").await.unwrap();
        drop(server);
        let mut received = Vec::new();
        sniffer.read_to_end(&mut received).await.unwrap();
        drop(sniffer);
        assert!(banner.await.is_err());
    }

    #[test]
    fn sniffer_gives_up_after_many_pre_banner_lines() {
        let (client, _server) = tokio::io::duplex(16);
        let (mut sniffer, mut banner) = BannerSniffer::new(client);
        sniffer.sniff("noise\n".repeat(MAX_PRE_BANNER_LINES).as_bytes());
        sniffer.sniff(b"SSH-2.0-late\n");
        assert!(banner.try_recv().is_err());
    }
}
