//! Pins every encoding Telex writes to disk or sends between nodes through `telex_types::wire`:
//! each `Command` variant, each `Response`, each stored record. A change to any of these bytes
//! breaks old logs, stored state or mixed-version clusters, so it must come with a new format
//! version (and a decoder for the old one), never by accident. Version-1 bytes must keep
//! decoding.
//!
//! When a pinned value changes on purpose, the failure message prints the new hex to paste.

use telex_types::admin::{AdminRecord, AdminRole};
use telex_types::directory::{AuditEntry, GroupName, GroupRecord, PolicyVersion, Source, UserAttributes};
use telex_types::presence::{DevicePresence, Show};
use telex_types::records::{
    AccountRecord, ArchivedMessage, Credentials, NodeRecord, ScramKeys, TenantLimits, TenantRecord, TokenRecord,
};
use telex_types::room::{Affiliation, EntryKind, RoomChange, RoomConfig, RoomEntry, RoomJid, RoomRecord};
use telex_types::roster::{RosterItem, Subscription};
use telex_types::wire::{decode, encode};
use telex_types::{Command, Domain, ErrorCode, Response, TelexError, UserJid};

fn jid(s: &str) -> UserJid {
    UserJid::parse(s).unwrap()
}

fn keys(b: u8) -> ScramKeys {
    ScramKeys { salt: vec![b], iterations: 4096, stored_key: vec![b, b], server_key: vec![b, b, b] }
}

fn message() -> ArchivedMessage {
    ArchivedMessage {
        server_id: "s1".into(),
        from: jid("alice@x.example"),
        to: jid("bob@x.example"),
        from_device: "laptop".into(),
        client_id: "c1".into(),
        body: "hi".into(),
        sent_at: 42,
        extras: "<r/>".into(),
        to_device: "phone".into(),
    }
}

/// One of every command. The match makes a new variant fail to compile here until it is
/// pinned too.
fn room() -> RoomJid {
    RoomJid::parse("team@conference.x.example").unwrap()
}

fn room_record() -> RoomRecord {
    RoomRecord {
        room: room(),
        config: RoomConfig { name: "Team".into(), members_only: true, ..RoomConfig::default() },
        affiliations: [(jid("a@x.example"), Affiliation::Owner)].into_iter().collect(),
        subject: "plans".into(),
        created_by: jid("a@x.example"),
        created_at: 5,
        log_start: 1,
        roles: Default::default(),
    }
}

fn room_entry() -> RoomEntry {
    RoomEntry {
        server_id: "s1".into(),
        kind: EntryKind::Message,
        from: jid("a@x.example"),
        from_device: "pc".into(),
        nick: "Ann".into(),
        client_id: "c1".into(),
        body: "hi all".into(),
        extras: String::new(),
        sent_at: 6,
    }
}

fn commands() -> Vec<(&'static str, Command)> {
    let d = Domain::parse("x.example").unwrap();
    let credentials = Credentials { sha256: keys(1), sha1: keys(2) };
    let token = TokenRecord { id: "t1".into(), secret_hash: [7; 32], device: "pc".into(), issued_at: 1, expires_at: 2 };
    let item = RosterItem {
        subscription: Subscription::Both,
        pending_out: true,
        pending_in: false,
        name: "Bob".into(),
        groups: vec!["W".into()],
    };
    let all = vec![
        Command::CreateTenant { domain: d.clone(), at: 1 },
        Command::CreateAccount { jid: jid("a@x.example"), credentials: credentials.clone(), at: 2 },
        Command::RemoveAccount { jid: jid("a@x.example") },
        Command::SetDisabled { jid: jid("a@x.example"), disabled: true },
        Command::SetCredentials { jid: jid("a@x.example"), credentials, at: 3 },
        Command::IssueToken { jid: jid("a@x.example"), token },
        Command::RevokeToken { jid: jid("a@x.example"), token_id: "t1".into() },
        Command::RevokeAllTokens { jid: jid("a@x.example") },
        Command::AppendArchive { owner: jid("bob@x.example"), message: message() },
        Command::SetCursor { owner: jid("bob@x.example"), device: "pc".into(), position: 9 },
        Command::RosterPut { owner: jid("a@x.example"), contact: jid("bob@x.example"), item },
        Command::RosterDelete { owner: jid("a@x.example"), contact: jid("bob@x.example") },
        Command::SetBlocked { owner: jid("a@x.example"), jid: jid("bob@x.example"), blocked: true },
        Command::SetVCard { owner: jid("a@x.example"), vcard: "<vCard/>".into() },
        Command::SetTenantLimits {
            domain: d.clone(),
            limits: TenantLimits { max_message_bytes: Some(100), sends_per_second: None, sessions_per_user: Some(3) },
        },
        Command::Batch(vec![Command::RemoveAccount { jid: jid("a@x.example") }]),
        Command::SetPlacement { group: 3, nodes: vec![1, 2, 4] },
        Command::SetNodeInfo(NodeRecord { node: 4, addr: "n4:7401".into(), zone: "z1".into(), draining: true }),
        Command::ForgetNode { node: 4 },
        Command::CreateRoom(room_record()),
        Command::ChangeRoom {
            room: room(),
            change: RoomChange::Affiliation { user: jid("bob@x.example"), affiliation: Some(Affiliation::Member) },
        },
        Command::DestroyRoom { room: room() },
        Command::AppendRoom { room: room(), entry: room_entry() },
        Command::SetRoomCursor { room: room(), user: jid("bob@x.example"), device: "pc".into(), position: 3 },
        Command::SetRoomMembership { user: jid("bob@x.example"), room: room(), member: true },
        Command::SetUserAttributes {
            user: jid("bob@x.example"),
            attributes: Some(UserAttributes {
                display_name: "Bob".into(),
                title: "CEO".into(),
                department: "Board".into(),
                manager: Some(jid("a@x.example")),
                email: "bob@x.example".into(),
                source: Source::Ldap("uid=bob".into()),
            }),
        },
        Command::PutGroup(GroupRecord {
            tenant: d.clone(),
            name: GroupName::parse("sales").unwrap(),
            display_name: "Sales".into(),
            description: "d".into(),
            subgroups: [GroupName::parse("emea").unwrap()].into_iter().collect(),
            shown_to: [GroupName::parse("sales").unwrap()].into_iter().collect(),
            source: Source::Local,
        }),
        Command::RemoveGroup { tenant: d.clone(), name: GroupName::parse("sales").unwrap() },
        Command::SetGroupMember {
            tenant: d.clone(),
            group: GroupName::parse("sales").unwrap(),
            user: jid("bob@x.example"),
            member: true,
        },
        Command::SetPolicy {
            tenant: d.clone(),
            policy: PolicyVersion {
                version: 0,
                text: "[[rule]]".into(),
                by: "root".into(),
                at: 9,
                comment: "c".into(),
            },
        },
        Command::AppendAudit {
            tenant: Some(d.clone()),
            entry: AuditEntry {
                seq: 0,
                at: 9,
                actor: "root".into(),
                action: "group.add".into(),
                target: "sales".into(),
                before: String::new(),
                after: "{}".into(),
            },
        },
        Command::PutAdmin {
            record: AdminRecord {
                name: "ops".into(),
                role: AdminRole::TenantAdmin,
                tenant: Some(d.clone()),
                token_hash: vec![7; 4],
                created_at: 9,
                by: "root".into(),
            },
            only_first: false,
        },
        Command::RemoveAdmin { name: "ops".into() },
    ];
    all.into_iter()
        .map(|c| {
            let name = match &c {
                Command::CreateTenant { .. } => "create_tenant",
                Command::CreateAccount { .. } => "create_account",
                Command::RemoveAccount { .. } => "remove_account",
                Command::SetDisabled { .. } => "set_disabled",
                Command::SetCredentials { .. } => "set_credentials",
                Command::IssueToken { .. } => "issue_token",
                Command::RevokeToken { .. } => "revoke_token",
                Command::RevokeAllTokens { .. } => "revoke_all_tokens",
                Command::AppendArchive { .. } => "append_archive",
                Command::SetCursor { .. } => "set_cursor",
                Command::RosterPut { .. } => "roster_put",
                Command::RosterDelete { .. } => "roster_delete",
                Command::SetBlocked { .. } => "set_blocked",
                Command::SetVCard { .. } => "set_vcard",
                Command::SetTenantLimits { .. } => "set_tenant_limits",
                Command::Batch(_) => "batch",
                Command::SetPlacement { .. } => "set_placement",
                Command::SetNodeInfo(_) => "set_node_info",
                Command::ForgetNode { .. } => "forget_node",
                Command::CreateRoom(_) => "create_room",
                Command::ChangeRoom { .. } => "change_room",
                Command::DestroyRoom { .. } => "destroy_room",
                Command::AppendRoom { .. } => "append_room",
                Command::SetRoomCursor { .. } => "set_room_cursor",
                Command::SetRoomMembership { .. } => "set_room_membership",
                Command::SetUserAttributes { .. } => "set_user_attributes",
                Command::PutGroup(_) => "put_group",
                Command::RemoveGroup { .. } => "remove_group",
                Command::SetGroupMember { .. } => "set_group_member",
                Command::SetPolicy { .. } => "set_policy",
                Command::AppendAudit { .. } => "append_audit",
                Command::PutAdmin { .. } => "put_admin",
                Command::RemoveAdmin { .. } => "remove_admin",
            };
            (name, c)
        })
        .collect()
}

fn responses() -> Vec<(&'static str, Response)> {
    let all = vec![
        Response::Done,
        Response::Changed(3),
        Response::Refused(TelexError::new(ErrorCode::NotFound, "no such user a@x.example")),
        Response::Appended { position: 7, duplicate: true },
        Response::Batch(vec![Response::Done]),
    ];
    all.into_iter()
        .map(|r| {
            let name = match &r {
                Response::Done => "done",
                Response::Changed(_) => "changed",
                Response::Refused(_) => "refused",
                Response::Appended { .. } => "appended",
                Response::Batch(_) => "batch",
            };
            (name, r)
        })
        .collect()
}

/// Every error code (`ErrorCode::ALL`, which `parse` relies on too), in a refusal: they travel
/// in `Response::Refused`.
fn codes() -> Vec<ErrorCode> {
    ErrorCode::ALL.to_vec()
}

fn records() -> Vec<(&'static str, Vec<u8>)> {
    let account = AccountRecord {
        jid: jid("a@x.example"),
        credentials: Credentials { sha256: keys(1), sha1: keys(2) },
        disabled: false,
        created_at: 5,
        password_changed_at: 6,
    };
    let item = RosterItem { subscription: Subscription::To, name: "B".into(), ..RosterItem::default() };
    vec![
        ("tenant", encode(&TenantRecord { domain: Domain::parse("x.example").unwrap(), created_at: 1 })),
        (
            "tenant_limits",
            encode(&TenantLimits { max_message_bytes: None, sends_per_second: Some(5), sessions_per_user: None }),
        ),
        ("account", encode(&account)),
        (
            "token",
            encode(&TokenRecord {
                id: "t".into(),
                secret_hash: [1; 32],
                device: "d".into(),
                issued_at: 1,
                expires_at: 2,
            }),
        ),
        ("archived_message", encode(&message())),
        ("roster_item", encode(&(jid("bob@x.example"), item))),
        ("blocked", encode(&jid("bob@x.example"))),
        ("vcard", encode(&"<vCard/>".to_string())),
        (
            "presence",
            encode(&DevicePresence { show: Show::Away, status: "s".into(), priority: -1, extras: String::new() }),
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Compares every encoding with its pinned hex; lists all differences at once.
fn check(actual: Vec<(String, Vec<u8>)>, pinned: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (name, bytes) in &actual {
        match pinned.iter().find(|(n, _)| n == name) {
            Some((_, want)) if *want == hex(bytes) => {}
            _ => wrong.push(format!("(\"{name}\", \"{}\"),", hex(bytes))),
        }
    }
    assert!(wrong.is_empty(), "encodings changed; bump wire::VERSION or paste:\n{}", wrong.join("\n"));
    assert_eq!(actual.len(), pinned.len(), "pinned values that are no longer encoded");
}

#[test]
fn commands_are_pinned() {
    let actual = commands().into_iter().map(|(n, c)| (n.to_string(), encode(&c))).collect();
    check(actual, COMMANDS);
    for (name, c) in commands() {
        assert_eq!(decode::<Command>(&encode(&c)).unwrap(), c, "{name} round trip");
    }
}

#[test]
fn responses_and_error_codes_are_pinned() {
    let mut actual: Vec<(String, Vec<u8>)> =
        responses().into_iter().map(|(n, r)| (n.to_string(), encode(&r))).collect();
    for c in codes() {
        actual.push((c.as_str().to_string(), encode(&Response::Refused(TelexError::new(c, "")))));
    }
    check(actual, RESPONSES);
}

#[test]
fn records_are_pinned() {
    check(records().into_iter().map(|(n, b)| (n.to_string(), b)).collect(), RECORDS);
}

/// Bytes written by format version 1 (before `ArchivedMessage` held its extras).
const V1_RECORD: &str = "01020000000000000073310500000000000000616c6963650900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c6506000000000000006c6170746f7002000000000000006331020000000000000068692a00000000000000";
const V1_APPEND_WITH_EXTRAS: &str = "010d0000000300000000000000626f620900000000000000782e6578616d706c65020000000000000073310500000000000000616c6963650900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c6506000000000000006c6170746f7002000000000000006331020000000000000068692a000000000000001e000000000000003c7220786d6c6e733d2775726e3a786d70703a7265636569707473272f3e";

#[test]
fn version_one_archive_entries_and_commands_still_decode() {
    let v1 = ArchivedMessage { extras: String::new(), to_device: String::new(), ..message() };
    let v1 = ArchivedMessage { extras: String::new(), ..v1 };
    let decoded: ArchivedMessage = decode(&unhex(V1_RECORD)).unwrap();
    assert_eq!(decoded, v1, "a version-1 entry decodes with no extras or device");
    // Version 1's twin command becomes an append whose message carries the extras.
    let cmd: Command = decode(&unhex(V1_APPEND_WITH_EXTRAS)).unwrap();
    let want = ArchivedMessage { extras: "<r xmlns='urn:xmpp:receipts'/>".into(), ..v1 };
    assert_eq!(cmd, Command::AppendArchive { owner: jid("bob@x.example"), message: want });
}

/// A room's creation as format version 2 wrote it (before rooms kept moderators' role grants).
const V2_CREATE_ROOM: &str = "021300000004000000000000007465616d0900000000000000782e6578616d706c6504000000000000005465616d0000000000000000010000000000000000000101000000001027000014000000000000000101000000000000000100000000000000610900000000000000782e6578616d706c65000000000500000000000000706c616e730100000000000000610900000000000000782e6578616d706c6505000000000000000100000000000000";

#[test]
fn version_two_room_records_decode_without_role_grants() {
    let cmd: Command = decode(&unhex(V2_CREATE_ROOM)).unwrap();
    assert_eq!(cmd, Command::CreateRoom(room_record()));
    let mut granted = room_record();
    granted.roles.insert(jid("b@x.example"), telex_types::room::Role::Participant);
    assert_eq!(decode::<RoomRecord>(&encode(&granted)).unwrap(), granted);
}

const COMMANDS: &[(&str, &str)] = &[
    ("create_tenant", "03000000000900000000000000782e6578616d706c650100000000000000"),
    ("create_account", "03010000000100000000000000610900000000000000782e6578616d706c6501000000000000000100100000020000000000000001010300000000000000010101010000000000000002001000000200000000000000020203000000000000000202020200000000000000"),
    ("remove_account", "03020000000100000000000000610900000000000000782e6578616d706c65"),
    ("set_disabled", "03030000000100000000000000610900000000000000782e6578616d706c6501"),
    ("set_credentials", "03040000000100000000000000610900000000000000782e6578616d706c6501000000000000000100100000020000000000000001010300000000000000010101010000000000000002001000000200000000000000020203000000000000000202020300000000000000"),
    ("issue_token", "03050000000100000000000000610900000000000000782e6578616d706c650200000000000000743107070707070707070707070707070707070707070707070707070707070707070200000000000000706301000000000000000200000000000000"),
    ("revoke_token", "03060000000100000000000000610900000000000000782e6578616d706c6502000000000000007431"),
    ("revoke_all_tokens", "03070000000100000000000000610900000000000000782e6578616d706c65"),
    ("append_archive", "03080000000300000000000000626f620900000000000000782e6578616d706c65020000000000000073310500000000000000616c6963650900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c6506000000000000006c6170746f7002000000000000006331020000000000000068692a0000000000000004000000000000003c722f3e050000000000000070686f6e65"),
    ("set_cursor", "03090000000300000000000000626f620900000000000000782e6578616d706c65020000000000000070630900000000000000"),
    ("roster_put", "030a0000000100000000000000610900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c650300000001000300000000000000426f620100000000000000010000000000000057"),
    ("roster_delete", "030b0000000100000000000000610900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c65"),
    ("set_blocked", "030c0000000100000000000000610900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c6501"),
    ("set_vcard", "030d0000000100000000000000610900000000000000782e6578616d706c6508000000000000003c76436172642f3e"),
    ("set_tenant_limits", "030e0000000900000000000000782e6578616d706c650164000000000103000000"),
    ("batch", "030f0000000100000000000000020000000100000000000000610900000000000000782e6578616d706c65"),
    ("set_placement", "0310000000030000000300000000000000010000000000000002000000000000000400000000000000"),
    ("set_node_info", "0311000000040000000000000007000000000000006e343a3734303102000000000000007a3101"),
    ("forget_node", "03120000000400000000000000"),
    ("create_room", "031300000004000000000000007465616d0900000000000000782e6578616d706c6504000000000000005465616d0000000000000000010000000000000000000101000000001027000014000000000000000101000000000000000100000000000000610900000000000000782e6578616d706c65000000000500000000000000706c616e730100000000000000610900000000000000782e6578616d706c65050000000000000001000000000000000000000000000000"),
    ("change_room", "031400000004000000000000007465616d0900000000000000782e6578616d706c65010000000300000000000000626f620900000000000000782e6578616d706c650102000000"),
    ("destroy_room", "031500000004000000000000007465616d0900000000000000782e6578616d706c65"),
    ("append_room", "031600000004000000000000007465616d0900000000000000782e6578616d706c6502000000000000007331000000000100000000000000610900000000000000782e6578616d706c65020000000000000070630300000000000000416e6e020000000000000063310600000000000000686920616c6c00000000000000000600000000000000"),
    ("set_room_cursor", "031700000004000000000000007465616d0900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c65020000000000000070630300000000000000"),
    ("set_room_membership", "03180000000300000000000000626f620900000000000000782e6578616d706c6504000000000000007465616d0900000000000000782e6578616d706c6501"),
    ("set_user_attributes", "03190000000300000000000000626f620900000000000000782e6578616d706c65010300000000000000426f62030000000000000043454f0500000000000000426f617264010100000000000000610900000000000000782e6578616d706c650d00000000000000626f6240782e6578616d706c650100000007000000000000007569643d626f62"),
    ("put_group", "031a0000000900000000000000782e6578616d706c65050000000000000073616c6573050000000000000053616c657301000000000000006401000000000000000400000000000000656d65610100000000000000050000000000000073616c657300000000"),
    ("remove_group", "031b0000000900000000000000782e6578616d706c65050000000000000073616c6573"),
    ("set_group_member", "031c0000000900000000000000782e6578616d706c65050000000000000073616c65730300000000000000626f620900000000000000782e6578616d706c6501"),
    ("set_policy", "031d0000000900000000000000782e6578616d706c65000000000000000008000000000000005b5b72756c655d5d0400000000000000726f6f740900000000000000010000000000000063"),
    ("append_audit", "031e000000010900000000000000782e6578616d706c65000000000000000009000000000000000400000000000000726f6f74090000000000000067726f75702e616464050000000000000073616c6573000000000000000002000000000000007b7d"),
    ("put_admin", "031f00000003000000000000006f707301000000010900000000000000782e6578616d706c6504000000000000000707070709000000000000000400000000000000726f6f7400"),
    ("remove_admin", "032000000003000000000000006f7073"),
];
const RESPONSES: &[(&str, &str)] = &[
    ("done", "0300000000"),
    ("changed", "03010000000300000000000000"),
    ("refused", "03020000000100000018000000000000006e6f20737563682075736572206140782e6578616d706c65"),
    ("appended", "0303000000070000000000000001"),
    ("batch", "0304000000010000000000000000000000"),
    ("invalid_argument", "0302000000000000000000000000000000"),
    ("not_found", "0302000000010000000000000000000000"),
    ("already_exists", "0302000000020000000000000000000000"),
    ("unauthenticated", "0302000000030000000000000000000000"),
    ("permission_denied", "0302000000040000000000000000000000"),
    ("resource_exhausted", "0302000000050000000000000000000000"),
    ("failed_precondition", "0302000000060000000000000000000000"),
    ("unavailable", "0302000000070000000000000000000000"),
    ("internal", "0302000000080000000000000000000000"),
    ("policy_denied", "0302000000090000000000000000000000"),
];
const RECORDS: &[(&str, &str)] = &[
    ("tenant", "030900000000000000782e6578616d706c650100000000000000"),
    ("tenant_limits", "0300010500000000"),
    ("account", "030100000000000000610900000000000000782e6578616d706c6501000000000000000100100000020000000000000001010300000000000000010101010000000000000002001000000200000000000000020203000000000000000202020005000000000000000600000000000000"),
    ("token", "03010000000000000074010101010101010101010101010101010101010101010101010101010101010101000000000000006401000000000000000200000000000000"),
    ("archived_message", "03020000000000000073310500000000000000616c6963650900000000000000782e6578616d706c650300000000000000626f620900000000000000782e6578616d706c6506000000000000006c6170746f7002000000000000006331020000000000000068692a0000000000000004000000000000003c722f3e050000000000000070686f6e65"),
    ("roster_item", "030300000000000000626f620900000000000000782e6578616d706c650100000000000100000000000000420000000000000000"),
    ("blocked", "030300000000000000626f620900000000000000782e6578616d706c65"),
    ("vcard", "0308000000000000003c76436172642f3e"),
    ("presence", "0302000000010000000000000073ff0000000000000000"),
];
