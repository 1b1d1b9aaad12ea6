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
    /// Add a started node with an empty data directory (as `telexd --join` does).
    AddNode {
        node_id: u64,
        /// Its node-to-node address.
        addr: String,
    },
    /// Take a node out of every group (its vote moves to a learner where there is one).
    RemoveNode { node_id: u64 },
}

#[derive(Serialize)]
struct NodeOut {
    node_id: u64,
    addr: String,
    /// Groups this node votes in, and leads.
    voter_in: usize,
    leading: usize,
}

#[derive(Serialize)]
struct GroupOut {
    group: u32,
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
                    voter_in: s.groups.iter().filter(|g| g.voters.contains(&m.node_id)).count(),
                    leading: s.groups.iter().filter(|g| g.leader == m.node_id).count(),
                })
                .collect();
            let groups: Vec<GroupOut> = s
                .groups
                .into_iter()
                .map(|g| GroupOut {
                    group: g.group,
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
        ClusterCmd::AddNode { node_id, addr } => {
            let req = pb::AddNodeRequest { node_id: *node_id, addr: addr.clone() };
            let r = c.add_node(req).await.map_err(status_line)?.into_inner();
            emit(cli.json, &serde_json::json!({ "node_id": node_id, "groups": r.groups }), || {
                format!("node {node_id} added to {} groups", r.groups)
            });
        }
        ClusterCmd::RemoveNode { node_id } => {
            let req = pb::RemoveNodeRequest { node_id: *node_id };
            let r = c.remove_node(req).await.map_err(status_line)?.into_inner();
            emit(cli.json, &serde_json::json!({ "node_id": node_id, "groups": r.groups }), || {
                format!("node {node_id} removed from {} groups; it can be stopped", r.groups)
            });
        }
    }
    Ok(())
}

fn render(out: &ClusterOut) -> String {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut lines = vec![format!("as seen from node {}; {} groups without a leader", out.seen_from, out.leaderless)];
    lines.push(format!("{:<6} {:<24} {:>8} {:>8}", "node", "address", "voter in", "leading"));
    for n in &out.nodes {
        lines.push(format!("{:<6} {:<24} {:>8} {:>8}", n.node_id, n.addr, n.voter_in, n.leading));
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
