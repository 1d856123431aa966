//! `sensor`: wires the command line to the library. Exit codes: 0 ok,
//! 1 runtime failure, 2 bad usage or invalid rules / configuration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use sensor::cli::{Cli, Command, ReplayArgs, RulesCommand, RunArgs};
use sensor::config::{Config, PlacedPath};
use sensor::replay::ReplayOptions;
use sensor::rules::{self, CompiledRules};
use sensor::run::{RunSettings, run};
use sensor::settings::{AttachMode, DropPolicy, SensorMode};
use sensor::sinks::json::{JsonSink, JsonTarget};
use sensor::sinks::redis::RedisTarget;
use sensor::sinks::syslog::SyslogTarget;
use sensor::sinks::syslog_tls::SyslogTlsFiles;
use sensor_common::alert::DEFAULT_ALERT_PACKET_BYTES;

const EXIT_RUNTIME: u8 = 1;
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SENSOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => cmd_run(*args),
        Command::Replay(args) => cmd_replay(args),
        Command::Rules {
            command: RulesCommand::Check { path },
        } => cmd_rules_check(&path),
        Command::Inspect(args) => sensor::inspect::main(args).map_err(|err| Failure {
            code: err.exit_code(),
            message: err.to_string(),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("sensor: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn invalid(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: message.to_string(),
        }
    }

    fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_RUNTIME,
            message: message.to_string(),
        }
    }
}

/// Loads, validates and compiles a rule file or directory.
fn load_rules(path: &Path, default_block_seconds: u32) -> Result<CompiledRules, String> {
    let set = rules::load_path(path).map_err(|err| err.to_string())?;
    Ok(rules::compile(&set, default_block_seconds))
}

fn cmd_rules_check(path: &Path) -> Result<(), Failure> {
    let set = rules::load_path(path).map_err(Failure::invalid)?;
    let compiled = rules::compile(&set, Config::DEFAULT_BLOCK_SECONDS);
    print!("{}", rules::summary(&set, &compiled));
    Ok(())
}

fn cmd_replay(args: ReplayArgs) -> Result<(), Failure> {
    let compiled =
        load_rules(&args.rules, Config::DEFAULT_BLOCK_SECONDS).map_err(Failure::invalid)?;
    let mut sink = JsonSink::open(JsonTarget::parse(&args.json))
        .map_err(|err| Failure::runtime(format!("cannot open {}: {err}", args.json)))?;
    let options = ReplayOptions {
        packet_bytes: args.packet_bytes,
        community_id_seed: args.community_id_seed,
    };
    let result = sensor::replay::replay_with(&args.pcap, &compiled, options, &mut |alert| {
        sink.write_line(&alert.to_json_line());
        Ok(())
    });
    sink.flush();
    let stats = result.map_err(Failure::runtime)?;
    tracing::info!(
        packets = stats.packets,
        not_ip = stats.not_ip,
        alert_lines = stats.alerts,
        matched = stats.alert_count,
        "replay done"
    );
    if sink.errors > 0 {
        return Err(Failure::runtime(format!(
            "{} alert lines could not be written",
            sink.errors
        )));
    }
    Ok(())
}

/// `--iface` given several times: at most `MAX_IFACES`, no name twice
/// (each name was checked by the flag's parser).
fn check_cli_ifaces(ifaces: &[String]) -> Result<(), String> {
    let max = sensor_common::alert::MAX_IFACES as usize;
    if ifaces.len() > max {
        return Err(format!(
            "{} interfaces given with --iface; one sensor watches at most {max}",
            ifaces.len()
        ));
    }
    for (at, name) in ifaces.iter().enumerate() {
        if ifaces[..at].contains(name) {
            return Err(format!("--iface {name} is given twice"));
        }
    }
    Ok(())
}

fn cmd_run(args: RunArgs) -> Result<(), Failure> {
    let config = match &args.config {
        Some(path) => sensor::config::load_config(path).map_err(Failure::invalid)?,
        None => Config::default(),
    };
    // The command line's interfaces replace the config file's.
    let ifaces = if args.iface.is_empty() {
        config.ifaces.clone()
    } else {
        check_cli_ifaces(&args.iface).map_err(Failure::invalid)?;
        args.iface
    };
    if ifaces.is_empty() {
        return Err(Failure::invalid(
            "no interface: give --iface (or `iface` / `ifaces` in --config)",
        ));
    }
    let rules_path: PathBuf = args
        .rules
        .or(config.rules.clone())
        .ok_or_else(|| Failure::invalid("no rules: give --rules (or `rules` in --config)"))?;
    let block_seconds = config.drop.block_seconds;
    let compiled = load_rules(&rules_path, block_seconds).map_err(Failure::invalid)?;

    let config_name = args
        .config
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let tls_file =
        |flag: Option<PathBuf>, key: &Option<PlacedPath>, flag_name: &str, key_name| match (
            flag, key,
        ) {
            (Some(path), _) => Some((path, flag_name.to_owned())),
            (None, Some(placed)) => {
                Some((placed.path.clone(), placed.role(key_name, &config_name)))
            }
            (None, None) => None,
        };
    let syslog_files = SyslogTlsFiles {
        ca: tls_file(
            args.syslog_ca,
            &config.syslog_ca,
            "--syslog-ca",
            "syslog_ca",
        ),
        cert: tls_file(
            args.syslog_cert,
            &config.syslog_cert,
            "--syslog-cert",
            "syslog_cert",
        ),
        key: tls_file(
            args.syslog_key,
            &config.syslog_key,
            "--syslog-key",
            "syslog_key",
        ),
    };
    // A config file's URL was parsed (and located) when the file was read.
    let syslog_target = match args.syslog {
        Some(url) => Some(SyslogTarget::parse(&url).map_err(Failure::invalid)?),
        None => config.syslog.clone(),
    };
    let (syslog, syslog_tls) = match syslog_target {
        Some(target) => {
            let format = args
                .syslog_format
                .or(config.syslog_format)
                .unwrap_or_default();
            let tls = syslog_files
                .client_config(Some(&target), format)
                .map_err(Failure::invalid)?;
            (Some((target, format)), tls)
        }
        None => {
            syslog_files
                .client_config(None, Default::default())
                .map_err(Failure::invalid)?;
            (None, None)
        }
    };
    let redis_ca = tls_file(args.redis_ca, &config.redis_ca, "--redis-ca", "redis_ca");
    let redis = match args.redis.or(config.redis.clone()) {
        Some(url) => {
            RedisTarget::check_url(&url).map_err(Failure::invalid)?;
            let ca_pem = RedisTarget::read_ca(&url, redis_ca).map_err(Failure::invalid)?;
            Some(RedisTarget {
                ca_pem,
                url,
                key: args
                    .redis_key
                    .or(config.redis_key.clone())
                    .unwrap_or_else(|| RedisTarget::DEFAULT_KEY.to_owned()),
                mode: args.redis_mode.or(config.redis_mode).unwrap_or_default(),
                stream_maxlen: args
                    .redis_stream_maxlen
                    .or(config.redis_stream_maxlen)
                    .unwrap_or(RedisTarget::DEFAULT_STREAM_MAXLEN),
            })
        }
        None => {
            if let Some((_, role)) = redis_ca {
                return Err(Failure::invalid(format!(
                    "{role} is only for a rediss:// Redis sink, and no --redis is given"
                )));
            }
            None
        }
    };
    // JSON to stdout is the default only when no other sink is given.
    let json_spec = args
        .json
        .or(config.json.clone())
        .or_else(|| (syslog.is_none() && redis.is_none()).then(|| "-".to_string()));
    let json = match json_spec {
        Some(spec) => Some(
            JsonSink::open(JsonTarget::parse(&spec))
                .map_err(|err| Failure::runtime(format!("cannot open {spec}: {err}")))?,
        ),
        None => None,
    };

    let settings = RunSettings {
        ifaces,
        mode: args.mode.or(config.mode).unwrap_or(SensorMode::Ids),
        attach: args
            .xdp_mode
            .or(config.xdp_mode)
            .unwrap_or(AttachMode::Auto),
        json,
        syslog,
        syslog_tls,
        metrics: args.metrics.or(config.metrics),
        packet_bytes: args
            .packet_bytes
            .or(config.packet_bytes)
            .unwrap_or(DEFAULT_ALERT_PACKET_BYTES),
        community_id_seed: args
            .community_id_seed
            .or(config.community_id_seed)
            .unwrap_or(0),
        drop_policy: DropPolicy {
            allowlist: config.drop.allowlist.clone(),
            blocklist: config.drop.blocklist.clone(),
            dry_run: args.dry_run || config.drop.dry_run,
            block: config.drop.block,
            maps: config.drop.maps,
        },
        block_state: config.drop.state_file.clone(),
        redis,
        decap: config.decap.0,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::runtime(format!("starting the runtime: {err}")))?;
    let reload = move || load_rules(&rules_path, block_seconds);
    let result = runtime.block_on(run(settings, compiled, reload));
    let _ = std::io::stdout().flush();
    result.map_err(Failure::runtime)
}
