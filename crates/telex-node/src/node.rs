//! Start-up, serving and shutdown of one node.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use telex_accounts::{Accounts, AccountsConfig};
use telex_actors::{Limits, Messaging};
use telex_api::{AdminService, ClientService, GrpcRemote, SessionsService};
use telex_proto::v1::actors_server::ActorsServer;
use telex_proto::v1::admin_server::AdminServer;
use telex_proto::v1::client_server::ClientServer;
use telex_proto::v1::node_server::NodeServer;
use telex_proto::v1::relay_server::RelayServer;
use telex_proto::v1::sessions_server::SessionsServer;
use telex_raft::service::NodeService;
use telex_raft::{Applied, Groups, GroupsConfig};
use telex_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::entry::FirstStart;
use crate::http::{router, HttpState};
use crate::ledger::RaftLedger;
use crate::Config;

/// The addresses a node actually listens on (differs from the config with port 0).
#[derive(Clone, Debug, Serialize)]
pub struct Addrs {
    pub client: SocketAddr,
    pub node: SocketAddr,
    pub admin: SocketAddr,
    pub http: SocketAddr,
    pub xmpp: SocketAddr,
    pub xmpp_tls: SocketAddr,
}

/// A started node. Dropping it does not stop it: cancel the shutdown token, then `wait`.
pub struct RunningNode {
    pub addrs: Addrs,
    pub accounts: Arc<Accounts>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningNode {
    /// Waits until the node has shut down.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("node task panicked")?
    }
}

/// Serves until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Opens storage, binds every listener and starts serving. Returns once the listeners are bound;
/// readiness (leaders elected, bootstrap done) follows shortly and shows on `/readyz`.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunningNode> {
    config.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let _ = crate::telemetry::prometheus();

    let client_l = bind("clients", config.listen.client).await?;
    let node_l = bind("nodes", config.listen.node).await?;
    let admin_l = bind("admin", config.listen.admin).await?;
    let http_l = bind("http", config.listen.http).await?;
    let xmpp_l = bind("XMPP", config.listen.xmpp).await?;
    let xmpp_tls_l = bind("XMPP over TLS", config.listen.xmpp_tls).await?;
    let addrs = Addrs {
        client: client_l.local_addr()?,
        node: node_l.local_addr()?,
        admin: admin_l.local_addr()?,
        http: http_l.local_addr()?,
        xmpp: xmpp_l.local_addr()?,
        xmpp_tls: xmpp_tls_l.local_addr()?,
    };
    let advertised = crate::entry::advertised(&config.advertise_addr, addrs.node, crate::entry::hostname().as_deref())
        .map_err(anyhow::Error::msg)?;

    let listed = crate::entry::seed_list(&config.join).any(|s| s == advertised);
    if config.node_id_from_hostname && !config.join.is_empty() && !listed {
        tracing::warn!(%advertised, join = %config.join,
            "this node's advertised address is not in the join list, so it will never start a cluster itself");
    }
    if !config.restore_from.as_os_str().is_empty() {
        let (from, to) = (config.restore_from.clone(), config.data_dir.clone());
        let (shards, node_id, addr) = (config.raft.shards, config.node_id, advertised.clone());
        let restored = tokio::task::spawn_blocking(move || crate::restore::restore(&from, &to, shards, node_id, &addr))
            .await
            .context("restore task")?
            .map_err(anyhow::Error::msg)?;
        match restored {
            Some(m) => tracing::info!(from = %config.restore_from.display(), groups = m.groups.len(),
                backed_up_by = m.node_id, "restored a backup: this node is now the only member of every group"),
            None => tracing::info!(from = %config.restore_from.display(),
                "this backup was restored here before; starting on the data as it is"),
        }
    }
    let data_dir = config.data_dir.clone();
    let store_opts = StoreOptions {
        block_cache_bytes: config.storage.block_cache_mb << 20,
        sync_interval: std::time::Duration::from_micros(config.storage.sync_interval_us),
    };
    let store =
        tokio::task::spawn_blocking(move || Store::open(&data_dir, &store_opts)).await.context("store open task")??;
    write_addrs(&config.data_dir, &addrs)?;
    crate::restore::remove_stale_backups(&config.data_dir);

    let node_tls = config.node_tls.load().map_err(anyhow::Error::msg)?;
    let r = &config.raft;
    let groups = Groups::start(
        store,
        GroupsConfig {
            node_id: config.node_id,
            node_addr: advertised.clone(),
            shards: r.shards,
            heartbeat_ms: r.heartbeat_ms,
            election_timeout_min_ms: r.election_timeout_min_ms,
            election_timeout_max_ms: r.election_timeout_max_ms,
            snapshot_after_entries: r.snapshot_after_entries,
            write_timeout: Duration::from_millis(r.write_timeout_ms),
            replicas: r.replicas as usize,
            keep_log_entries: r.keep_log_entries,
            peer_routes: r.routes().map_err(anyhow::Error::msg)?,
            tls: node_tls.clone(),
            zone: config.zone.clone(),
            balance_leaders_after: Some(Duration::from_secs(r.balance_leaders_after_secs)).filter(|d| !d.is_zero()),
        },
    )
    .await?;
    // A join interrupted by a restart is finished first: the marker says this node started
    // with no data, so it still must not vote with whatever some groups replicated to it since.
    let joining = config.data_dir.join("joining");
    if groups.initialized().await && !joining.exists() {
        // A restart: the store knows the cluster.
    } else {
        match crate::entry::first_start(&config.join, &advertised) {
            // A join cut short must be finished through a member, never turned into a cluster
            // of its own beside the real one.
            FirstStart::Bootstrap if joining.exists() => anyhow::bail!(
                "an interrupted join ({} exists) needs --join with a member of the cluster",
                joining.display()
            ),
            FirstStart::Bootstrap => groups.bootstrap_single_node().await?,
            FirstStart::Join { seeds, may_bootstrap, listed } => {
                std::fs::write(&joining, b"").context("writing the join marker")?;
                let task = Join { groups: groups.clone(), seeds, may_bootstrap, listed, marker: joining };
                tokio::spawn(task.run(shutdown.clone()));
            }
        }
    }
    let ldap = telex_accounts::LdapState::new(config.ldap.clone()).map_err(anyhow::Error::msg)?;
    let accounts = Arc::new(
        Accounts::new(
            groups.clone(),
            AccountsConfig {
                scram_iterations: config.auth.scram_iterations,
                token_ttl: Duration::from_secs(config.auth.token_ttl_secs),
                hash_concurrency: config.auth.hash_concurrency,
                ..AccountsConfig::default()
            },
        )
        .with_ldap(ldap)
        .with_bootstrap_admin(&config.auth.bootstrap_admin_token().map_err(anyhow::Error::msg)?),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    // `shutdown` starts the drain; `halt` stops the listeners and tasks once it is done (the
    // node listener must serve until the hand-off of leaderships completes).
    let halt = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));

    let l = &config.limits;
    let limits = Limits {
        max_body_bytes: l.max_message_bytes,
        sessions_per_user: l.sessions_per_user,
        delivery_window: l.delivery_window,
        stall_timeout: Duration::from_secs(l.stall_timeout_secs),
        sends_per_second: f64::from(l.sends_per_second),
        send_burst: f64::from(l.send_burst),
    };
    let messaging = Messaging::new(Arc::new(RaftLedger::new(groups.clone())), limits);
    // Changes committed through other nodes reach the actors here through their replicas.
    let hub = messaging.hub().clone();
    let room_limits = telex_actors::RoomLimits {
        messages_per_second: f64::from(l.room_messages_per_second),
        burst: f64::from(l.room_message_burst),
        rooms_per_tenant: l.rooms_per_tenant as usize,
    };
    let room_store = Arc::new(crate::rooms::RaftRooms::new(groups.clone()));
    let room_hub = telex_actors::RoomHub::new(hub.clone(), room_store, room_limits);
    let room_actors = room_hub.clone();
    let shared_rosters = messaging.hub().clone();
    let policy_watch = crate::policy::PolicyWatch::start(
        groups.store().clone(),
        messaging.policies().clone(),
        Box::new(move |tenant| shared_rosters.directory_changed(tenant)),
    );
    groups.on_applied(move |change| match change {
        Applied::Archive(owner) => hub.notify(owner),
        Applied::Social(owner) => hub.social_changed(owner),
        // The room's actor (where this node leads the room's shard) fans it out.
        Applied::Room(room) => room_actors.appended(room),
        Applied::RoomChanged(room) => room_actors.changed(room),
        Applied::Directory(tenant) => policy_watch.changed(tenant),
    });
    messaging.hub().set_presence_relay(crate::relay::start(groups.clone()));
    messaging.hub().set_homes(Box::new(crate::homes::ClusterHomes::new(groups.clone())));
    let directory = Arc::new(crate::directory::AccountsDirectory(accounts.clone()));
    let core = telex_session::Core::new(messaging.clone(), directory, Arc::new(GrpcRemote::new(groups.clone())))
        .with_rooms(room_hub.clone());
    let client = ClientServer::new(ClientService::new(accounts.clone(), core.clone()));
    let rooms = room_hub.rooms().clone();
    let rooms = telex_proto::v1::rooms_server::RoomsServer::new(telex_api::RoomsService::new(accounts.clone(), rooms));
    let grpc = Server::builder().add_service(health_service.clone()).add_service(client).add_service(rooms);
    tracker.spawn(serve_grpc("client", grpc, client_l, halt.clone()));
    // Every admin call carries an admin token; each call then checks the admin's role.
    let auth = telex_api::AdminAuth::new(accounts.clone());
    let admin =
        AdminServer::with_interceptor(AdminService::new(accounts.clone(), messaging.hub().clone()), auth.clone());
    let room_admin = telex_proto::v1::room_admin_server::RoomAdminServer::with_interceptor(
        telex_api::RoomAdminService::new(room_hub.rooms().clone(), accounts.clone()),
        auth.clone(),
    );
    let directory_admin = telex_proto::v1::directory_server::DirectoryServer::with_interceptor(
        telex_api::DirectoryService::new(accounts.clone()).with_sessions(messaging.hub().clone()),
        auth,
    );
    let grpc = Server::builder()
        .add_service(health_service.clone())
        .add_service(admin)
        .add_service(room_admin)
        .add_service(directory_admin);
    tracker.spawn(serve_grpc("admin", grpc, admin_l, halt.clone()));
    let node = NodeServer::new(NodeService::new(groups.clone())).max_decoding_message_size(64 << 20);
    let relay = RelayServer::new(crate::relay::RelayService::new(messaging.hub().clone(), groups.clone()));
    let mut builder = Server::builder();
    if let Some(tls) = &node_tls {
        builder = builder.tls_config(tls.server()).context("node_tls: the certificate or key is unusable")?;
    }
    let sessions = SessionsServer::new(SessionsService::new(groups.clone(), core.clone()));
    let actors =
        ActorsServer::new(crate::homes::ActorsService::new(messaging.hub().clone(), room_hub.clone(), groups.clone()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
    let grpc = builder
        .add_service(health_service)
        .add_service(node)
        .add_service(relay)
        .add_service(sessions)
        .add_service(actors);
    tracker.spawn(serve_grpc("node", grpc, node_l, halt.clone()));
    let xmpp = crate::xmpp::start(&config, core.clone()).await?;
    for (listener, direct_tls) in [(xmpp_l, false), (xmpp_tls_l, true)] {
        let (xmpp, stop) = (xmpp.clone(), halt.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = telex_xmpp::serve_c2s(xmpp, listener, direct_tls) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    let stop = halt.clone();
    for tenant in accounts.ldap_tenants() {
        let (accounts, stop) = (accounts.clone(), halt.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = crate::ldap::scheduled_syncs(accounts, tenant) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    let app = router(HttpState { groups: groups.clone(), ready: ready.clone(), xmpp, accounts: accounts.clone() });
    tracker.spawn(async move {
        if let Err(e) = axum::serve(http_l, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "http listener failed");
        }
    });
    tracker.spawn(upkeep(groups.clone(), config.data_dir.clone(), halt.clone()));
    tracker.spawn(follow_leadership(groups.clone(), messaging.hub().clone(), halt.clone()));
    // Where the leaders of groups this node holds no replica of are, and (on the meta group's
    // leader) the moves that keep every group on R nodes.
    for task in [groups.spawn_leader_announcer(), groups.spawn_placement_driver()] {
        let stop = halt.clone();
        tracker.spawn(async move {
            stop.cancelled().await;
            task.abort();
        });
    }
    let (watchdog, stop) = (groups.clone(), halt.clone());
    tracker.spawn(async move {
        tokio::select! {
            _ = watchdog.watch_leaders() => {}
            _ = stop.cancelled() => {}
        }
    });
    tracker.close();

    tracing::info!(node_id = config.node_id, client = %addrs.client, node = %addrs.node, admin = %addrs.admin,
        http = %addrs.http, xmpp = %addrs.xmpp, data_dir = %config.data_dir.display(), shards = config.raft.shards, "telexd listening");

    let task = tokio::spawn({
        let (groups, accounts) = (groups.clone(), accounts.clone());
        let hub = messaging.hub().clone();
        let tenant = config.bootstrap_tenant.clone();
        let joining = config.data_dir.join("joining");
        let data_dir = config.data_dir.clone();
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let ready = ready.clone();
        let core = core.clone();
        let doors = telex_raft::leaders::Doors {
            client: crate::entry::client_door(&config.advertise_client_addr, &advertised, addrs.client),
            xmpp: crate::entry::client_door(&config.advertise_xmpp_addr, &advertised, addrs.xmpp),
        };
        let doors = Some(doors).filter(|d| *d != telex_raft::leaders::Doors::default());
        async move {
            tokio::select! {
                r = become_ready(&groups, &accounts, &tenant, &joining) => match r {
                    Ok(()) => {
                        ready.store(true, Ordering::Release);
                        crate::first_admin::create(&accounts, &data_dir).await;
                        // A hand-off cut short by the last stop left this node a learner.
                        groups.rejoin_voters().await;
                        if let Err(e) = groups.describe_self().await {
                            tracing::warn!(error = %e, "could not record this node's zone for placement");
                        }
                        for name in ["", "telex.v1.Client", "telex.v1.Rooms", "telex.v1.Admin", "telex.v1.Node"] {
                            health.set_service_status(name, ServingStatus::Serving).await;
                        }
                        groups.set_doors(doors);
                        tracing::info!("telexd ready");
                    }
                    Err(e) => tracing::error!(error = %e, "start-up did not complete; /readyz stays unready"),
                },
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancelled().await;
            let started = std::time::Instant::now();
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining");
            // Load balancers stop sending clients here; then other replicas take the groups
            // this node leads, so its users' sessions re-attach there rather than time out.
            ready.store(false, Ordering::Release);
            for name in ["", "telex.v1.Client", "telex.v1.Rooms", "telex.v1.Admin", "telex.v1.Node"] {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            // Peers stop sending clients here, and this node's clients are sent to them.
            groups.set_doors(None);
            groups.set_stopping();
            tracing::info!(nodes = groups.peer_doors().len(), "clients of this node are sent to other nodes");
            let peers = groups.clone();
            core.redirect_clients(Box::new(move || {
                let doors = peers.peer_doors().into_iter();
                doors.map(|(_, d)| telex_session::Redirect { client: d.client, xmpp: d.xmpp }).collect()
            }));
            let moved = groups.hand_off_leaderships(grace / 2).await;
            tracing::info!(groups = moved, "leaderships handed off");
            // This node's own devices end spread over a window, so their clients log in again
            // elsewhere gradually; what is left of the grace period then stops the rest.
            let window = grace.saturating_sub(started.elapsed()).mul_f64(0.4).min(Duration::from_secs(10));
            hub.close_all_sessions(window).await;
            let devices = core.connected_devices();
            tracing::info!(devices, ?window, "this node's sessions end over the drain window");
            let until = tokio::time::Instant::now() + window + Duration::from_millis(200);
            while core.connected_devices() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            halt.cancel();
            // The groups stop soon after the listeners: left running without them, they would
            // only campaign and raise terms.
            let left = grace.saturating_sub(started.elapsed()).saturating_sub(Duration::from_secs(1));
            let left = left.clamp(Duration::from_secs(1), Duration::from_secs(5));
            if tokio::time::timeout(left, tracker.wait()).await.is_err() {
                tracing::warn!("listeners did not drain in time");
            }
            groups.shutdown().await;
            tracing::info!("stopped");
            Ok(())
        }
    });
    Ok(RunningNode { addrs, accounts, task })
}

/// Serves one gRPC listener until `stop` is cancelled; in-flight calls finish first.
async fn serve_grpc(name: &'static str, grpc: Router, listener: TcpListener, stop: CancellationToken) {
    let incoming = TcpListenerStream::new(listener);
    if let Err(e) = grpc.serve_with_incoming_shutdown(incoming, stop.cancelled()).await {
        tracing::error!(listener = name, error = %e, "grpc listener failed");
    }
}

/// A first start that joins: this node had no data; each attempt names the groups it still
/// has none in (`fresh_groups`), and the marker file stays until the join is complete.
struct Join {
    groups: Arc<Groups>,
    seeds: Vec<String>,
    may_bootstrap: bool,
    listed: usize,
    marker: std::path::PathBuf,
}

impl Join {
    /// Asks the listed members, in turn, to add this node to every group, until one does. The
    /// first-listed node creates the cluster instead once every other listed node said it
    /// belongs to none (see `entry::should_bootstrap`).
    async fn run(self, shutdown: CancellationToken) {
        loop {
            let mut outcomes = Vec::with_capacity(self.seeds.len());
            for seed in &self.seeds {
                tracing::info!(seed = %seed, "joining the cluster");
                match self.groups.join_via(seed).await {
                    Ok(()) => {
                        tracing::info!(seed = %seed, "joined the cluster");
                        let _ = std::fs::remove_file(&self.marker);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(seed = %seed, error = %e, "joining through this member failed");
                        outcomes.push(e);
                    }
                }
            }
            let initialized = self.groups.initialized().await;
            if self.may_bootstrap && !initialized && crate::entry::should_bootstrap(self.listed, &outcomes) {
                tracing::info!("no listed node belongs to a cluster; this node, listed first, starts one");
                match self.groups.bootstrap_single_node().await {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&self.marker);
                        return;
                    }
                    Err(e) => tracing::error!(error = %e, "starting the cluster failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn become_ready(groups: &Groups, accounts: &Accounts, tenant: &str, joining: &Path) -> anyhow::Result<()> {
    // A joining node learns every group's leader as soon as it is in the meta group, before
    // its share of replicas has moved to it: it is ready once the join is complete.
    while joining.exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while !groups.wait_for_leaders(Duration::from_secs(10)).await {
        tracing::warn!("still waiting for every raft group to elect a leader");
    }
    if !tenant.is_empty() {
        accounts.ensure_tenant(tenant).await.with_context(|| format!("creating bootstrap tenant {tenant}"))?;
    }
    Ok(())
}

/// Users' actors live on their shard's leader: when this node stops leading a shard, the
/// sessions of its users here are told their actor moved, and their gateways attach again to
/// the new leader.
async fn follow_leadership(groups: Arc<Groups>, hub: telex_actors::Hub, shutdown: CancellationToken) {
    let shards = groups.shards();
    let mut led: Vec<bool> = vec![false; groups.group_count()];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        for (group, was) in led.iter_mut().enumerate().skip(1) {
            let now = groups.serving_leader(group as u32) == Some(groups.node_id());
            if *was && !now {
                let g = group as u32;
                let moved = hub.moved(|u| telex_types::shard::shard_of(u, shards) == g).await;
                tracing::info!(group, sessions = moved, "no longer leading this shard; sessions re-attach elsewhere");
            }
            *was = now;
        }
    }
}

/// Periodic housekeeping: metric upkeep, Raft gauges and the data volume's space.
async fn upkeep(groups: Arc<Groups>, data_dir: std::path::PathBuf, shutdown: CancellationToken) {
    let prometheus = crate::telemetry::prometheus();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        prometheus.run_upkeep();
        let status = groups.status();
        let leading = status.iter().filter(|g| g.role == "leader").count();
        let leaderless = status.iter().filter(|g| g.leader.is_none()).count();
        metrics::gauge!("telex_raft_groups_leading").set(leading as f64);
        metrics::gauge!("telex_raft_groups_leaderless").set(leaderless as f64);
        // The furthest any follower of a group led here is behind its leader.
        let lag = status.iter().filter_map(|g| g.max_lag).max().unwrap_or(0);
        metrics::gauge!("telex_raft_replica_lag_entries").set(lag as f64);
        match rustix::fs::statvfs(&data_dir) {
            Ok(v) => {
                metrics::gauge!("telex_store_disk_free_bytes").set((v.f_bavail * v.f_frsize) as f64);
                metrics::gauge!("telex_store_disk_size_bytes").set((v.f_blocks * v.f_frsize) as f64);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the data volume's free space"),
        }
    }
}

/// Writes the bound addresses to `<data_dir>/listen.json` (atomically), for scripts and tests.
fn write_addrs(dir: &Path, addrs: &Addrs) -> anyhow::Result<()> {
    let tmp = dir.join("listen.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(addrs)?)?;
    std::fs::rename(&tmp, dir.join("listen.json"))?;
    Ok(())
}
