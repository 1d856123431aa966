//! Two network namespaces joined by a veth pair: an injector host and a
//! sensor host whose interface models a span port (up, no address). No
//! default route anywhere; everything is removed on drop (and stale copies
//! of the same names before creation). [`SensorCommand`] is the one place
//! tests build `sensor run` / `sensor inspect` command lines for it.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Testbed {
    pub injector_ns: String,
    pub sensor_ns: String,
    pub injector_if: String,
    pub sensor_if: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

fn in_ns(ns: &str, args: &[&str]) {
    let status = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run ip netns exec");
    assert!(status.success(), "in {ns}: {} failed", args.join(" "));
}

impl Testbed {
    /// `tag` keeps concurrent tests apart (a few letters: interface names
    /// are limited to 15 bytes).
    pub fn new(tag: &str) -> Testbed {
        let id = std::process::id() % 100_000;
        let bed = Testbed {
            injector_ns: format!("sen-{tag}-inj-{id}"),
            sensor_ns: format!("sen-{tag}-sen-{id}"),
            injector_if: format!("i{tag}{id}"),
            sensor_if: format!("s{tag}{id}"),
        };
        bed.remove();
        ip(&["netns", "add", &bed.injector_ns]);
        ip(&["netns", "add", &bed.sensor_ns]);
        for ns in [&bed.injector_ns, &bed.sensor_ns] {
            // No IPv6 autoconfiguration chatter: the test decides every frame.
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            in_ns(
                ns,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            );
            in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        bed.add_link();
        bed
    }

    /// Creates the veth pair between the namespaces and brings it up.
    pub fn add_link(&self) {
        ip(&[
            "link",
            "add",
            &self.injector_if,
            "netns",
            &self.injector_ns,
            "type",
            "veth",
            "peer",
            "name",
            &self.sensor_if,
            "netns",
            &self.sensor_ns,
        ]);
        for (ns, ifname) in [
            (&self.injector_ns, &self.injector_if),
            (&self.sensor_ns, &self.sensor_if),
        ] {
            in_ns(ns, &["ip", "link", "set", ifname, "up"]);
        }
    }

    /// Deletes the veth pair (both ends), as a driver reload would.
    pub fn delete_link(&self) {
        in_ns(&self.sensor_ns, &["ip", "link", "del", &self.sensor_if]);
    }

    /// Takes the sensor's end down and up again, without deleting it.
    pub fn bounce_sensor_link(&self) {
        for state in ["down", "up"] {
            in_ns(
                &self.sensor_ns,
                &["ip", "link", "set", &self.sensor_if, state],
            );
        }
    }

    fn remove(&self) {
        for ns in [&self.injector_ns, &self.sensor_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The id of the XDP program on the sensor interface, if one is attached.
    pub fn xdp_prog_id(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.sensor_ns,
                "ip",
                "-d",
                "link",
                "show",
                "dev",
            ])
            .arg(&self.sensor_if)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let at = text.find("prog/xdp id ")?;
        Some(text[at..].split_whitespace().nth(2)?.to_string())
    }

    /// `sensor run --iface SENSOR_IF --rules RULES`, in the sensor namespace.
    pub fn sensor_run(&self, rules: &Path) -> SensorCommand<'_> {
        SensorCommand::new(self, "run").arg("--rules").arg(rules)
    }

    /// `sensor inspect --iface SENSOR_IF`, in the sensor namespace.
    pub fn sensor_inspect(&self) -> SensorCommand<'_> {
        SensorCommand::new(self, "inspect")
    }

    /// Sends the frames of `pcap` from the injector side, bounded in rate
    /// and (by the file) in count.
    pub fn inject(&self, pcap: &Path, pps: u32) {
        inject_from(&self.injector_ns, &self.injector_if, pcap, pps);
    }

    /// A second injector namespace joined to the sensor namespace by its
    /// own veth pair: another span port for the same sensor. `tag` as in
    /// [`Testbed::new`] (and different from the testbed's).
    pub fn add_peer(&self, tag: &str) -> Peer {
        self.add_peer_at(tag, None)
    }

    /// [`Testbed::add_peer`] whose sensor-side interface gets index
    /// `sensor_ifindex` (e.g. one above the kernel's directly indexed
    /// interface counters).
    pub fn add_peer_at(&self, tag: &str, sensor_ifindex: Option<u32>) -> Peer {
        let id = std::process::id() % 100_000;
        let peer = Peer {
            injector_ns: format!("sen-{tag}-inj-{id}"),
            sensor_ns: self.sensor_ns.clone(),
            injector_if: format!("i{tag}{id}"),
            sensor_if: format!("s{tag}{id}"),
        };
        peer.remove();
        ip(&["netns", "add", &peer.injector_ns]);
        in_ns(
            &peer.injector_ns,
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        in_ns(
            &peer.injector_ns,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        match sensor_ifindex {
            None => ip(&[
                "link",
                "add",
                &peer.injector_if,
                "netns",
                &peer.injector_ns,
                "type",
                "veth",
                "peer",
                "name",
                &peer.sensor_if,
                "netns",
                &peer.sensor_ns,
            ]),
            // Created in the sensor's namespace, where the index must hold.
            Some(index) => in_ns(
                &peer.sensor_ns,
                &[
                    "ip",
                    "link",
                    "add",
                    &peer.sensor_if,
                    "index",
                    &index.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer.injector_if,
                    "netns",
                    &peer.injector_ns,
                ],
            ),
        }
        in_ns(
            &peer.injector_ns,
            &["ip", "link", "set", &peer.injector_if, "up"],
        );
        in_ns(
            &peer.sensor_ns,
            &["ip", "link", "set", &peer.sensor_if, "up"],
        );
        peer
    }
}

/// tcpreplay of `pcap` on `ifname` inside `ns`, at `pps` packets a second.
fn inject_from(ns: &str, ifname: &str, pcap: &Path, pps: u32) {
    let output = Command::new("ip")
        .args(["netns", "exec", ns, "tcpreplay", "-q"])
        .arg(format!("--intf1={ifname}"))
        .arg(format!("--pps={pps}"))
        .arg(pcap)
        .output()
        .expect("run tcpreplay (scripts/bootstrap.sh installs it)");
    assert!(
        output.status.success(),
        "tcpreplay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Another injector host on its own veth pair into the testbed's sensor
/// namespace ([`Testbed::add_peer`]); removed on drop.
pub struct Peer {
    pub injector_ns: String,
    sensor_ns: String,
    pub injector_if: String,
    pub sensor_if: String,
}

impl Peer {
    /// Sends the frames of `pcap` from this peer, bounded as [`Testbed::inject`].
    pub fn inject(&self, pcap: &Path, pps: u32) {
        inject_from(&self.injector_ns, &self.injector_if, pcap, pps);
    }

    /// Deletes this peer's veth pair (both ends).
    pub fn delete_link(&self) {
        in_ns(&self.sensor_ns, &["ip", "link", "del", &self.sensor_if]);
    }

    fn remove(&self) {
        // The pair goes with the namespace that holds its injector end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.injector_ns])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.remove();
    }
}

/// GET http://`addr`/metrics from inside the sensor's namespace (its
/// loopback is not the test's).
pub fn scrape(bed: &Testbed, addr: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &bed.sensor_ns, "/usr/bin/python3", "-c"])
        .arg(format!(
            "import urllib.request; print(urllib.request.urlopen('http://{addr}/metrics', timeout=5).read().decode())"
        ))
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The value of the sample `series` (name and labels, exactly) in a scrape.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls `ready` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A child process we started: SIGTERM on drop if still running.
pub struct Started(pub Child);

impl Started {
    /// SIGTERM, then wait up to `limit` for a clean exit (SIGKILL after).
    pub fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signalling a child we spawned, by its PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The sensor binary of this build.
pub const SENSOR: &str = env!("CARGO_BIN_EXE_sensor");

/// `sensor run --iface sensor-none0 --rules RULES` outside any testbed,
/// for settings refused before anything is attached (the interface is
/// never reached).
pub fn sensor_run_unattached(rules: &Path) -> Command {
    let mut command = Command::new(SENSOR);
    command
        .args(["run", "--iface", "sensor-none0", "--rules"])
        .arg(rules)
        .stdin(Stdio::null());
    command
}

/// Waits (30 s at most) until `stderr` holds `text`; panics with the log.
fn wait_until_logged(_process: &Started, stderr: &Path, text: &str) {
    let log = || std::fs::read_to_string(stderr).unwrap_or_default();
    let ready = wait_for(Duration::from_secs(30), || log().contains(text));
    assert!(ready, "the sensor never logged {text:?}:\n{}", log());
}

/// A `sensor` command on the testbed's sensor interface, inside the sensor
/// namespace: `ip netns exec NS sensor SUBCOMMAND --iface IF ...`.
pub struct SensorCommand<'b> {
    bed: &'b Testbed,
    subcommand: &'static str,
    /// `--iface`: the testbed's sensor interface unless [`SensorCommand::on_iface`].
    iface: String,
    args: Vec<OsString>,
}

impl<'b> SensorCommand<'b> {
    fn new(bed: &'b Testbed, subcommand: &'static str) -> SensorCommand<'b> {
        SensorCommand {
            bed,
            subcommand,
            iface: bed.sensor_if.clone(),
            args: Vec::new(),
        }
    }

    /// The first `--iface` names `iface` instead of the testbed's interface.
    pub fn on_iface(mut self, iface: &str) -> Self {
        self.iface = iface.to_owned();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<A: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// `--json PATH`.
    pub fn json(self, path: &Path) -> Self {
        self.arg("--json").arg(path)
    }

    /// `--metrics ADDR`.
    pub fn metrics(self, addr: &str) -> Self {
        self.arg("--metrics").arg(addr)
    }

    /// The command, stdin closed, output not redirected yet.
    pub fn command(&self) -> Command {
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.bed.sensor_ns,
                SENSOR,
                self.subcommand,
            ])
            .arg("--iface")
            .arg(&self.iface)
            .args(&self.args)
            .stdin(Stdio::null());
        command
    }

    /// Runs it to the end.
    pub fn output(&self) -> Output {
        self.command().output().expect("run the sensor")
    }

    /// Starts it, stdout to `stdout` (or nowhere), stderr to `stderr`.
    pub fn spawn(&self, stdout: Option<&Path>, stderr: &Path) -> Started {
        let stdout = match stdout {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("stdout file")),
            None => Stdio::null(),
        };
        let child = self
            .command()
            .stdout(stdout)
            .stderr(std::fs::File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("start the sensor");
        Started(child)
    }

    /// Starts it and waits until it is ready: `sensor run` attached, or
    /// `sensor inspect` listening.
    pub fn start(&self, stdout: Option<&Path>, stderr: &Path) -> Started {
        let started = self.spawn(stdout, stderr);
        let ready = match self.subcommand {
            "inspect" => "listening on",
            _ => "sensor attached",
        };
        wait_until_logged(&started, stderr, ready);
        started
    }
}
