//! A real rsyslogd for tests: started on free loopback ports and unix
//! sockets in a temporary folder, writing what it receives with a template
//! that keeps every syslog header field; stopped by its own PID. On request
//! it also listens with TLS (RFC 5425, the gtls driver of rsyslog-gnutls),
//! and runs inside a test's network namespace.

use std::fs::File;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest wait for rsyslogd to start, stop, or write what it was sent.
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// rsyslogd under test

/// Where rsyslogd is, or `None` after a visible SKIP (a failure with CI=true).
pub fn rsyslogd(test: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path_dirs)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let message =
            format!("{test}: rsyslogd is not installed (scripts/bootstrap.sh installs it)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}; CI=true, so it must be there");
        }
        sensor::testing::skip(&message);
    }
    found
}

/// The server side of the TLS inputs: its certificate and key, and the CA
/// client certificates must chain to.
#[derive(Clone, Debug)]
pub struct TlsServer {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to start rsyslogd besides the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Adds two TLS inputs: `imtcp-tls` (no client certificate asked) on
    /// `tls_port` and `imtcp-mtls` (a client certificate from the CA
    /// required) on `mtls_port`.
    pub tls: Option<TlsServer>,
    /// Runs rsyslogd in this network namespace (its ports on that
    /// namespace's loopback).
    pub netns: Option<String>,
}

/// One rsyslogd we started; killed (by its own pid) when dropped.
pub struct Rsyslog {
    binary: PathBuf,
    options: Options,
    pub dir: tempfile::TempDir,
    pub tcp_port: u16,
    pub udp_port: u16,
    pub tls_port: u16,
    pub mtls_port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    pub fn start(binary: PathBuf) -> Rsyslog {
        Rsyslog::start_with(binary, Options::default())
    }

    pub fn start_with(binary: PathBuf, options: Options) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let mut rsyslog = Rsyslog {
            binary,
            options,
            tcp_port: free_tcp_port(),
            udp_port: free_udp_port(),
            tls_port: free_tcp_port(),
            mtls_port: free_tcp_port(),
            dir,
            child: None,
        };
        rsyslog.write_config();
        rsyslog.restart();
        rsyslog
    }

    /// An imuxsock set to parse RFC 5424 and keep the header's time and host.
    pub fn tuned_socket(&self) -> PathBuf {
        self.dir.path().join("tuned.sock")
    }

    /// An imuxsock with rsyslog's defaults, as a stock `/dev/log` listener.
    pub fn stock_socket(&self) -> PathBuf {
        self.dir.path().join("stock.sock")
    }

    pub fn received_path(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    fn write_config(&self) {
        let dir = self.dir.path().display();
        let (tls_files, tls_inputs) = match &self.options.tls {
            None => (String::new(), String::new()),
            Some(tls) => (
                format!(
                    r#"
       DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}"
       DefaultNetstreamDriverKeyFile="{}""#,
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display()
                ),
                format!(
                    r#"input(type="imtcp" address="127.0.0.1" port="{}" name="imtcp-tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{}" name="imtcp-mtls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"#,
                    self.tls_port, self.mtls_port
                ),
            ),
        };
        // The template puts MSG last so a `|` inside it cannot shift fields.
        let config = format!(
            r#"global(workDirectory="{dir}/work" maxMessageSize="64k"{tls_files})
module(load="imtcp")
module(load="imudp")
module(load="imuxsock" sysSock.use="off")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imuxsock" socket="{tuned}" useSpecialParser="off" parseHostname="on" ignoreTimestamp="off")
input(type="imuxsock" socket="{stock}")
{tls_inputs}template(name="fields" type="string"
         string="%inputname%|%syslogfacility%|%syslogseverity%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
if $app-name == "sensor" then {{
  action(type="omfile" file="{dir}/received.log" template="fields")
}}
"#,
            tcp = self.tcp_port,
            udp = self.udp_port,
            tuned = self.tuned_socket().display(),
            stock = self.stock_socket().display(),
        );
        std::fs::write(self.dir.path().join("rsyslog.conf"), config).unwrap();
    }

    /// Starts rsyslogd (again, on the same ports) and waits until every
    /// input is bound.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let dir = self.dir.path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("rsyslogd.out"))
            .unwrap();
        let mut command = match &self.options.netns {
            None => Command::new(&self.binary),
            Some(netns) => {
                // `ip netns exec` execs rsyslogd: the pid stays its own.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&self.binary);
                command
            }
        };
        let child = command
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            // RFC 3164 times carry no zone; the sink writes UTC.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run rsyslogd");
        self.child = Some(child);

        let started = Instant::now();
        loop {
            let (tcp_up, udp_up) = match &self.options.netns {
                None => (
                    TcpStream::connect(("127.0.0.1", self.tcp_port)).is_ok(),
                    // rsyslogd holds the UDP port once we can no longer bind it.
                    UdpSocket::bind(("127.0.0.1", self.udp_port)).is_err(),
                ),
                Some(netns) => {
                    let mut tcp_ports = vec![self.tcp_port];
                    if self.options.tls.is_some() {
                        tcp_ports.extend([self.tls_port, self.mtls_port]);
                    }
                    (
                        tcp_ports
                            .iter()
                            .all(|&port| listening_in(netns, "-Hltn", port)),
                        listening_in(netns, "-Hlun", self.udp_port),
                    )
                }
            };
            let tls_up = self.options.tls.is_none()
                || self.options.netns.is_some()
                || [self.tls_port, self.mtls_port]
                    .iter()
                    .all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok());
            let sockets_up = self.tuned_socket().exists() && self.stock_socket().exists();
            if tcp_up && udp_up && tls_up && sockets_up {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rsyslogd exited ({status}) at start:\n{}", self.output());
            }
            assert!(
                started.elapsed() < WAIT,
                "rsyslogd not ready after {WAIT:?} (tcp {tcp_up}, udp {udp_up}, sockets {sockets_up}):\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to our rsyslogd, then wait until it has exited.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("rsyslogd is running");
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: signals the process we spawned, by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rsyslogd did not stop within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A restart binds the same paths; rsyslogd removes them on exit.
        let _ = std::fs::remove_file(self.tuned_socket());
        let _ = std::fs::remove_file(self.stock_socket());
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.out")).unwrap_or_default()
    }

    /// Waits until at least `count` lines were written, then a little more
    /// so that surplus lines (duplicates) would show too.
    pub async fn wait_for_lines(&self, count: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let lines = read_received(&self.received_path());
            if lines.len() >= count {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return read_received(&self.received_path());
            }
            assert!(
                started.elapsed() < WAIT,
                "rsyslogd wrote {} of {count} lines within {WAIT:?}:\n{}",
                lines.len(),
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether something in `netns` listens on `port` (`ss` with `flags`).
fn listening_in(netns: &str, flags: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns, "ss", flags])
        .arg(format!("sport = :{port}"))
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One line of the `fields` template.
#[derive(Debug)]
pub struct Received {
    pub input: String,
    pub facility: u8,
    pub severity: u8,
    pub protocol_version: String,
    pub time_reported: OffsetDateTime,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
}

pub fn read_received(path: &Path) -> Vec<Received> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.splitn(11, '|').collect();
            assert_eq!(fields.len(), 11, "unexpected line: {line}");
            Received {
                input: fields[0].to_owned(),
                facility: fields[1].parse().unwrap(),
                severity: fields[2].parse().unwrap(),
                protocol_version: fields[3].to_owned(),
                time_reported: OffsetDateTime::parse(fields[4], &Rfc3339)
                    .unwrap_or_else(|err| panic!("time {:?}: {err}", fields[4])),
                hostname: fields[5].to_owned(),
                app_name: fields[6].to_owned(),
                procid: fields[7].to_owned(),
                msgid: fields[8].to_owned(),
                structured_data: fields[9].to_owned(),
                // RFC 3164's MSG keeps the space after the tag's colon.
                msg: fields[10]
                    .strip_prefix(' ')
                    .unwrap_or(fields[10])
                    .to_owned(),
            }
        })
        .collect()
}
