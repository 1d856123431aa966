//! TLS material for the sinks that leave the host (CONTRACT section 1):
//! PEM files read and checked at start-up — the CA certificates a server
//! must chain to, and an optional client certificate and key — and the
//! rustls client configuration built from them (ring provider, TLS 1.2
//! and 1.3, server verification always on).
//!
//! Every file is read and checked before anything starts, so a missing,
//! unreadable or wrong file is bad usage (exit 2) naming the file, never a
//! failure discovered at the first alert.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {role} {}: {source}", path.display())]
    Read {
        role: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{role} {} is not usable: {reason}", path.display())]
    Unusable {
        role: String,
        path: PathBuf,
        reason: String,
    },
}

impl TlsFileError {
    fn unusable(role: &str, path: &Path, reason: impl Into<String>) -> TlsFileError {
        TlsFileError::Unusable {
            role: role.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The files of one TLS client: CAs, and a client certificate with its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates the server's chain must end in.
    pub ca: PathBuf,
    /// PEM certificate chain and private key presented to the server.
    pub client: Option<(PathBuf, PathBuf)>,
}

fn read(role: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        role: role.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn certificates(
    role: &str,
    path: &Path,
    text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text)
        .collect::<Result<_, pem::Error>>()
        .map_err(|err| TlsFileError::unusable(role, path, format!("bad PEM: {err}")))?;
    if certs.is_empty() {
        return Err(TlsFileError::unusable(
            role,
            path,
            "no PEM `CERTIFICATE` block in it",
        ));
    }
    Ok(certs)
}

/// The CA certificates of `path` as a trust store (each must parse as an
/// X.509 trust anchor).
pub fn read_roots(role: &str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    let text = read(role, path)?;
    let mut roots = RootCertStore::empty();
    for (n, cert) in certificates(role, path, &text)?.into_iter().enumerate() {
        roots.add(cert).map_err(|err| {
            TlsFileError::unusable(
                role,
                path,
                format!("certificate {} of the file: {err}", n + 1),
            )
        })?;
    }
    Ok(roots)
}

/// The PEM text of a CA file, once [`read_roots`] accepts it (for clients
/// such as the Redis crate's that take PEM bytes).
pub fn read_ca_pem(role: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    read_roots(role, path)?;
    read(role, path)
}

/// A certificate chain, leaf first.
pub fn read_chain(role: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    certificates(role, path, &read(role, path)?)
}

/// The first private key of the file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(role: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let text = read(role, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|err| {
        let reason = match err {
            pem::Error::NoItemsFound => "no PEM `PRIVATE KEY` block in it".to_owned(),
            other => format!("bad PEM: {other}"),
        };
        TlsFileError::unusable(role, path, reason)
    })
}

/// What each of [`TlsFiles`]' files is called in messages: the flag, or
/// the config key and where it is.
#[derive(Clone, Debug)]
pub struct Roles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A rustls client configuration: ring, TLS 1.2 and 1.3, the server's
/// certificate checked against `files.ca` (and its name against the host
/// the caller connects to), the client certificate if given.
pub fn client_config(files: &TlsFiles, roles: &Roles) -> Result<Arc<ClientConfig>, TlsFileError> {
    let roots = read_roots(&roles.ca, &files.ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsFileError::unusable(&roles.ca, &files.ca, err.to_string()))?
        .with_root_certificates(roots);
    let config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_chain(&roles.cert, cert)?;
            let key_der = read_key(&roles.key, key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|err| {
                    TlsFileError::unusable(
                        &roles.key,
                        key,
                        format!("does not go with {} {}: {err}", roles.cert, cert.display()),
                    )
                })?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_empty_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_roots("--syslog-ca", &missing).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read --syslog-ca ") && text.contains("missing.pem"),
            "{text}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let text = read_roots("--syslog-ca", &empty).unwrap_err().to_string();
        assert!(
            text.contains("empty.pem") && text.contains("no PEM `CERTIFICATE`"),
            "{text}"
        );
        let text = read_key("--syslog-key", &empty).unwrap_err().to_string();
        assert!(text.contains("no PEM `PRIVATE KEY`"), "{text}");

        // A certificate block whose contents are not a certificate.
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = read_roots("--redis-ca", &junk).unwrap_err().to_string();
        assert!(
            text.contains("--redis-ca") && text.contains("certificate 1"),
            "{text}"
        );

        let files = TlsFiles {
            ca: missing,
            client: None,
        };
        let roles = Roles {
            ca: "--syslog-ca".into(),
            cert: "--syslog-cert".into(),
            key: "--syslog-key".into(),
        };
        let err = client_config(&files, &roles).unwrap_err();
        assert!(
            matches!(&err, TlsFileError::Read { role, .. } if role == "--syslog-ca"),
            "{err}"
        );
    }
}
