//! `telexd`: runs one Telex node. Flags override the config file; see `telexd --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use telex_node::Config;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "telexd", version, about = "Telex instant-messaging server node")]
struct Args {
    /// TOML configuration file (see telex.example.toml).
    #[arg(long, env = "TELEX_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./telex-data].
    #[arg(long, env = "TELEX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Client gRPC listener [default: 127.0.0.1:7400].
    #[arg(long, env = "TELEX_CLIENT_ADDR")]
    client_addr: Option<SocketAddr>,
    /// Node-to-node listener [default: 127.0.0.1:7401].
    #[arg(long, env = "TELEX_NODE_ADDR")]
    node_addr: Option<SocketAddr>,
    /// Admin gRPC listener [default: 127.0.0.1:7402]. Keep it off public interfaces.
    #[arg(long, env = "TELEX_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// HTTP listener for /healthz, /readyz, /metrics, /xmpp-websocket [default: 127.0.0.1:7480].
    #[arg(long, env = "TELEX_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// XMPP c2s listener, STARTTLS [default: 127.0.0.1:5222].
    #[arg(long, env = "TELEX_XMPP_ADDR")]
    xmpp_addr: Option<SocketAddr>,
    /// XMPP c2s listener, direct TLS [default: 127.0.0.1:5223].
    #[arg(long, env = "TELEX_XMPP_TLS_ADDR")]
    xmpp_tls_addr: Option<SocketAddr>,
    /// This node's id [default: 1].
    #[arg(long, env = "TELEX_NODE_ID")]
    node_id: Option<u64>,
    /// Take the node id from the host name's trailing ordinal plus one (StatefulSet pods:
    /// telex-0 is node 1).
    #[arg(long, env = "TELEX_NODE_ID_FROM_HOSTNAME")]
    node_id_from_hostname: bool,
    /// The node-to-node address other nodes dial to reach this one (host:port), when it is not
    /// the listener's: e.g. $(POD_NAME).telex-headless:7401.
    #[arg(long, env = "TELEX_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// Where clients reach this node's native API (host:port), when each node is reachable on
    /// its own: a stopping node sends its clients to another node's.
    #[arg(long, env = "TELEX_ADVERTISE_CLIENT_ADDR")]
    advertise_client_addr: Option<String>,
    /// Where clients reach this node's XMPP listener (host:port), likewise (see-other-host).
    #[arg(long, env = "TELEX_ADVERTISE_XMPP_ADDR")]
    advertise_xmpp_addr: Option<String>,
    /// This node's failure domain (a Kubernetes node's topology.kubernetes.io/zone): no two
    /// replicas of a group are placed in one zone while there are enough zones.
    #[arg(long, env = "TELEX_ZONE")]
    zone: Option<String>,
    /// Join the cluster through these members' node-to-node addresses, comma separated (first
    /// start only). The node listed first starts the cluster when no other listed node has one.
    #[arg(long, env = "TELEX_JOIN")]
    join: Option<String>,
    /// Node-to-node mTLS: this node's certificate, its key, and the cluster CA (PEM files).
    #[arg(long, env = "TELEX_NODE_TLS_CERT")]
    node_tls_cert: Option<PathBuf>,
    #[arg(long, env = "TELEX_NODE_TLS_KEY")]
    node_tls_key: Option<PathBuf>,
    #[arg(long, env = "TELEX_NODE_TLS_CA")]
    node_tls_ca: Option<PathBuf>,
    /// Start a new cluster from this backup (`telex backup create DIR`), into an empty data
    /// directory.
    #[arg(long, env = "TELEX_RESTORE_FROM")]
    restore_from: Option<PathBuf>,
    /// Seconds a shutdown may take (hand-off included) [default: 30].
    #[arg(long, env = "TELEX_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Reach peer ID at ADDR instead of the address it advertises (repeatable): ID=ADDR.
    #[arg(long = "peer-route", value_name = "ID=ADDR")]
    peer_routes: Vec<String>,
    /// Number of shards, for a new cluster [default: 64].
    #[arg(long, env = "TELEX_SHARDS")]
    shards: Option<u32>,
    /// Seconds leaderships may stay uneven before they are spread again; 0: never by
    /// themselves [default: 30].
    #[arg(long, env = "TELEX_BALANCE_LEADERS_AFTER_SECS")]
    balance_leaders_after_secs: Option<u64>,
    /// A super-admin token for the admin API (at least 16 characters), accepted on every node
    /// configured with it; without one, the first start writes a token to DATA_DIR/admin-token.
    #[arg(long, env = "TELEX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "TELEX_LOG_FORMAT")]
    log_format: Option<String>,
}

fn load(args: Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.client_addr {
        config.listen.client = v;
    }
    if let Some(v) = args.node_addr {
        config.listen.node = v;
    }
    if let Some(v) = args.admin_addr {
        config.listen.admin = v;
    }
    if let Some(v) = args.http_addr {
        config.listen.http = v;
    }
    if let Some(v) = args.xmpp_addr {
        config.listen.xmpp = v;
    }
    if let Some(v) = args.xmpp_tls_addr {
        config.listen.xmpp_tls = v;
    }
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if args.node_id_from_hostname {
        config.node_id_from_hostname = true;
    }
    if config.node_id_from_hostname {
        let host = telex_node::entry::hostname().ok_or("--node-id-from-hostname: the host name is unknown")?;
        config.node_id =
            telex_node::entry::node_id_from_hostname(&host).map_err(|e| format!("--node-id-from-hostname: {e}"))?;
    }
    if let Some(v) = args.advertise_addr {
        config.advertise_addr = v;
    }
    if let Some(v) = args.advertise_client_addr {
        config.advertise_client_addr = v;
    }
    if let Some(v) = args.advertise_xmpp_addr {
        config.advertise_xmpp_addr = v;
    }
    if let Some(v) = args.zone {
        config.zone = v;
    }
    if let Some(v) = args.join {
        config.join = v;
    }
    if let Some(v) = args.node_tls_cert {
        config.node_tls.cert = v;
    }
    if let Some(v) = args.node_tls_key {
        config.node_tls.key = v;
    }
    if let Some(v) = args.node_tls_ca {
        config.node_tls.ca = v;
    }
    if let Some(v) = args.restore_from {
        config.restore_from = v;
    }
    if let Some(v) = args.shutdown_grace_secs {
        config.shutdown_grace_secs = v;
    }
    for route in args.peer_routes {
        let (id, addr) = route.split_once('=').ok_or(format!("--peer-route {route:?}: expected ID=ADDR"))?;
        config.raft.peer_routes.insert(id.to_string(), addr.to_string());
    }
    if let Some(v) = args.balance_leaders_after_secs {
        config.raft.balance_leaders_after_secs = v;
    }
    if let Some(v) = args.shards {
        config.raft.shards = v;
    }
    if let Some(v) = args.log_format {
        config.log.format = v;
    }
    if let Some(v) = args.admin_token {
        config.auth.admin_token = v;
    }
    config.validate().map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(config)
}

fn main() -> ExitCode {
    let config = match load(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("telexd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("telex").build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telexd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let traces = telex_node::telemetry::init_logging(&config.log.format, &config.log.filter, &config.traces);
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        let result = telex_node::run(config, shutdown).await;
        if let Some(provider) = traces {
            // Sends the spans still buffered; blocking, so off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telexd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT starts a clean shutdown.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
