//! The crate graph's invariants (ARCHITECTURE.md), checked on the real dependency tree: the
//! XMPP adapter and the session core know nothing of gRPC, protobuf, Raft or RocksDB.

use std::process::Command;

/// Every crate `package` depends on for building (not for tests), transitively.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none", "--offline", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<String> = text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    names.sort();
    names.dedup();
    names
}

fn assert_free_of(package: &str, banned: &[&str]) {
    let deps = dependencies(package);
    assert!(deps.iter().any(|d| d == package), "cargo tree did not list {package} itself: {deps:?}");
    let found: Vec<&String> = deps.iter().filter(|d| banned.contains(&d.as_str())).collect();
    assert!(found.is_empty(), "{package} must not depend on {found:?} (directly or through another crate)");
}

const TRANSPORT_AND_STORAGE: &[&str] = &[
    "tonic",
    "prost",
    "telex-proto",
    "telex-api",
    "openraft",
    "telex-raft",
    "rocksdb",
    "telex-store",
    "telex-accounts",
];

#[test]
fn the_xmpp_adapter_reaches_telex_only_through_the_session_core() {
    assert_free_of("telex-xmpp", TRANSPORT_AND_STORAGE);
}

#[test]
fn the_session_core_and_the_actors_know_no_transport_or_storage() {
    assert_free_of("telex-session", TRANSPORT_AND_STORAGE);
    assert_free_of("telex-actors", TRANSPORT_AND_STORAGE);
    assert_free_of("telex-policy", TRANSPORT_AND_STORAGE);
}

#[test]
fn only_the_store_links_rocksdb() {
    for package in ["telex-types", "telex-proto", "telex-sasl", "telex-cli", "telex-loadtest"] {
        assert_free_of(package, &["rocksdb", "librocksdb-sys"]);
    }
    assert!(dependencies("telex-store").iter().any(|d| d == "rocksdb"));
}
