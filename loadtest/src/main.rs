//! `telex-loadtest`: offers open-loop load to an XMPP server (Telex or any other) or to Telex's
//! native gRPC API, measures latency and throughput, and writes a report with plots.

mod driver;
mod grpc;
mod report;
mod run;
mod scenario;
mod sink;
mod stanzas;
mod stats;
mod xmpp;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::scenario::Scenario;

#[derive(Parser)]
#[command(name = "telex-loadtest", version, about = "Open-loop load tests for Telex and other XMPP servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario and writes the report.
    Run {
        /// A built-in scenario: smoke, chat, presence-storm, login-storm, reconnect-storm.
        #[arg(long, conflicts_with = "scenario")]
        preset: Option<String>,
        /// A scenario file (TOML; see loadtest/README.md).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Server addresses, comma-separated, connections spread over them (a cluster's nodes):
        /// XMPP c2s (plain TCP), or the client API with `--driver grpc`. Default: the local
        /// node's (127.0.0.1:5222, or 127.0.0.1:7400 for gRPC).
        #[arg(long, value_delimiter = ',')]
        server: Vec<SocketAddr>,
        /// Overrides the scenario's driver: xmpp or grpc.
        #[arg(long)]
        driver: Option<String>,
        /// Overrides the scenario's provision_command (creates users on other servers).
        #[arg(long)]
        provision_command: Option<String>,
        /// Telex admin API to provision users through; "none" if they exist already.
        #[arg(long, default_value = "127.0.0.1:7402")]
        admin: String,
        /// Report directory.
        #[arg(long, default_value = "loadtest-report")]
        out: PathBuf,
        /// Writes the sends as JSON lines for the history checker.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Overrides the scenario's measured duration.
        #[arg(long)]
        duration: Option<u64>,
        /// Overrides the scenario's message rate (msg/s over all users).
        #[arg(long)]
        rate: Option<f64>,
        /// Worker processes sharing the connections (a process may hold at most ~20,000).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Source addresses, one per worker in turn (default: 127.0.0.2, 127.0.0.3, ... with
        /// several workers), so more connections fit than one address's ports allow.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<std::net::IpAddr>,
    },
    /// One worker process of a run (started by `run --workers`); prints its figures as JSON.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        scenario_json: String,
        #[arg(long, value_delimiter = ',')]
        server: Vec<SocketAddr>,
        #[arg(long)]
        history: Option<PathBuf>,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        of: usize,
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        #[arg(long)]
        start_at_us: u64,
        #[arg(long)]
        run_id: String,
    },
    /// The tool's own ceiling: a scenario against an in-process endpoint that only
    /// acknowledges, so no result is the tool's limit in disguise.
    Ceiling {
        #[arg(long, default_value = "chat")]
        preset: String,
        /// Messages per second to offer.
        #[arg(long, default_value_t = 20000.0)]
        rate: f64,
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
    /// Lists the presets with their settings.
    Presets,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telex-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Presets => {
            for p in scenario::PRESETS {
                println!("# {p}\n{}", toml::to_string(&Scenario::preset(p).map_err(anyhow::Error::msg)?)?);
            }
            Ok(())
        }
        Command::Ceiling { preset, rate, duration } => {
            let mut s = Scenario::preset(&preset).map_err(anyhow::Error::msg)?;
            s.message_rate = rate;
            s.duration_secs = duration;
            s.validate().map_err(anyhow::Error::msg)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = listener.local_addr()?;
            let sink = tokio::spawn(sink::serve(listener));
            s.driver = scenario::Driver::Xmpp;
            let options = run::Options {
                servers: vec![server],
                admin: None,
                history: None,
                slice: (0, 1),
                source: None,
                start_at_us: None,
                run_id: run::new_run_id(),
            };
            let stats = run::run(&s, &options).await?;
            sink.abort();
            let from = (s.ramp_up_secs + s.warm_up_secs) as usize;
            let w = stats.summary(from, from + s.duration_secs as usize);
            println!(
                "tool ceiling ({} connections, one process): offered {rate} msg/s, sent {:.0}/s, acknowledged {:.0}/s, \
                 ack p50 {:.1} ms, p99 {:.1} ms, errors {:?}",
                stats.logins, w.sent_per_sec, w.acked_per_sec, w.ack_p50_ms, w.ack_p99_ms, w.errors
            );
            Ok(())
        }
        Command::Worker { scenario_json, server, history, index, of, source, start_at_us, run_id } => {
            let mut s: Scenario = serde_json::from_str(&scenario_json)?;
            // The parent provisioned.
            s.provision_command.clear();
            let options = run::Options {
                servers: server,
                admin: None,
                history,
                slice: (index, of),
                source,
                start_at_us: Some(start_at_us),
                run_id,
            };
            let stats = run::run(&s, &options).await?;
            println!("{}", stats.to_json());
            Ok(())
        }
        Command::Run {
            preset,
            scenario,
            server,
            driver,
            provision_command,
            admin,
            out,
            history,
            duration,
            rate,
            workers,
            sources,
        } => {
            let mut s = match (preset, scenario) {
                (Some(p), _) => Scenario::preset(&p).map_err(anyhow::Error::msg)?,
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path)?;
                    Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                (None, None) => Scenario::preset("smoke").map_err(anyhow::Error::msg)?,
            };
            if let Some(d) = duration {
                s.duration_secs = d;
            }
            if let Some(r) = rate {
                s.message_rate = r;
            }
            if let Some(c) = provision_command {
                s.provision_command = c;
            }
            if let Some(d) = driver {
                s.driver = toml::Value::String(d.clone())
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--driver: xmpp or grpc, not {d:?}"))?;
            }
            s.validate().map_err(anyhow::Error::msg)?;
            if s.rooms > 0 && history.is_some() {
                anyhow::bail!("--history: the history checker reads one-to-one messages; not with rooms yet");
            }
            let servers = match (server.is_empty(), s.driver) {
                (false, _) => server,
                (true, scenario::Driver::Xmpp) => vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
                (true, scenario::Driver::Grpc) => vec![SocketAddr::from(([127, 0, 0, 1], 7400))],
            };
            let options = run::Options {
                servers,
                admin: (admin != "none").then_some(admin),
                history,
                slice: (0, 1),
                source: sources.first().copied(),
                start_at_us: None,
                run_id: run::new_run_id(),
            };
            let stats = if workers > 1 {
                run::workers(&s, &options, workers, &sources).await?
            } else {
                run::run(&s, &options).await?
            };
            let from = (s.ramp_up_secs + s.warm_up_secs) as usize;
            let to = from + s.duration_secs as usize;
            let server_name = options.servers.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
            let result = report::Result {
                scenario: &s,
                server: &server_name,
                measured_from_sec: from,
                measured_to_sec: to,
                measured_from_unix_us: stats.sending_from_us + from as u64 * 1_000_000,
                measured_to_unix_us: stats.sending_from_us + to as u64 * 1_000_000,
                summary: stats.summary(from, to),
                seconds: report::per_second(&stats),
            };
            report::write(&out, &result)?;
            print!("{}", report::markdown(&result));
            eprintln!("report: {}", out.join("summary.md").display());
            Ok(())
        }
    }
}
