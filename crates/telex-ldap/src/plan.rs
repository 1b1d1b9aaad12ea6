//! What a sync would change: the directory server's users and groups against the tenant's
//! accounts and directory. Entries that came from the server (their `Source` is its DN) follow
//! it; an account with the server's name for a user is linked to it; a group an admin made by
//! hand is left alone, as is who a group is shown to; a sync disables, never enables.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use telex_types::directory::{DirectoryChange, DirectoryData, GroupName, GroupRecord, Source, UserAttributes};
use telex_types::records::AccountRecord;
use telex_types::{Domain, UserJid};

use crate::fetch::{normalize_dn, LdapSnapshot};

/// The changes, each with a line saying it for people, and what could not be synced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    pub changes: Vec<(DirectoryChange, String)>,
    pub warnings: Vec<String>,
    /// Why the plan must not be applied at all, when the server's answer looks broken.
    pub refused: Option<String>,
}

/// A group name from an LDAP common name: lowercase, other characters as `-`.
fn slug(cn: &str) -> Option<GroupName> {
    let s: String = cn
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c.to_ascii_lowercase() } else { '-' })
        .collect();
    GroupName::parse(&s).ok()
}

pub fn plan(tenant: &Domain, snap: &LdapSnapshot, current: &DirectoryData, accounts: &[AccountRecord]) -> SyncPlan {
    let mut p = SyncPlan::default();
    let synced = current.users.iter().filter(|(_, a)| matches!(a.source, Source::Ldap(_))).count();
    if snap.users.is_empty() && synced > 0 {
        // A wrong filter or an ACL hiding the entries reads as "everyone left": not applied.
        p.refused = Some(format!(
            "the directory server returned no users; {synced} synced users would be disabled (check base_dn, user_filter and the sync account's rights)"
        ));
        return p;
    }
    // Users by DN, and the JID each becomes.
    let mut by_dn: HashMap<String, UserJid> = HashMap::new();
    let mut seen: BTreeSet<UserJid> = BTreeSet::new();
    for u in &snap.users {
        match UserJid::parse(&format!("{}@{tenant}", u.uid)) {
            Ok(jid) if seen.insert(jid.clone()) => {
                by_dn.insert(normalize_dn(&u.dn), jid);
            }
            Ok(jid) => p.warnings.push(format!("{} and another entry are both {jid}; the second is skipped", u.dn)),
            Err(e) => p.warnings.push(format!("{}: {:?} is not a usable user name: {}", u.dn, u.uid, e.message)),
        }
    }
    let accounts: HashMap<&UserJid, &AccountRecord> = accounts.iter().map(|a| (&a.jid, a)).collect();
    let attributes: HashMap<&UserJid, &UserAttributes> = current.users.iter().map(|(j, a)| (j, a)).collect();
    for u in &snap.users {
        let Some(jid) = by_dn.get(&normalize_dn(&u.dn)) else { continue };
        let manager = u.manager_dn.as_ref().and_then(|m| {
            let found = by_dn.get(&normalize_dn(m)).cloned();
            if found.is_none() {
                p.warnings.push(format!("{jid}: manager {m} is not a synced user"));
            }
            found
        });
        let wanted = UserAttributes {
            display_name: u.display_name.clone(),
            title: u.title.clone(),
            department: u.department.clone(),
            manager,
            email: u.email.clone(),
            source: Source::Ldap(u.dn.clone()),
        };
        match accounts.get(jid) {
            None if u.disabled => continue,
            None => p.changes.push((DirectoryChange::CreateUser(jid.clone()), format!("+ user {jid} ({})", u.dn))),
            // Disabling follows the server; enabling again is an admin's call (`telex user
            // enable`): a sync never undoes an admin's disable.
            Some(a) if u.disabled && !a.disabled => p.changes.push((
                DirectoryChange::SetDisabled { user: jid.clone(), disabled: true },
                format!("~ user {jid}: disable (as the directory server says)"),
            )),
            Some(_) => {}
        }
        // Bad attributes cost the attributes, not the account's fate above.
        if let Err(e) = wanted.validate() {
            p.warnings.push(format!("{jid}: {}; attributes not synced", e.message));
            continue;
        }
        match attributes.get(jid) {
            Some(now) if **now == wanted => {}
            now => {
                let line = format!("~ user {jid}: {}", describe(now.copied(), &wanted));
                p.changes.push((DirectoryChange::SetAttributes { user: jid.clone(), attributes: wanted }, line));
            }
        }
    }
    // Users that came from the server and are gone from it are disabled.
    for (jid, a) in &current.users {
        if matches!(a.source, Source::Ldap(_)) && !seen.contains(jid) && accounts.get(jid).is_some_and(|a| !a.disabled)
        {
            p.changes.push((
                DirectoryChange::SetDisabled { user: jid.clone(), disabled: true },
                format!("~ user {jid}: disable (no longer in the directory server)"),
            ));
        }
    }
    plan_groups(tenant, snap, current, &by_dn, &mut p);
    p
}

fn plan_groups(
    tenant: &Domain,
    snap: &LdapSnapshot,
    current: &DirectoryData,
    users: &HashMap<String, UserJid>,
    p: &mut SyncPlan,
) {
    let mut names: HashMap<String, GroupName> = HashMap::new();
    for g in &snap.groups {
        match slug(&g.name) {
            Some(n) if names.values().any(|v| v == &n) => {
                p.warnings.push(format!("{} and another group are both named {n}; the second is skipped", g.dn))
            }
            Some(n) => {
                names.insert(normalize_dn(&g.dn), n);
            }
            None => p.warnings.push(format!("{}: {:?} is not a usable group name", g.dn, g.name)),
        }
    }
    let existing: HashMap<&GroupName, &GroupRecord> = current.groups.iter().map(|g| (&g.name, g)).collect();
    let mut members_now: BTreeMap<&GroupName, BTreeSet<&UserJid>> = BTreeMap::new();
    for (g, u) in &current.members {
        members_now.entry(g).or_default().insert(u);
    }
    let mut synced = BTreeSet::new();
    for g in &snap.groups {
        let Some(name) = names.get(&normalize_dn(&g.dn)) else { continue };
        let before = existing.get(name).copied();
        if before.is_some_and(|b| b.source == Source::Local) {
            p.warnings.push(format!("{}: a group {name} made by hand exists; left alone", g.dn));
            continue;
        }
        synced.insert(name.clone());
        let (mut subgroups, mut members) = (BTreeSet::new(), BTreeSet::new());
        for m in &g.members {
            let m = normalize_dn(m);
            if let Some(u) = users.get(&m) {
                members.insert(u.clone());
            } else if let Some(sub) = names.get(&m) {
                subgroups.insert(sub.clone());
            }
            // Anything else (a placeholder member, an entry outside the filters) is ignored.
        }
        let record = GroupRecord {
            tenant: tenant.clone(),
            name: name.clone(),
            display_name: g.name.clone(),
            description: g.description.clone(),
            subgroups,
            // Who sees the group as a shared roster is an admin's choice, kept across syncs.
            shown_to: before.map(|b| b.shown_to.clone()).unwrap_or_default(),
            source: Source::Ldap(g.dn.clone()),
        };
        if record.validate().is_err() {
            p.warnings.push(format!("{}: the group's name or description is too long; skipped", g.dn));
            continue;
        }
        if before != Some(&record) {
            let sign = if before.is_some() { "~" } else { "+" };
            let subs: Vec<&str> = record.subgroups.iter().map(GroupName::as_str).collect();
            let subs = if subs.is_empty() { "none".to_string() } else { subs.join(",") };
            let line = format!("{sign} group {name} (subgroups: {subs})");
            p.changes.push((DirectoryChange::PutGroup(record), line));
        }
        let now = members_now.get(name).cloned().unwrap_or_default();
        for u in members.iter().filter(|u| !now.contains(u)) {
            p.changes.push((
                DirectoryChange::Member { group: name.clone(), user: u.clone(), member: true },
                format!("+ member {u} of {name}"),
            ));
        }
        for u in now.iter().filter(|u| !members.contains(*u)) {
            p.changes.push((
                DirectoryChange::Member { group: name.clone(), user: (*u).clone(), member: false },
                format!("- member {u} of {name}"),
            ));
        }
    }
    for g in &current.groups {
        if matches!(g.source, Source::Ldap(_)) && !synced.contains(&g.name) {
            p.changes.push((DirectoryChange::RemoveGroup(g.name.clone()), format!("- group {}", g.name)));
        }
    }
}

/// What changes between two sets of attributes, for people.
fn describe(before: Option<&UserAttributes>, after: &UserAttributes) -> String {
    let empty = UserAttributes::default();
    let b = before.unwrap_or(&empty);
    let mut parts = Vec::new();
    for (field, x, y) in [
        ("display name", &b.display_name, &after.display_name),
        ("title", &b.title, &after.title),
        ("department", &b.department, &after.department),
        ("email", &b.email, &after.email),
    ] {
        if x != y {
            parts.push(format!("{field} {x:?} -> {y:?}"));
        }
    }
    if b.manager != after.manager {
        let show = |m: &Option<UserJid>| m.as_ref().map_or("none".to_string(), |m| m.to_string());
        parts.push(format!("manager {} -> {}", show(&b.manager), show(&after.manager)));
    }
    if parts.is_empty() {
        parts.push("now synced from the directory server".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{LdapGroup, LdapUser};
    use telex_types::records::{Credentials, ScramKeys};

    fn jid(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    fn account(j: &str, disabled: bool) -> AccountRecord {
        AccountRecord {
            jid: jid(j),
            credentials: Credentials { sha256: keys(), sha1: keys() },
            disabled,
            created_at: 0,
            password_changed_at: 0,
        }
    }

    fn keys() -> ScramKeys {
        ScramKeys { salt: Vec::new(), iterations: 1, stored_key: Vec::new(), server_key: Vec::new() }
    }

    fn user(uid: &str, title: &str) -> LdapUser {
        LdapUser {
            dn: format!("uid={uid},ou=people,dc=x"),
            uid: uid.into(),
            display_name: uid.to_uppercase(),
            title: title.into(),
            ..LdapUser::default()
        }
    }

    #[test]
    fn a_sync_creates_updates_disables_and_groups_follow_the_server() {
        let tenant = Domain::parse("x").unwrap();
        let mut boss = user("boss", "CEO");
        boss.manager_dn = None;
        let mut ann = user("ann", "Engineer");
        ann.manager_dn = Some("UID=boss, ou=people, dc=x".into());
        let mut gone = user("gone", "");
        gone.disabled = true;
        let snap = LdapSnapshot {
            users: vec![boss, ann, gone, user("bad name", "")],
            groups: vec![
                LdapGroup {
                    dn: "cn=Engineering,ou=groups,dc=x".into(),
                    name: "Engineering".into(),
                    description: String::new(),
                    members: vec!["uid=ann,ou=people,dc=x".into(), "cn=Backend Team,ou=groups,dc=x".into()],
                },
                LdapGroup {
                    dn: "cn=Backend Team,ou=groups,dc=x".into(),
                    name: "Backend Team".into(),
                    description: "servers".into(),
                    members: vec!["cn=placeholder".into()],
                },
            ],
        };
        let synced_before = UserAttributes { source: Source::Ldap("uid=old,dc=x".into()), ..UserAttributes::default() };
        let mut shown = GroupRecord {
            tenant: tenant.clone(),
            name: GroupName::parse("engineering").unwrap(),
            display_name: "Engineering".into(),
            description: String::new(),
            subgroups: BTreeSet::new(),
            shown_to: BTreeSet::from([GroupName::parse("engineering").unwrap()]),
            source: Source::Ldap("cn=Engineering,ou=groups,dc=x".into()),
        };
        let stale = GroupRecord { name: GroupName::parse("old").unwrap(), ..shown.clone() };
        let current = DirectoryData {
            users: vec![(jid("old@x"), synced_before), (jid("local@x"), UserAttributes::default())],
            groups: vec![shown.clone(), stale],
            members: vec![(GroupName::parse("engineering").unwrap(), jid("old@x"))],
        };
        let accounts = [account("ann@x", false), account("old@x", false), account("local@x", false)];
        let p = plan(&tenant, &snap, &current, &accounts);
        let lines: Vec<&str> = p.changes.iter().map(|(_, l)| l.as_str()).collect();
        assert!(lines.contains(&"+ user boss@x (uid=boss,ou=people,dc=x)"), "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("ann@x (")), "ann has an account: {lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("gone@x")), "a disabled user is not created");
        assert!(lines.contains(&"~ user old@x: disable (no longer in the directory server)"));
        assert!(!lines.iter().any(|l| l.contains("local@x")), "hand-made users stay");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("~ user ann@x: display name \"\" -> \"ANN\"")
                    && l.contains("manager none -> boss@x")),
            "{lines:#?}"
        );
        assert!(lines.contains(&"+ member ann@x of engineering"));
        assert!(lines.contains(&"- member old@x of engineering"));
        assert!(lines.contains(&"~ group engineering (subgroups: backend-team)"));
        assert!(lines.contains(&"+ group backend-team (subgroups: none)"));
        assert!(lines.contains(&"- group old"));
        assert!(p.warnings.iter().any(|w| w.contains("bad name")), "{:?}", p.warnings);
        // Who a synced group is shown to stays what the admin set.
        let put = p.changes.iter().find_map(|(c, _)| match c {
            DirectoryChange::PutGroup(g) if g.name.as_str() == "engineering" => Some(g.clone()),
            _ => None,
        });
        shown.subgroups.insert(GroupName::parse("backend-team").unwrap());
        assert_eq!(put, Some(shown));
    }

    #[test]
    fn an_empty_answer_never_disables_everyone_and_an_admins_disable_stays() {
        let tenant = Domain::parse("x").unwrap();
        let synced = UserAttributes { source: Source::Ldap("uid=ann,dc=x".into()), ..UserAttributes::default() };
        let current = DirectoryData { users: vec![(jid("ann@x"), synced)], ..DirectoryData::default() };
        let p = plan(&tenant, &LdapSnapshot::default(), &current, &[account("ann@x", false)]);
        assert!(p.refused.is_some_and(|r| r.contains("no users")) && p.changes.is_empty());
        // Disabled here by an admin, enabled on the server: stays disabled.
        let mut long = user("ann", &"t".repeat(300));
        long.disabled = false;
        let snap = LdapSnapshot { users: vec![long], groups: Vec::new() };
        let p = plan(&tenant, &snap, &current, &[account("ann@x", true)]);
        assert!(!p.changes.iter().any(|(c, _)| matches!(c, DirectoryChange::SetDisabled { .. })), "{:?}", p.changes);
        assert!(p.warnings.iter().any(|w| w.contains("attributes not synced")), "{:?}", p.warnings);
        // Bad attributes do not save a user the server disabled.
        let mut gone = user("ann", &"t".repeat(300));
        gone.disabled = true;
        let p = plan(
            &tenant,
            &LdapSnapshot { users: vec![gone], groups: Vec::new() },
            &current,
            &[account("ann@x", false)],
        );
        assert!(p.changes.iter().any(|(c, _)| matches!(c, DirectoryChange::SetDisabled { disabled: true, .. })));
    }

    #[test]
    fn a_second_sync_of_the_same_server_changes_nothing() {
        let tenant = Domain::parse("x").unwrap();
        let snap = LdapSnapshot { users: vec![user("ann", "Engineer")], groups: Vec::new() };
        let first = plan(&tenant, &snap, &DirectoryData::default(), &[]);
        let attributes = first.changes.iter().find_map(|(c, _)| match c {
            DirectoryChange::SetAttributes { attributes, .. } => Some(attributes.clone()),
            _ => None,
        });
        let current = DirectoryData { users: vec![(jid("ann@x"), attributes.unwrap())], ..DirectoryData::default() };
        let again = plan(&tenant, &snap, &current, &[account("ann@x", false)]);
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }
}
