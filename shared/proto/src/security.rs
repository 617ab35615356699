//! Transport security for every Mimo server and client in a process: TLS (rustls through
//! tonic) with certificates on both sides, and bearer tokens for clients that have no
//! certificate. Installed once, at start, before any server or channel is made; a process
//! without it speaks plaintext, as before.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a process's TLS material is: its certificate chain and private key (PEM; used both
/// to serve and to connect, so the certificate should allow server and client auth) and the
/// CA (PEM) that every peer's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key of `cert`, PEM.
    pub key: PathBuf,
    /// The CA certificate(s) peers must be signed by, PEM.
    pub ca: PathBuf,
}

/// What a process's servers require and its clients present.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// TLS for every server and client of the process; none means plaintext.
    pub tls: Option<TlsFiles>,
    /// Bearer tokens the servers accept from clients without a certificate. With none and
    /// no TLS, servers accept every caller.
    pub accepted_tokens: Vec<String>,
    /// The bearer token this process's clients send.
    pub token: Option<String>,
}

/// Why security settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        /// Which file: certificate, key or CA.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files were read but rustls refused them.
    #[error("the TLS certificate, key or CA is not usable: {0}")]
    Invalid(String),
    /// A token is empty or not printable ASCII (it travels in an HTTP header).
    #[error("a bearer token must be 1 to 4096 printable ASCII characters without spaces")]
    BadToken,
    /// Security was already installed in this process.
    #[error("transport security is already set for this process")]
    AlreadyInstalled,
}

/// The installed, checked form of [`SecuritySettings`].
#[derive(Debug)]
pub(crate) struct Security {
    pub(crate) server_tls: Option<ServerTlsConfig>,
    pub(crate) client_tls: Option<ClientTlsConfig>,
    pub(crate) accepted_tokens: Vec<String>,
    /// `Bearer <token>`, ready for the `authorization` header.
    pub(crate) authorization: Option<http::HeaderValue>,
}

static INSTALLED: OnceLock<Security> = OnceLock::new();

/// The security installed in this process, if any.
pub(crate) fn installed() -> Option<&'static Security> {
    INSTALLED.get()
}

/// Adds this process's bearer token, if it has one, to a request's headers (unless they
/// carry one already).
pub(crate) fn authorize(headers: &mut http::HeaderMap) {
    if let Some(value) = installed().and_then(|s| s.authorization.clone()) {
        headers.entry(http::header::AUTHORIZATION).or_insert(value);
    }
}

/// Whether servers of this process serve TLS (and clients connect with it).
pub fn tls_enabled() -> bool {
    installed().is_some_and(|security| security.server_tls.is_some())
}

/// Checks `settings` (reads the files, builds the TLS configurations) and makes every server
/// and channel this process creates from now on use them.
pub fn install(settings: SecuritySettings) -> Result<(), SecurityError> {
    let security = check(settings)?;
    INSTALLED
        .set(security)
        .map_err(|_| SecurityError::AlreadyInstalled)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic())
}

fn check(settings: SecuritySettings) -> Result<Security, SecurityError> {
    let (server_tls, client_tls) = match &settings.tls {
        None => (None, None),
        Some(files) => {
            let cert = read("certificate", &files.cert)?;
            let key = read("key", &files.key)?;
            let ca = read("CA", &files.ca)?;
            let identity = Identity::from_pem(&cert, &key);
            let server = ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(Certificate::from_pem(&ca))
                // A client without a certificate completes the handshake and is then
                // refused with UNAUTHENTICATED unless it has a token (see `auth`).
                .client_auth_optional(true);
            let client = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .identity(identity);
            // Both are parsed only when used: use them once now, so that a bad file is
            // reported at start and not at the first connection.
            tonic::transport::Server::builder()
                .tls_config(server.clone())
                .map_err(|e| SecurityError::Invalid(source_text(&e)))?;
            tonic::transport::Endpoint::from_static("https://localhost")
                .tls_config(client.clone())
                .map_err(|e| SecurityError::Invalid(source_text(&e)))?;
            (Some(server), Some(client))
        }
    };
    if !settings.accepted_tokens.iter().all(|t| valid_token(t)) {
        return Err(SecurityError::BadToken);
    }
    let authorization = match &settings.token {
        None => None,
        Some(token) if valid_token(token) => Some(
            http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| SecurityError::BadToken)?,
        ),
        Some(_) => return Err(SecurityError::BadToken),
    };
    Ok(Security {
        server_tls,
        client_tls,
        accepted_tokens: settings.accepted_tokens,
        authorization,
    })
}

/// The innermost cause's text of a transport error (the outer one says only "transport
/// error").
fn source_text(error: &tonic::transport::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

/// Whether `given` is one of `accepted`, compared in time independent of where they differ.
pub(crate) fn token_accepted(accepted: &[String], given: &str) -> bool {
    accepted.iter().fold(false, |found, token| {
        let same = token.len() == given.len()
            && token
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        found | same
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_whole_and_only_whole() {
        let accepted = vec!["alpha-1".to_string(), "beta-22".to_string()];
        assert!(token_accepted(&accepted, "beta-22"));
        assert!(!token_accepted(&accepted, "beta-2"));
        assert!(!token_accepted(&accepted, "beta-222"));
        assert!(!token_accepted(&accepted, ""));
        assert!(!token_accepted(&[], "alpha-1"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = check(SecuritySettings {
            tls: Some(TlsFiles {
                cert: "/nonexistent/mimo.pem".into(),
                key: "/nonexistent/mimo-key.pem".into(),
                ca: "/nonexistent/ca.pem".into(),
            }),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/mimo.pem"),
            "{error}"
        );
    }

    #[test]
    fn tokens_with_spaces_or_control_characters_are_refused() {
        for token in ["", "two words", "line\nbreak"] {
            let settings = SecuritySettings {
                token: Some(token.into()),
                ..Default::default()
            };
            assert!(matches!(check(settings), Err(SecurityError::BadToken)));
        }
    }
}
