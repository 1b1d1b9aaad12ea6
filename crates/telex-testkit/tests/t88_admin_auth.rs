//! Admin identities and roles on the admin API: a probe tries every admin call (every RPC of
//! the Admin, Directory and RoomAdmin services, checked against the .proto files) as a tenant
//! admin and an auditor, across tenants and within their own; calls without a token or with a
//! wrong one are refused; the audit trail names the admin who acted; a first start without a
//! configured token writes a super-admin's token to the data directory, and the last
//! super-admin cannot be removed.

use std::collections::{BTreeMap, BTreeSet};

use telex_proto::v1 as pb;
use telex_proto::v1::admin_client::AdminClient;
use telex_proto::v1::directory_client::DirectoryClient;
use telex_proto::v1::room_admin_client::RoomAdminClient;
use telex_testkit::client::authed;
use telex_testkit::{data_dir, Telexd};
use tonic::Code;

/// The status code of each admin call made with `token` about `tenant` (`u@tenant`,
/// `staff@tenant`, `hall@conference.tenant`).
async fn probe(url: &str, token: &str, tenant: &str) -> BTreeMap<&'static str, Code> {
    let mut a = AdminClient::connect(url.to_string()).await.unwrap();
    let mut d = DirectoryClient::connect(url.to_string()).await.unwrap();
    let mut r = RoomAdminClient::connect(url.to_string()).await.unwrap();
    let user = format!("u@{tenant}");
    let room = format!("hall@conference.{tenant}");
    let t = || tenant.to_string();
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut out = BTreeMap::new();
    macro_rules! q {
        ($m:expr) => {
            authed($m, token)
        };
    }
    macro_rules! call {
        ($name:literal, $e:expr) => {
            out.insert($name, code($e.await.map(|_| ())));
        };
    }
    call!("AddTenant", a.add_tenant(q!(pb::AddTenantRequest { domain: format!("new.{tenant}") })));
    call!("ListTenants", a.list_tenants(q!(pb::ListTenantsRequest {})));
    call!("SetTenantLimits", a.set_tenant_limits(q!(pb::SetTenantLimitsRequest { domain: t(), limits: None })));
    call!("AddUser", a.add_user(q!(pb::AddUserRequest { jid: format!("new@{tenant}"), password: "pw".into() })));
    call!("ListUsers", a.list_users(q!(pb::ListUsersRequest { domain: t() })));
    call!("GetUser", a.get_user(q!(pb::UserRef { jid: user.clone() })));
    call!(
        "SetUserDisabled",
        a.set_user_disabled(q!(pb::SetUserDisabledRequest { jid: user.clone(), disabled: false }))
    );
    call!("SetPassword", a.set_password(q!(pb::SetPasswordRequest { jid: user.clone(), password: "pw".into() })));
    call!("RevokeTokens", a.revoke_tokens(q!(pb::UserRef { jid: user.clone() })));
    call!("NodeStatus", a.node_status(q!(pb::NodeStatusRequest {})));
    call!(
        "AddNode",
        a.add_node(q!(pb::AddNodeRequest { node_id: 99, addr: "127.0.0.1:1".into(), zone: String::new() }))
    );
    call!("RemoveNode", a.remove_node(q!(pb::RemoveNodeRequest { node_id: 99 })));
    call!("Rebalance", a.rebalance(q!(pb::RebalanceRequest {})));
    call!("Placement", a.placement(q!(pb::PlacementRequest {})));
    call!("VerifyReplicas", a.verify_replicas(q!(pb::VerifyReplicasRequest {})));
    call!("Backup", a.backup(q!(pb::BackupRequest {})));
    call!("ListSessions", a.list_sessions(q!(pb::ListSessionsRequest { jid: user.clone() })));
    call!("KickSession", a.kick_session(q!(pb::KickSessionRequest { jid: user.clone(), device: "d".into() })));
    call!("AddAdmin", a.add_admin(q!(pb::AddAdminRequest { name: "x".into(), role: "auditor".into(), tenant: t() })));
    call!("RemoveAdmin", a.remove_admin(q!(pb::AdminRef { name: "nobody".into() })));
    call!("ListAdmins", a.list_admins(q!(pb::ListAdminsRequest {})));
    call!("WhoAmI", a.who_am_i(q!(pb::AdminWhoAmIRequest {})));
    let group = |name: &str| pb::PutGroupRequest { tenant: t(), name: name.into(), ..Default::default() };
    call!("PutGroup", d.put_group(q!(group("staff"))));
    call!("ListGroups", d.list_groups(q!(pb::TenantRef { tenant: t() })));
    let member = pb::GroupMemberRequest { tenant: t(), group: "staff".into(), jid: user.clone(), member: true };
    call!("SetGroupMember", d.set_group_member(q!(member)));
    let attrs = pb::UserAttributesRequest { jid: user.clone(), title: Some("Probe".into()), ..Default::default() };
    call!("SetUserAttributes", d.set_user_attributes(q!(attrs)));
    call!("GetUserAttributes", d.get_user_attributes(q!(pb::UserRef { jid: user.clone() })));
    let policy = pb::SetPolicyRequest { tenant: t(), text: String::new(), comment: "probe".into(), dry_run: false };
    call!("SetPolicy", d.set_policy(q!(policy)));
    call!("GetPolicy", d.get_policy(q!(pb::GetPolicyRequest { tenant: t(), version: 0 })));
    call!("PolicyHistory", d.policy_history(q!(pb::TenantRef { tenant: t() })));
    call!("RollbackPolicy", d.rollback_policy(q!(pb::GetPolicyRequest { tenant: t(), version: 1 })));
    let test = pb::TestPolicyRequest { from: user.clone(), to: user.clone(), action: "message".into(), text: None };
    call!("TestPolicy", d.test_policy(q!(test)));
    let audit =
        |tenant: String| pb::ListAuditRequest { tenant, after: 0, limit: 10, actor: String::new(), since_ms: 0 };
    call!("ListAudit", d.list_audit(q!(audit(t()))));
    out.insert("ListAudit(cluster)", code(d.list_audit(q!(audit(String::new()))).await.map(|_| ())));
    call!("SyncDirectory", d.sync_directory(q!(pb::SyncDirectoryRequest { tenant: t(), dry_run: false })));
    call!("DirectorySyncStatus", d.directory_sync_status(q!(pb::TenantRef { tenant: t() })));
    call!("RemoveGroup", d.remove_group(q!(pb::GroupRef { tenant: t(), name: "staff".into() })));
    call!("ListTenantRooms", r.list_tenant_rooms(q!(pb::ListTenantRoomsRequest { tenant: t() })));
    call!("GetRoom", r.get_room(q!(pb::GetRoomRequest { room: room.clone() })));
    let affiliation = pb::SetAffiliationRequest { room: room.clone(), jid: user.clone(), affiliation: "member".into() };
    call!("SetRoomAffiliation", r.set_room_affiliation(q!(affiliation)));
    call!("DestroyRoom", r.destroy_room(q!(pb::DestroyRoomRequest { room: room.clone() })));
    call!("RemoveUser", a.remove_user(q!(pb::UserRef { jid: format!("new@{tenant}") })));
    out
}

/// Every RPC of the admin listener's services, from the .proto files.
fn admin_rpcs() -> BTreeSet<String> {
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/telex/v1");
    let mut all = BTreeSet::new();
    for (file, service) in [("admin.proto", "Admin"), ("directory.proto", "Directory"), ("rooms.proto", "RoomAdmin")] {
        let text = std::fs::read_to_string(proto.join(file)).unwrap();
        let start = text.find(&format!("service {service} {{")).expect("service");
        let body = &text[start..start + text[start..].find("\n}").unwrap()];
        for line in body.lines().map(str::trim).filter(|l| l.starts_with("rpc ")) {
            all.insert(line["rpc ".len()..].split('(').next().unwrap().trim().to_string());
        }
    }
    all
}

/// Calls whose answer is filtered to what the caller may see instead of refused.
const FILTERED: [&str; 3] = ["ListTenants", "WhoAmI", "DirectorySyncStatus"];
/// Calls about the cluster as a whole: super-admins only (auditors of every tenant read them).
const CLUSTER: [&str; 13] = [
    "AddTenant",
    "SetTenantLimits",
    "NodeStatus",
    "AddNode",
    "RemoveNode",
    "Rebalance",
    "Placement",
    "VerifyReplicas",
    "Backup",
    "AddAdmin",
    "RemoveAdmin",
    "ListAdmins",
    "ListAudit(cluster)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_can_never_read_or_change_another_tenant() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);
    for t in ["a.example", "b.example"] {
        node.cli(&["tenant", "add", t]).success();
        node.cli(&["user", "add", &format!("u@{t}"), "--password", "pw"]).success();
        node.cli(&["group", "add", &format!("staff@{t}")]).success();
    }
    let add = |name: &str, role: &str, tenant: &str| {
        let out = node.cli(&["--json", "admin", "add", name, "--role", role, "--tenant", tenant]).json();
        out["token"].as_str().unwrap().to_string()
    };
    let ta = add("alice-ops", "tenant-admin", "a.example");
    let aud = add("audrey", "auditor", "a.example");
    let url = node.admin_url();

    // Every call the listener serves is probed.
    let across = probe(&url, &ta, "b.example").await;
    let names: BTreeSet<String> = across.keys().map(|k| k.trim_end_matches("(cluster)").to_string()).collect();
    assert_eq!(names, admin_rpcs(), "the probe must cover every admin call");

    for (call, code) in &across {
        if FILTERED.contains(call) {
            assert_eq!(*code, Code::Ok, "{call} answers with what the admin may see");
        } else {
            assert_eq!(*code, Code::PermissionDenied, "tenant admin of a.example called {call} on b.example");
        }
    }
    // Nothing of b.example changed or leaked.
    let b_users = node.cli(&["--json", "user", "list", "b.example"]).success();
    assert!(b_users.contains("u@b.example") && !b_users.contains("new@b.example"), "{b_users}");
    assert!(node.cli(&["user", "show", "u@b.example"]).success().contains("title=\"\""));
    let tenants = node.cli_env(&["tenant", "list"], &[("TELEX_ADMIN_TOKEN", ta.as_str())]).success();
    assert!(tenants.contains("a.example") && !tenants.contains("b.example"), "{tenants}");

    // Within its own tenant everything but the cluster's calls is allowed.
    let own = probe(&url, &ta, "a.example").await;
    for (call, code) in &own {
        if CLUSTER.contains(call) {
            assert_eq!(*code, Code::PermissionDenied, "tenant admin called cluster call {call}");
        } else {
            assert_ne!(*code, Code::PermissionDenied, "tenant admin refused {call} on its own tenant");
        }
    }

    // An auditor reads its tenant and changes nothing.
    let audited = probe(&url, &aud, "a.example").await;
    for call in
        ["ListUsers", "GetUser", "ListGroups", "GetPolicy", "PolicyHistory", "TestPolicy", "ListAudit", "GetRoom"]
    {
        assert_ne!(audited[call], Code::PermissionDenied, "auditor refused {call}");
    }
    for call in ["AddUser", "SetPassword", "PutGroup", "SetPolicy", "KickSession", "DestroyRoom", "SyncDirectory"] {
        assert_eq!(audited[call], Code::PermissionDenied, "auditor allowed {call}");
    }
    assert!(probe(&url, &aud, "b.example")
        .await
        .iter()
        .all(|(c, code)| FILTERED.contains(c) || *code == Code::PermissionDenied));

    // No token, or a wrong one: refused before anything runs.
    for token in ["", "ta1.alice-ops.0000", "not-a-token"] {
        let out = node.cli_env(&["user", "list", "a.example"], &[("TELEX_ADMIN_TOKEN", token)]);
        out.failure("unauthenticated");
    }

    // The trail names who acted.
    let audit = node.cli(&["--json", "audit", "list", "a.example", "--actor", "alice-ops"]).success();
    for action in ["user.add", "group.change", "policy.set", "user.passwd"] {
        assert!(audit.contains(&format!(r#""action":"{action}""#)), "{action} by alice-ops not audited: {audit}");
    }
    let cluster = node.cli(&["--json", "audit", "list"]).success();
    assert!(cluster.contains(r#""action":"admin.add""#) && cluster.contains("audrey"), "{cluster}");
    let who = node.cli_env(&["admin", "whoami"], &[("TELEX_ADMIN_TOKEN", aud.as_str())]).success();
    assert!(who.contains("audrey") && who.contains("auditor") && who.contains("a.example"), "{who}");
}

#[test]
fn a_first_start_without_a_token_writes_a_super_admins_and_keeps_one() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4", "--admin-token", ""]);
    let path = dir.join("admin-token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "no admin-token written");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let root = std::fs::read_to_string(&path).unwrap().trim().to_string();
    // The test's usual token is not configured on this node.
    node.cli(&["tenant", "list"]).failure("admin token refused");
    let as_root = |args: &[&str]| node.cli_env(args, &[("TELEX_ADMIN_TOKEN", root.as_str())]);
    assert!(as_root(&["admin", "whoami"]).success().contains("root"));
    as_root(&["admin", "remove", "root"]).failure("last super-admin");
    as_root(&["admin", "add", "root", "--role", "auditor"]).failure("last super-admin");
    let ops = as_root(&["--json", "admin", "add", "ops", "--role", "super-admin"]).json();
    let ops = ops["token"].as_str().unwrap().to_string();
    as_root(&["admin", "remove", "root"]).success();
    as_root(&["tenant", "list"]).failure("unauthenticated");
    let listed = node.cli_env(&["admin", "list"], &[("TELEX_ADMIN_TOKEN", ops.as_str())]).success();
    assert!(listed.contains("ops") && !listed.contains("root"), "{listed}");
    node.cli_env(&["admin", "add", "t", "--role", "tenant-admin"], &[("TELEX_ADMIN_TOKEN", ops.as_str())])
        .failure("a tenant admin needs its tenant");
}
