//! The node's typed configuration: a TOML file (every field optional), then command-line flags
//! and `TELEX_*` variables on top (see `telexd --help`). `telex.example.toml` at the repository
//! root lists every field with its default; a test keeps the two in sync.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id in the cluster; unique among its members. An id may come back only as
    /// the same node, or as a new one after `telex cluster remove-node` (a StatefulSet reuses
    /// ordinals when it scales down and up again).
    pub node_id: u64,
    /// Take the node id from the host name's trailing ordinal plus one (`telex-0` is node 1,
    /// `telex-2` node 3): a Kubernetes StatefulSet's pods. Overrides `node_id`.
    pub node_id_from_hostname: bool,
    /// The node-to-node address other nodes dial to reach this one (`host:port`), when it is not
    /// the address `listen.node` binds: a pod's DNS name behind `0.0.0.0:7401`. Empty: the bound
    /// address, or the host name with the bound port when that binds every interface.
    pub advertise_addr: String,
    /// Where clients reach this node's native API and XMPP listener (`host:port`), when each
    /// node is reachable by clients on its own (per-node DNS names, not only a shared load
    /// balancer): a stopping node then sends its clients to another node's addresses (XMPP
    /// `see-other-host`; native: the `telex-reconnect-to` metadata). Empty: not advertised, and
    /// clients of a stopping node reconnect where they first connected. `auto`: the host of
    /// the advertised node address with the listener's bound port.
    pub advertise_client_addr: String,
    pub advertise_xmpp_addr: String,
    /// This node's failure domain (`topology.kubernetes.io/zone`), for replica placement: no
    /// two replicas of a group in one zone while there are at least R zones. Empty: unknown.
    pub zone: String,
    /// Where the node keeps its RocksDB and lock file.
    pub data_dir: PathBuf,
    /// Tenant created on first start when non-empty.
    pub bootstrap_tenant: String,
    /// Node-to-node addresses of cluster members to join through on first start, comma
    /// separated; empty: a new node starts its own cluster. A node whose own advertised address
    /// is first in the list starts the cluster once every other listed node answered that it
    /// belongs to none (the first pod of a fresh StatefulSet); an unreachable node blocks it.
    /// The others join through whichever listed node answers.
    pub join: String,
    /// A backup (`telex backup create DIR`) to start a new cluster from, into an empty data
    /// directory; empty: none.
    pub restore_from: PathBuf,
    /// How long a shutdown (SIGTERM) may take: the node stops taking sessions, hands its
    /// leaderships to other replicas, ends its sessions and stops within this time. Keep it
    /// below the pod's `terminationGracePeriodSeconds`.
    pub shutdown_grace_secs: u64,
    pub listen: Listen,
    /// mTLS on the node-to-node listener and towards peers; off when the paths are empty.
    pub node_tls: NodeTls,
    pub xmpp: Xmpp,
    pub raft: Raft,
    pub auth: Auth,
    pub limits: Limits,
    pub storage: Storage,
    pub log: Log,
    pub traces: Traces,
    /// Tenants whose directory comes from an LDAP server.
    pub ldap: Vec<telex_ldap::LdapConfig>,
}

/// Message traces over OTLP/gRPC (OpenTelemetry): one trace per sampled message, from its
/// send through both archive commits to each device it is handed to. Off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Traces {
    /// The collector's OTLP gRPC endpoint, e.g. "http://otel-collector:4317"; empty: off.
    pub otlp_endpoint: String,
    /// The share of messages traced, 0 to 1 (decided from the message id, the same on every node).
    pub sample_ratio: f64,
    /// The `service.name` of the spans.
    pub service_name: String,
}

impl Default for Traces {
    fn default() -> Self {
        Traces { otlp_endpoint: String::new(), sample_ratio: 0.01, service_name: "telexd".into() }
    }
}

/// PEM files. Each node's certificate, issued by the cluster CA, carries the DNS names
/// `telex-node` and `node-<ID>` (its identity).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl NodeTls {
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Reads the three files.
    pub fn load(&self) -> Result<Option<telex_raft::identity::NodeTls>, String> {
        if !self.enabled() {
            return Ok(None);
        }
        let read = |field: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("node_tls.{field}: cannot read {}: {e}", p.display()))
        };
        Ok(Some(telex_raft::identity::NodeTls {
            cert_pem: read("cert", &self.cert)?,
            key_pem: read("key", &self.key)?,
            ca_pem: read("ca", &self.ca)?,
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Client gRPC API.
    pub client: SocketAddr,
    /// Node-to-node gRPC (Raft).
    pub node: SocketAddr,
    /// Admin gRPC API. Keep it on loopback unless it is firewalled.
    pub admin: SocketAddr,
    /// HTTP: /healthz, /readyz, /metrics, and XMPP over WebSocket at /xmpp-websocket.
    pub http: SocketAddr,
    /// XMPP client-to-server with STARTTLS.
    pub xmpp: SocketAddr,
    /// XMPP client-to-server with TLS from the first byte (XEP-0368).
    pub xmpp_tls: SocketAddr,
}

/// The XMPP gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Xmpp {
    /// PEM certificate chain and key for c2s TLS; empty: a self-signed certificate for
    /// `localhost` and the bootstrap tenant, made at start-up (for loopback development).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse authentication without TLS on connections that are not from loopback.
    pub require_tls: bool,
    /// Time a connection has to authenticate.
    pub preauth_timeout_secs: u64,
    /// How long a dropped stream-managed session waits to be resumed (XEP-0198).
    pub resume_timeout_secs: u64,
    /// Largest stanza accepted; a bigger one ends the stream with `policy-violation`.
    pub max_stanza_bytes: usize,
}

impl Default for Xmpp {
    fn default() -> Self {
        Xmpp {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            require_tls: true,
            preauth_timeout_secs: 30,
            resume_timeout_secs: 300,
            max_stanza_bytes: 256 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Raft {
    /// Number of shard groups. Fixed when the cluster is created.
    pub shards: u32,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries applied between two snapshots of a group.
    pub snapshot_after_entries: u64,
    /// How long a write waits for commit before it is refused as unavailable.
    pub write_timeout_ms: u64,
    /// Voting replicas per group (R); a group has fewer while the cluster has fewer nodes.
    pub replicas: u32,
    /// Log entries kept behind a snapshot: a replica further behind catches up by snapshot.
    pub keep_log_entries: u64,
    /// Leaderships are spread evenly again (a few groups at a time) once they have been
    /// uneven, with every node up and no replica moving, for this long. 0: only on
    /// `telex cluster rebalance`.
    pub balance_leaders_after_secs: u64,
    /// Peers dialled at another address than the one they advertise, by node id
    /// (`{ 2 = "10.0.0.2:7401" }`): tunnels, NAT, fault-injecting test proxies.
    pub peer_routes: BTreeMap<String, String>,
}

impl Raft {
    /// `peer_routes` with parsed node ids.
    pub fn routes(&self) -> Result<BTreeMap<u64, String>, String> {
        let parse = |(id, addr): (&String, &String)| match id.parse::<u64>() {
            Ok(n) if n > 0 => Ok((n, addr.clone())),
            _ => Err(format!("raft.peer_routes: {id:?} is not a node id")),
        };
        self.peer_routes.iter().map(parse).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// PBKDF2 iterations for new SCRAM credentials (at least 4096).
    pub scram_iterations: u32,
    /// Lifetime of a session token.
    pub token_ttl_secs: u64,
    /// Password hashes computed in parallel.
    pub hash_concurrency: usize,
    /// A super-admin token for the admin API, the same on every node (at least 16
    /// characters); empty: none, and the first start writes a super-admin's token to
    /// DATA_DIR/admin-token instead.
    pub admin_token: String,
    /// Read that token from this file (a mounted secret) instead.
    pub admin_token_file: PathBuf,
}

impl Auth {
    /// The configured bootstrap admin token, from the file when one is named.
    pub fn bootstrap_admin_token(&self) -> Result<String, String> {
        if self.admin_token_file.as_os_str().is_empty() {
            return Ok(self.admin_token.clone());
        }
        std::fs::read_to_string(&self.admin_token_file)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("auth.admin_token_file {}: {e}", self.admin_token_file.display()))
    }
}

/// Defaults for every tenant; `telex tenant limits` overrides them per tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message body accepted.
    pub max_message_bytes: usize,
    /// Devices connected at once per user.
    pub sessions_per_user: usize,
    /// Messages sent to a device beyond what it acknowledged.
    pub delivery_window: u64,
    /// A device that stops reading for this long is disconnected (it catches up on reconnect).
    pub stall_timeout_secs: u64,
    /// Messages one user may send per second on average, and in a burst.
    pub sends_per_second: u32,
    pub send_burst: u32,
    /// Messages one member may say in one room per second on average, and in a burst (counted
    /// on each node the member says them through).
    pub room_messages_per_second: u32,
    pub room_message_burst: u32,
    /// Rooms a tenant may have.
    pub rooms_per_tenant: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            sessions_per_user: 10,
            delivery_window: 256,
            stall_timeout_secs: 30,
            sends_per_second: 100,
            send_burst: 200,
            room_messages_per_second: 20,
            room_message_burst: 40,
            rooms_per_tenant: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    pub block_cache_mb: usize,
    /// The least time between two group-commit fsyncs, in microseconds: commits arriving
    /// meanwhile share the next one (more commits per fsync under load, for at most this much
    /// more latency). 0 syncs as soon as the previous sync is done.
    pub sync_interval_us: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter such as "info" or "telex_raft=debug,info"; RUST_LOG wins when set.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            node_id_from_hostname: false,
            advertise_addr: String::new(),
            advertise_client_addr: String::new(),
            advertise_xmpp_addr: String::new(),
            zone: String::new(),
            data_dir: PathBuf::from("./telex-data"),
            bootstrap_tenant: "localhost".into(),
            join: String::new(),
            restore_from: PathBuf::new(),
            shutdown_grace_secs: 30,
            listen: Listen::default(),
            node_tls: NodeTls::default(),
            xmpp: Xmpp::default(),
            raft: Raft::default(),
            auth: Auth::default(),
            limits: Limits::default(),
            storage: Storage::default(),
            log: Log::default(),
            traces: Traces::default(),
            ldap: Vec::new(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Listen { client: at(7400), node: at(7401), admin: at(7402), http: at(7480), xmpp: at(5222), xmpp_tls: at(5223) }
    }
}

impl Default for Raft {
    fn default() -> Self {
        Raft {
            shards: 64,
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 20_000,
            write_timeout_ms: 10_000,
            replicas: 3,
            keep_log_entries: 1000,
            balance_leaders_after_secs: 30,
            peer_routes: BTreeMap::new(),
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            scram_iterations: 4096,
            token_ttl_secs: 30 * 24 * 3600,
            hash_concurrency: 2,
            admin_token: String::new(),
            admin_token_file: PathBuf::new(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage { block_cache_mb: 64, sync_interval_us: 2000 }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log { format: "text".into(), filter: "info,openraft=warn".into() }
    }
}

impl Config {
    /// Parses a TOML document; errors name the offending field.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        Ok(config)
    }

    /// Checks values that parse but make no sense. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        telex_accounts::LdapState::new(self.ldap.clone())?;
        let token = self.auth.bootstrap_admin_token()?;
        if !token.is_empty() && token.len() < telex_accounts::MIN_BOOTSTRAP_TOKEN {
            return Err(format!(
                "auth.admin_token: at least {} characters (it is a super-admin's password)",
                telex_accounts::MIN_BOOTSTRAP_TOKEN
            ));
        }
        let r = &self.raft;
        if self.node_id == 0 {
            return Err("node_id: must be at least 1".into());
        }
        if !(1..=4096).contains(&r.shards) {
            return Err(format!("raft.shards: {} is out of range 1..=4096", r.shards));
        }
        if r.heartbeat_ms == 0 || r.heartbeat_ms >= r.election_timeout_min_ms {
            return Err("raft.heartbeat_ms: must be above 0 and below raft.election_timeout_min_ms".into());
        }
        if r.election_timeout_min_ms >= r.election_timeout_max_ms {
            return Err("raft.election_timeout_min_ms: must be below raft.election_timeout_max_ms".into());
        }
        if r.snapshot_after_entries == 0 {
            return Err("raft.snapshot_after_entries: must be at least 1".into());
        }
        if !(1..=7).contains(&r.replicas) {
            return Err(format!("raft.replicas: {} is out of range 1..=7", r.replicas));
        }
        if self.storage.sync_interval_us > 100_000 {
            return Err(format!(
                "storage.sync_interval_us: {} is above 100000 (every commit would wait that long)",
                self.storage.sync_interval_us
            ));
        }
        r.routes()?;
        for (name, addr) in [
            ("advertise_addr", &self.advertise_addr),
            ("advertise_client_addr", &self.advertise_client_addr),
            ("advertise_xmpp_addr", &self.advertise_xmpp_addr),
        ] {
            if !addr.is_empty() && addr != "auto" {
                crate::entry::check_host_port(addr).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        for seed in crate::entry::seed_list(&self.join) {
            crate::entry::check_host_port(seed).map_err(|e| format!("join: {e}"))?;
        }
        let t = &self.node_tls;
        let set = [&t.cert, &t.key, &t.ca].iter().filter(|p| !p.as_os_str().is_empty()).count();
        if set != 0 && set != 3 {
            return Err("node_tls: set cert, key and ca together (or none)".into());
        }
        let x = &self.xmpp;
        if x.cert.as_os_str().is_empty() != x.key.as_os_str().is_empty() {
            return Err("xmpp: set cert and key together (or neither)".into());
        }
        if x.preauth_timeout_secs == 0 {
            return Err("xmpp.preauth_timeout_secs: must be at least 1".into());
        }
        if !(1024..=16 << 20).contains(&x.max_stanza_bytes) {
            return Err("xmpp.max_stanza_bytes: must be 1024 to 16777216".into());
        }
        let l = &self.limits;
        if l.room_messages_per_second == 0 || l.room_message_burst == 0 || l.rooms_per_tenant == 0 {
            return Err(
                "limits.room_messages_per_second, room_message_burst, rooms_per_tenant: must be at least 1".into()
            );
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            return Err("traces.sample_ratio: must be 0 to 1".into());
        }
        if !self.traces.otlp_endpoint.is_empty() && !self.traces.otlp_endpoint.starts_with("http") {
            return Err("traces.otlp_endpoint: must be an http:// or https:// URL".into());
        }
        if !(1..=3600).contains(&self.shutdown_grace_secs) {
            return Err("shutdown_grace_secs: must be 1 to 3600".into());
        }
        if r.write_timeout_ms == 0 {
            return Err("raft.write_timeout_ms: must be at least 1".into());
        }
        if self.auth.scram_iterations < 4096 {
            return Err(format!("auth.scram_iterations: {} is below the minimum of 4096", self.auth.scram_iterations));
        }
        if self.auth.hash_concurrency == 0 {
            return Err("auth.hash_concurrency: must be at least 1".into());
        }
        if self.auth.token_ttl_secs == 0 {
            return Err("auth.token_ttl_secs: must be at least 1".into());
        }
        let l = &self.limits;
        if l.max_message_bytes == 0 || l.max_message_bytes > 16 << 20 {
            return Err("limits.max_message_bytes: must be 1 to 16777216".into());
        }
        if l.sessions_per_user == 0 {
            return Err("limits.sessions_per_user: must be at least 1".into());
        }
        if l.delivery_window == 0 {
            return Err("limits.delivery_window: must be at least 1".into());
        }
        if l.sends_per_second == 0 || l.send_burst == 0 {
            return Err("limits.sends_per_second and limits.send_burst: must be at least 1".into());
        }
        if l.stall_timeout_secs == 0 {
            return Err("limits.stall_timeout_secs: must be at least 1".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(format!("log.format: {:?} is not \"text\" or \"json\"", self.log.format));
        }
        if !self.bootstrap_tenant.is_empty() {
            telex_types::Domain::parse(&self.bootstrap_tenant).map_err(|e| format!("bootstrap_tenant: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../telex.example.toml");

    #[test]
    fn example_file_lists_every_field_with_its_default() {
        let example: toml::Value = toml::from_str(EXAMPLE).expect("example parses");
        let defaults = toml::Value::try_from(Config::default()).expect("defaults serialize");
        assert_eq!(example, defaults, "telex.example.toml and Config::default() differ");
        Config::from_toml(EXAMPLE).unwrap().validate().unwrap();
    }

    #[test]
    fn unknown_and_invalid_fields_are_named() {
        let err = Config::from_toml("[raft]\nshardz = 3\n").unwrap_err();
        assert!(err.contains("shardz"), "{err}");
        let err = Config::from_toml("[raft]\nshards = \"many\"\n").unwrap_err();
        assert!(err.contains("shards"), "{err}");
        let bad = Config::from_toml("[raft]\nshards = 0\n").unwrap();
        assert!(bad.validate().unwrap_err().starts_with("raft.shards"));
        let bad = Config::from_toml("[auth]\nscram_iterations = 10\n").unwrap();
        assert!(bad.validate().unwrap_err().starts_with("auth.scram_iterations"));
    }
}
