//! The HTTP client every part of kiln that talks to a server starts from: the Djinn API, a
//! preset's package mirror.

/// A client builder with kiln's user agent and TLS through rustls' ring provider (certificates
/// verified against the platform's roots, as reqwest does by default).
pub fn client_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    // reqwest is built with `rustls-no-provider`: it takes the process-wide provider. An error
    // means one is installed already, which is as good.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own Display stops at the top).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
