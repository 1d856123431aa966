//! The `tls://HOST:PORT` syslog transport (RFC 5425): a TCP connection, a
//! TLS handshake (rustls) that checks the peer's certificate against the
//! configured CAs and its name against HOST, then the RFC 5424 messages,
//! octet-counted, as application data. The queue, retries and counters are
//! the syslog sink's own (syslog.rs); this file opens, writes and watches
//! one connection, and checks the `--syslog-ca`, `--syslog-cert` and
//! `--syslog-key` settings against the target before the sink starts.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::settings::SyslogFormat;
use crate::sinks::syslog::{HostPort, SyslogTarget};
use crate::sinks::tls::{Roles, TlsFiles, client_config};

/// How long a new connection is watched for the server's refusal.
const SETTLE: Duration = Duration::from_millis(200);

/// An open RFC 5425 connection.
pub type TlsSyslogStream = TlsStream<TcpStream>;

/// The name the peer's certificate must carry: HOST as a DNS name or an IP
/// address. `None` when HOST is neither (checked before the sink starts).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}

/// A handshake that failed (certificate not trusted or not for HOST, client
/// certificate refused, no common protocol): counted apart from connection
/// failures (`sensor_syslog_tls_failures_total`), since the retries only
/// succeed once someone fixes a certificate.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {peer} failed: {source}")]
pub struct HandshakeFailed {
    peer: String,
    #[source]
    source: io::Error,
}

/// Whether `err` (from [`connect`]) is a failed handshake.
pub fn is_handshake_failure(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<HandshakeFailed>())
}

/// Connects to the first address of `peer` that answers and completes the
/// handshake, each step bounded by `timeout`.
pub async fn connect(
    peer: &HostPort,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> io::Result<TlsSyslogStream> {
    let name = server_name(&peer.host).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is neither a DNS name nor an IP address", peer.host),
        )
    })?;
    let connector = TlsConnector::from(config.clone());
    let mut last_err = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} resolves to no address", peer.host),
    );
    for addr in tokio::net::lookup_host((peer.host.as_str(), peer.port)).await? {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                last_err = err;
                continue;
            }
            Err(_) => {
                last_err = timed_out(addr, timeout);
                continue;
            }
        };
        let handshake = connector.connect(name.clone(), tcp);
        let source = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(mut stream)) => match refused_after_handshake(&mut stream).await {
                None => return Ok(stream),
                Some(err) => err,
            },
            Ok(Err(err)) => err,
            Err(_) => timed_out(addr, timeout),
        };
        // The server was reached: another address of the same name would
        // present the same certificate, so stop here.
        let kind = source.kind();
        return Err(io::Error::new(
            kind,
            HandshakeFailed {
                peer: peer.to_string(),
                source,
            },
        ));
    }
    Err(last_err)
}

/// In TLS 1.3 the client's handshake ends before the server has checked
/// the client's certificate (or its absence): a refusal comes as an alert
/// just after. Waiting briefly for it once per connection keeps a refused
/// connection from swallowing the first message as if it were sent.
async fn refused_after_handshake(stream: &mut TlsSyslogStream) -> Option<io::Error> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(SETTLE, stream.read(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => None,
        Ok(Ok(_)) => Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the connection right after the handshake",
        )),
        Ok(Err(err)) => Some(err),
    }
}

fn timed_out(addr: std::net::SocketAddr, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer from {addr} within {timeout:?}"),
    )
}

/// Writes one framed message and pushes it out of rustls' buffer.
pub async fn write(stream: &mut TlsSyslogStream, message: &[u8]) -> io::Result<()> {
    stream.write_all(message).await?;
    stream.flush().await
}

/// Whether the peer has not closed the connection (close_notify, FIN or
/// reset), checked without waiting before each write, as for plain TCP: a
/// write into a connection the peer already closed succeeds locally and is
/// lost. Syslog receivers send no application data; what TLS 1.3 servers do
/// send after the handshake (session tickets) rustls takes in here.
pub fn peer_still_open(stream: &mut TlsSyslogStream) -> bool {
    let mut context = Context::from_waker(Waker::noop());
    let mut buffer = [0u8; 512];
    // Bounded: a peer that keeps sending is read at most this often per check.
    for _ in 0..16 {
        let mut read = ReadBuf::new(&mut buffer);
        match Pin::new(&mut *stream).poll_read(&mut context, &mut read) {
            Poll::Pending => return true,
            Poll::Ready(Ok(())) if read.filled().is_empty() => return false,
            Poll::Ready(Ok(())) => {
                tracing::debug!(
                    bytes = read.filled().len(),
                    "syslog TLS peer sent data; ignored"
                );
            }
            Poll::Ready(Err(_)) => return false,
        }
    }
    true
}

/// Sends close_notify and FIN, so the peer reads everything before the end.
pub async fn close(stream: &mut TlsSyslogStream) {
    let _ = stream.shutdown().await;
}

/// The `--syslog-ca`, `--syslog-cert` and `--syslog-key` files (or their
/// config keys), each with how messages name it.
#[derive(Clone, Debug, Default)]
pub struct SyslogTlsFiles {
    pub ca: Option<(PathBuf, String)>,
    pub cert: Option<(PathBuf, String)>,
    pub key: Option<(PathBuf, String)>,
}

impl SyslogTlsFiles {
    /// Checks the files against the syslog target (`None`: no syslog sink)
    /// and, for `tls://`, reads them into the client configuration. Every
    /// error is bad usage: a file given where it is not used, a CA missing,
    /// a certificate without its key, RFC 3164 over TLS, an unusable file.
    pub fn client_config(
        &self,
        target: Option<&SyslogTarget>,
        format: SyslogFormat,
    ) -> Result<Option<Arc<ClientConfig>>, String> {
        let Some(SyslogTarget::Tls(peer)) = target else {
            let given = [&self.ca, &self.cert, &self.key].into_iter().flatten();
            if let Some((_, role)) = given.into_iter().next() {
                let why = match target {
                    Some(other) => format!("the syslog target is {other}"),
                    None => "no --syslog is given".to_owned(),
                };
                return Err(format!(
                    "{role} is only for tls:// syslog targets, and {why}"
                ));
            }
            return Ok(None);
        };
        if format == SyslogFormat::Rfc3164 {
            return Err(format!(
                "tls://{peer} carries RFC 5424 messages (RFC 5425): \
                 --syslog-format rfc3164 cannot be used with it"
            ));
        }
        if server_name(&peer.host).is_none() {
            return Err(format!(
                "tls://{peer}: `{}` is neither a DNS name nor an IP address, \
                 so no certificate can name it",
                peer.host
            ));
        }
        let Some((ca, ca_role)) = &self.ca else {
            return Err(format!(
                "tls://{peer} needs the CA certificates that the server's certificate \
                 chains to: give --syslog-ca FILE (or `syslog_ca` in --config)"
            ));
        };
        let (client, cert_role, key_role) = match (&self.cert, &self.key) {
            (None, None) => (None, "--syslog-cert".to_owned(), "--syslog-key".to_owned()),
            (Some((cert, cert_role)), Some((key, key_role))) => (
                Some((cert.clone(), key.clone())),
                cert_role.clone(),
                key_role.clone(),
            ),
            (Some((_, role)), None) => {
                return Err(format!("{role} needs its key: give --syslog-key FILE too"));
            }
            (None, Some((_, role))) => {
                return Err(format!(
                    "{role} needs its certificate: give --syslog-cert FILE too"
                ));
            }
        };
        let files = TlsFiles {
            ca: ca.clone(),
            client,
        };
        let roles = Roles {
            ca: ca_role.clone(),
            cert: cert_role,
            key: key_role,
        };
        client_config(&files, &roles)
            .map(Some)
            .map_err(|err| err.to_string())
    }
}
