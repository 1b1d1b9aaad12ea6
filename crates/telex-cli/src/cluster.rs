//! `telex cluster`: the cluster as seen from one node.

use clap::Subcommand;
use serde::Serialize;
use telex_proto::v1 as pb;

use crate::admin::client;
use crate::output::{emit, status_line};
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Nodes, and every group's leader, voters, learners and replication lag.
    Status,
    /// Add a started node with an empty data directory (as `telexd --join` does); returns once
    /// its share of replicas has moved to it.
    AddNode {
        node_id: u64,
        /// Its node-to-node address.
        addr: String,
        /// Its failure domain, for placement.
        #[arg(long, default_value = "")]
        zone: String,
    },
    /// Decommission a node: its replicas move to the other nodes, then it leaves the cluster
    /// (and can be stopped).
    RemoveNode { node_id: u64 },
    /// Where each shard group's replicas are and where placement is taking them; replicas and
    /// leaderships per node.
    Placement,
    /// Spread group leaderships evenly over the nodes (each moved group pauses writes for
    /// about one election timeout; clients retry).
    Rebalance,
    /// Compare every group's replicas; exits non-zero unless all are identical.
    Verify,
}

#[derive(Serialize)]
struct NodeOut {
    node_id: u64,
    addr: String,
    /// "up" when it answered a health check from the node asked, else why not.
    health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<u32>,
    /// Groups this node votes in, and leads.
    voter_in: usize,
    leading: usize,
    /// Shard groups placed on it.
    replicas: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    zone: String,
    draining: bool,
}

#[derive(Serialize)]
struct GroupOut {
    group: u32,
    /// This node's part in it: leader, follower, learner, or none (it holds no replica).
    role: String,
    leader: u64,
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lag: Option<u64>,
}

#[derive(Serialize)]
struct ClusterOut {
    seen_from: u64,
    nodes: Vec<NodeOut>,
    groups: Vec<GroupOut>,
    leaderless: usize,
}

pub async fn cluster(cli: &Cli, cmd: &ClusterCmd) -> CliResult {
    let mut c = client(cli).await?;
    match cmd {
        ClusterCmd::Status => {
            let s = c.node_status(pb::NodeStatusRequest {}).await.map_err(status_line)?.into_inner();
            let nodes = s
                .members
                .iter()
                .map(|m| NodeOut {
                    node_id: m.node_id,
                    addr: m.addr.clone(),
                    health: if m.reachable { "up".into() } else { format!("unreachable: {}", m.error) },
                    rtt_ms: m.reachable.then_some(m.rtt_ms),
                    voter_in: s.groups.iter().filter(|g| g.voters.contains(&m.node_id)).count(),
                    leading: s.groups.iter().filter(|g| g.leader == m.node_id).count(),
                    replicas: m.replicas,
                    zone: m.zone.clone(),
                    draining: m.draining,
                })
                .collect();
            let groups: Vec<GroupOut> = s
                .groups
                .into_iter()
                .map(|g| GroupOut {
                    group: g.group,
                    role: g.role,
                    leader: g.leader,
                    term: g.term,
                    voters: g.voters,
                    learners: g.learners,
                    max_lag: g.max_lag,
                })
                .collect();
            let leaderless = groups.iter().filter(|g| g.leader == 0).count();
            let out = ClusterOut { seen_from: s.node_id, nodes, groups, leaderless };
            emit(cli.json, &out, || render(&out));
        }
        ClusterCmd::AddNode { node_id, addr, zone } => {
            let req = pb::AddNodeRequest { node_id: *node_id, addr: addr.clone(), zone: zone.clone() };
            let r = c.add_node(req).await.map_err(status_line)?.into_inner();
            emit(cli.json, &serde_json::json!({ "node_id": node_id, "groups": r.groups }), || {
                format!("node {node_id} added; it holds {} shard groups", r.groups)
            });
        }
        ClusterCmd::RemoveNode { node_id } => {
            let req = pb::RemoveNodeRequest { node_id: *node_id };
            let r = c.remove_node(req).await.map_err(status_line)?.into_inner();
            emit(cli.json, &serde_json::json!({ "node_id": node_id, "groups": r.groups }), || {
                format!("node {node_id} removed; its {} shard groups moved to other nodes; it can be stopped", r.groups)
            });
        }
        ClusterCmd::Placement => {
            let p = c.placement(pb::PlacementRequest {}).await.map_err(status_line)?.into_inner();
            let json = serde_json::json!({
                "replication": p.replication,
                "pending_moves": p.pending_moves,
                "nodes": p.nodes.iter().map(|n| serde_json::json!({
                    "node_id": n.node_id, "zone": n.zone, "draining": n.draining,
                    "replicas": n.replicas, "target": n.target, "leaders": n.leaders,
                })).collect::<Vec<_>>(),
                "groups": p.groups.iter().map(|g| serde_json::json!({
                    "group": g.group, "replicas": g.replicas, "target": g.target, "leader": g.leader,
                })).collect::<Vec<_>>(),
            });
            emit(cli.json, &json, || render_placement(&p));
        }
        ClusterCmd::Rebalance => {
            let r = c.rebalance(pb::RebalanceRequest {}).await.map_err(status_line)?.into_inner();
            let counts = |v: &[pb::LeaderCount]| {
                v.iter().map(|c| format!("node {}: {}", c.node_id, c.groups)).collect::<Vec<_>>().join(", ")
            };
            let json = serde_json::json!({
                "moved": r.moved,
                "before": r.before.iter().map(|c| (c.node_id.to_string(), serde_json::json!(c.groups))).collect::<serde_json::Map<_, _>>(),
                "after": r.after.iter().map(|c| (c.node_id.to_string(), serde_json::json!(c.groups))).collect::<serde_json::Map<_, _>>(),
            });
            emit(cli.json, &json, || {
                format!("moved {} leaderships\nbefore: {}\nafter:  {}", r.moved, counts(&r.before), counts(&r.after))
            });
        }
        ClusterCmd::Verify => {
            let r = c.verify_replicas(pb::VerifyReplicasRequest {}).await.map_err(status_line)?.into_inner();
            let bad: Vec<&pb::GroupVerdict> = r.groups.iter().filter(|g| g.verdict != "identical").collect();
            let json = serde_json::json!({
                "groups": r.groups.len(),
                "identical": r.groups.len() - bad.len(),
                "problems": bad.iter().map(|g| serde_json::json!({
                    "group": g.group,
                    "verdict": g.verdict,
                    "replicas": g.replicas.iter().map(|d| serde_json::json!({
                        "node_id": d.node_id, "applied_index": d.applied_index, "keys": d.keys,
                        "hash": format!("{:016x}", d.hash), "error": d.error,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            });
            emit(cli.json, &json, || {
                let mut lines = vec![format!(
                    "{} of {} groups identical on every replica",
                    r.groups.len() - bad.len(),
                    r.groups.len()
                )];
                for g in &bad {
                    let reps = g.replicas.iter().map(|d| {
                        if d.error.is_empty() {
                            format!("node {} at {} ({} keys, {:016x})", d.node_id, d.applied_index, d.keys, d.hash)
                        } else {
                            format!("node {}: {}", d.node_id, d.error)
                        }
                    });
                    lines.push(format!("group {}: {}: {}", g.group, g.verdict, reps.collect::<Vec<_>>().join("; ")));
                }
                lines.join("\n")
            });
            if !bad.is_empty() {
                return Err(format!("{} groups are not identical on every replica", bad.len()));
            }
        }
    }
    Ok(())
}

fn render_placement(p: &pb::PlacementResponse) -> String {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut lines =
        vec![format!("{} groups, {} replicas each; {} moves pending", p.groups.len(), p.replication, p.pending_moves)];
    lines.push(format!("{:<6} {:<12} {:>8} {:>8} {:>8}", "node", "zone", "replicas", "target", "leading"));
    for n in &p.nodes {
        let zone = if n.zone.is_empty() { "-" } else { &n.zone };
        let state = if n.draining { "  draining" } else { "" };
        lines.push(format!("{:<6} {:<12} {:>8} {:>8} {:>8}{state}", n.node_id, zone, n.replicas, n.target, n.leaders));
    }
    lines.push(format!("{:<6} {:>6} {:<14} {:<14}", "group", "leader", "replicas", "target"));
    for g in &p.groups {
        let leader = if g.leader == 0 { "-".to_string() } else { g.leader.to_string() };
        let target = if g.target == g.replicas { "=".to_string() } else { ids(&g.target) };
        lines.push(format!("{:<6} {:>6} {:<14} {:<14}", g.group, leader, ids(&g.replicas), target));
    }
    lines.join("\n")
}

fn render(out: &ClusterOut) -> String {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut lines = vec![format!("as seen from node {}; {} groups without a leader", out.seen_from, out.leaderless)];
    lines.push(format!(
        "{:<6} {:<24} {:<10} {:>8} {:>8} {:>8}  {}",
        "node", "address", "zone", "replicas", "voter in", "leading", "health"
    ));
    for n in &out.nodes {
        let zone = if n.zone.is_empty() { "-" } else { &n.zone };
        let health = if n.draining { format!("{}, draining", n.health) } else { n.health.clone() };
        lines.push(format!(
            "{:<6} {:<24} {:<10} {:>8} {:>8} {:>8}  {}",
            n.node_id, n.addr, zone, n.replicas, n.voter_in, n.leading, health
        ));
    }
    lines
        .push(format!("{:<6} {:>6} {:>6} {:<12} {:<10} {:>8}", "group", "leader", "term", "voters", "learners", "lag"));
    for g in &out.groups {
        let name = if g.group == 0 { "meta".to_string() } else { g.group.to_string() };
        let leader = if g.leader == 0 { "-".to_string() } else { g.leader.to_string() };
        let lag = g.max_lag.map_or("-".to_string(), |l| l.to_string());
        lines.push(format!(
            "{:<6} {:>6} {:>6} {:<12} {:<10} {:>8}",
            name,
            leader,
            g.term,
            ids(&g.voters),
            ids(&g.learners),
            lag
        ));
    }
    lines.join("\n")
}
