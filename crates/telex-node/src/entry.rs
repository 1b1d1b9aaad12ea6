//! How a node enters a cluster: its id (given, or from a StatefulSet pod's host name), the
//! node-to-node address it advertises, and whether a first start creates the cluster or joins
//! it. The decisions are pure; `hostname` is the only I/O.

use std::net::SocketAddr;

use telex_raft::JoinError;

/// What a node with no data does on its first start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstStart {
    /// Create a new cluster with this node as every group's single voter.
    Bootstrap,
    /// Join through these members; with `may_bootstrap`, create the cluster instead when every
    /// other listed node (`listed` counts this one too) answered that it belongs to none (this
    /// node is the first listed).
    Join { seeds: Vec<String>, may_bootstrap: bool, listed: usize },
}

/// The comma-separated `join` list, trimmed, without empty items.
pub fn seed_list(join: &str) -> impl Iterator<Item = &str> {
    join.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Decides a first start from the `join` list and this node's advertised address.
pub fn first_start(join: &str, me: &str) -> FirstStart {
    let mut all: Vec<&str> = Vec::new();
    for s in seed_list(join) {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    let first_is_me = all.first() == Some(&me);
    let others: Vec<String> = all.iter().filter(|s| **s != me).map(|s| s.to_string()).collect();
    if others.is_empty() {
        return FirstStart::Bootstrap;
    }
    let listed = others.len() + 1;
    FirstStart::Join { seeds: others, may_bootstrap: first_is_me, listed }
}

/// After one attempt at every other listed node: whether the first-listed node should create
/// the cluster. Only when every other listed node answered that it belongs to no cluster: an
/// unreachable node proves nothing (it may be a member that is down or cut off), and after a
/// scale-up even a majority of fresh nodes could sit beside a cluster that is out of reach.
pub fn should_bootstrap(listed: usize, outcomes: &[JoinError]) -> bool {
    let no_cluster = outcomes.iter().filter(|o| matches!(o, JoinError::NoCluster)).count();
    no_cluster + 1 == listed && outcomes.len() == no_cluster
}

/// The node id of a StatefulSet pod: its host name's trailing ordinal plus one, since node ids
/// start at 1 (`telex-0` → 1, `telex-12` → 13).
pub fn node_id_from_hostname(host: &str) -> Result<u64, String> {
    let host = host.trim();
    let short = host.split('.').next().unwrap_or(host);
    let ordinal = short.rsplit_once('-').map_or(short, |(_, n)| n);
    match ordinal.parse::<u64>() {
        Ok(n) if n < u64::MAX => Ok(n + 1),
        _ => Err(format!("host name {host:?} does not end in -<ordinal> (a StatefulSet pod's name, e.g. telex-0)")),
    }
}

/// Checks a `host:port` address: a non-empty host (name, IPv4, or bracketed IPv6) and a port.
pub fn check_host_port(addr: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{addr:?} is not host:port ({why})"));
    if addr.contains('/') {
        return bad("no scheme or path");
    }
    let Some((host, port)) = addr.rsplit_once(':') else { return bad("no port") };
    if host.is_empty() || host == "[]" {
        return bad("no host");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return bad("an IPv6 host goes in brackets");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port is not 1 to 65535"),
    }
}

/// The node-to-node address to advertise: the configured one, else the bound one, or the host
/// name with the bound port when the listener binds every interface (0.0.0.0 or ::).
pub fn advertised(configured: &str, bound: SocketAddr, hostname: Option<&str>) -> Result<String, String> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound.to_string());
    }
    match hostname.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => Ok(format!("{h}:{}", bound.port())),
        None => Err(format!(
            "advertise_addr: the node listener binds every interface ({bound}) and the host name is unknown: \
             set --advertise-addr to the address other nodes dial"
        )),
    }
}

/// Where clients reach one of this node's listeners, as announced to peers: the configured
/// address, or with `auto` the advertised node address's host and the listener's bound port;
/// empty when not configured.
pub fn client_door(configured: &str, advertised_node: &str, bound: SocketAddr) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    let host = advertised_node.rsplit_once(':').map_or(advertised_node, |(h, _)| h);
    format!("{host}:{}", bound.port())
}

/// This host's name: `$HOSTNAME` (set in containers), else the kernel's.
pub fn hostname() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok().filter(|h| !h.trim().is_empty());
    from_env.or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok()).map(|h| h.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_doors_take_the_node_host_and_the_listener_port() {
        let bound: SocketAddr = "0.0.0.0:5222".parse().unwrap();
        assert_eq!(client_door("auto", "telex-1.telex-headless:7401", bound), "telex-1.telex-headless:5222");
        assert_eq!(client_door("auto", "[::1]:7401", bound), "[::1]:5222");
        assert_eq!(client_door("chat2.example.com:5222", "x:1", bound), "chat2.example.com:5222");
        assert_eq!(client_door("", "x:1", bound), "");
    }

    #[test]
    fn pods_get_their_ordinal_plus_one() {
        assert_eq!(node_id_from_hostname("telex-0"), Ok(1));
        assert_eq!(node_id_from_hostname("my-release-telex-12\n"), Ok(13));
        assert_eq!(node_id_from_hostname("telex-2.telex-headless.ns.svc.cluster.local"), Ok(3));
        assert_eq!(node_id_from_hostname("7"), Ok(8));
        for bad in ["telex", "telex-", "telex-x", "", "telex-18446744073709551615"] {
            assert!(node_id_from_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        for ok in ["telex-0.telex-headless:7401", "10.0.0.1:7401", "[::1]:7401"] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in ["telex-0", ":7401", "host:0", "host:99999", "http://host:7401", "::1:7401", "[]:1"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_advertised_address_prefers_what_was_configured() {
        let any: SocketAddr = "0.0.0.0:7401".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:7411".parse().unwrap();
        assert_eq!(advertised("pod.svc:7401", any, Some("h")), Ok("pod.svc:7401".into()));
        assert_eq!(advertised("", lo, Some("h")), Ok("127.0.0.1:7411".into()));
        assert_eq!(advertised("", any, Some("telex-1\n")), Ok("telex-1:7401".into()));
        assert!(advertised("", any, None).is_err());
    }

    #[test]
    fn the_first_listed_node_may_create_the_cluster() {
        let all = "a:1, b:1,c:1";
        assert_eq!(
            first_start(all, "a:1"),
            FirstStart::Join { seeds: vec!["b:1".into(), "c:1".into()], may_bootstrap: true, listed: 3 }
        );
        assert_eq!(
            first_start(all, "b:1"),
            FirstStart::Join { seeds: vec!["a:1".into(), "c:1".into()], may_bootstrap: false, listed: 3 }
        );
        assert_eq!(first_start("", "a:1"), FirstStart::Bootstrap);
        assert_eq!(first_start("a:1", "a:1"), FirstStart::Bootstrap);
        assert_eq!(
            first_start("x:1", "a:1"),
            FirstStart::Join { seeds: vec!["x:1".into()], may_bootstrap: false, listed: 2 }
        );
    }

    #[test]
    fn a_cluster_is_started_only_when_every_other_listed_node_has_none() {
        let unreachable = || JoinError::Unreachable("refused".into());
        assert!(should_bootstrap(3, &[JoinError::NoCluster, JoinError::NoCluster]));
        // Someone out of reach may be a running cluster's member.
        assert!(!should_bootstrap(3, &[unreachable(), JoinError::NoCluster]));
        assert!(!should_bootstrap(3, &[unreachable(), unreachable()]));
        // A member that answers (refusing, or unable to finish) means a cluster exists.
        assert!(!should_bootstrap(3, &[JoinError::NoCluster, JoinError::Refused("no quorum".into())]));
        // After a scale-up, fresh pods saying "none" are not enough while others are away.
        let mostly_fresh = [JoinError::NoCluster, JoinError::NoCluster, JoinError::NoCluster, unreachable()];
        assert!(!should_bootstrap(5, &mostly_fresh));
    }
}
