//! A node's view of one tenant's directory, built from what the meta group holds: every user
//! the directory knows gets a small index, and every group the set of its members (its
//! subgroups' members included) as a bit set, so "is A in group G" is one bit test.

use std::collections::{BTreeSet, HashMap};

use fixedbitset::FixedBitSet;
use telex_types::directory::{DirectoryData, GroupName, GroupRecord, UserAttributes};
use telex_types::UserJid;

/// Subgroups nest at most this deep (deeper ones are cut off, and said so by `warnings`).
const MAX_NESTING: usize = 16;

#[derive(Debug, Default)]
pub struct DirectoryView {
    index: HashMap<UserJid, u32>,
    users: Vec<(UserJid, UserAttributes)>,
    groups: HashMap<GroupName, GroupView>,
    /// What building the view noticed (cycles, dangling subgroups).
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct GroupView {
    pub record: GroupRecord,
    /// Members, subgroups' members included, by index.
    pub members: FixedBitSet,
    /// Members named directly.
    pub direct: BTreeSet<UserJid>,
}

impl DirectoryView {
    pub fn build(data: DirectoryData) -> DirectoryView {
        let mut view = DirectoryView::default();
        for (user, attributes) in data.users {
            view.add_user(user, attributes);
        }
        for (_, user) in &data.members {
            if !view.index.contains_key(user) {
                view.add_user(user.clone(), UserAttributes::default());
            }
        }
        let n = view.users.len();
        let mut direct: HashMap<GroupName, BTreeSet<UserJid>> = HashMap::new();
        for (group, user) in data.members {
            direct.entry(group).or_default().insert(user);
        }
        let records: HashMap<GroupName, GroupRecord> = data.groups.into_iter().map(|g| (g.name.clone(), g)).collect();
        for (name, record) in &records {
            let mut members = FixedBitSet::with_capacity(n);
            let mut seen = BTreeSet::new();
            view.collect(name, &records, &direct, &mut members, &mut seen, 0);
            let direct = direct.get(name).cloned().unwrap_or_default();
            view.groups.insert(name.clone(), GroupView { record: record.clone(), members, direct });
        }
        view
    }

    fn add_user(&mut self, user: UserJid, attributes: UserAttributes) {
        let i = self.users.len() as u32;
        self.index.insert(user.clone(), i);
        self.users.push((user, attributes));
    }

    /// Adds `name`'s members and its subgroups' to `into`.
    fn collect(
        &mut self,
        name: &GroupName,
        records: &HashMap<GroupName, GroupRecord>,
        direct: &HashMap<GroupName, BTreeSet<UserJid>>,
        into: &mut FixedBitSet,
        seen: &mut BTreeSet<GroupName>,
        depth: usize,
    ) {
        if !seen.insert(name.clone()) {
            return;
        }
        if depth > MAX_NESTING {
            self.warnings.push(format!("group {name} nests deeper than {MAX_NESTING}; deeper groups are ignored"));
            return;
        }
        for user in direct.get(name).into_iter().flatten() {
            if let Some(i) = self.index.get(user) {
                into.insert(*i as usize);
            }
        }
        let Some(record) = records.get(name) else { return };
        for sub in &record.subgroups {
            if !records.contains_key(sub) {
                self.warnings.push(format!("group {name} includes {sub}, which does not exist"));
                continue;
            }
            self.collect(sub, records, direct, into, seen, depth + 1);
        }
    }

    /// The user's index, if the directory knows it.
    pub fn index_of(&self, user: &UserJid) -> Option<u32> {
        self.index.get(user).copied()
    }

    pub fn attributes(&self, user: &UserJid) -> Option<&UserAttributes> {
        let i = self.index_of(user)?;
        self.users.get(i as usize).map(|(_, a)| a)
    }

    pub fn group(&self, name: &GroupName) -> Option<&GroupView> {
        self.groups.get(name)
    }

    pub fn groups(&self) -> impl Iterator<Item = &GroupView> {
        self.groups.values()
    }

    /// Users the directory knows, in index order.
    pub fn users(&self) -> impl Iterator<Item = (u32, &UserJid, &UserAttributes)> {
        self.users.iter().enumerate().map(|(i, (u, a))| (i as u32, u, a))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` is in `group` (directly or through a subgroup).
    pub fn in_group(&self, user: &UserJid, group: &GroupName) -> bool {
        match (self.index_of(user), self.groups.get(group)) {
            (Some(i), Some(g)) => g.members.contains(i as usize),
            _ => false,
        }
    }

    /// The members of `group`, subgroups' included.
    pub fn members(&self, group: &GroupName) -> Vec<&UserJid> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        g.members.ones().filter_map(|i| self.users.get(i).map(|(u, _)| u)).collect()
    }

    /// The groups `user` is in, subgroups' membership included.
    pub fn groups_of(&self, user: &UserJid) -> Vec<&GroupName> {
        let Some(i) = self.index_of(user) else { return Vec::new() };
        let mut out: Vec<&GroupName> =
            self.groups.iter().filter(|(_, g)| g.members.contains(i as usize)).map(|(n, _)| n).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use telex_types::directory::Source;
    use telex_types::Domain;

    pub(crate) fn jid(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    pub(crate) fn name(s: &str) -> GroupName {
        GroupName::parse(s).unwrap()
    }

    pub(crate) fn group(n: &str, subgroups: &[&str]) -> GroupRecord {
        GroupRecord {
            tenant: Domain::parse("x").unwrap(),
            name: name(n),
            display_name: n.to_string(),
            description: String::new(),
            subgroups: subgroups.iter().map(|s| name(s)).collect(),
            shown_to: BTreeSet::new(),
            source: Source::Local,
        }
    }

    #[test]
    fn nested_groups_hold_their_subgroups_members_and_cycles_end() {
        let data = DirectoryData {
            users: vec![(jid("ceo@x"), UserAttributes { title: "CEO".into(), ..UserAttributes::default() })],
            groups: vec![group("company", &["eng", "sales"]), group("eng", &["backend"]), group("backend", &["eng"])],
            members: vec![
                (name("backend"), jid("bob@x")),
                (name("sales"), jid("sue@x")),
                (name("company"), jid("ceo@x")),
            ],
        };
        let v = DirectoryView::build(data);
        assert!(v.in_group(&jid("bob@x"), &name("company")), "through eng and backend");
        assert!(v.in_group(&jid("bob@x"), &name("eng")));
        assert!(!v.in_group(&jid("ceo@x"), &name("eng")));
        assert!(!v.in_group(&jid("nobody@x"), &name("company")));
        // `sales` has members but no record: a dangling subgroup, said so.
        assert!(!v.in_group(&jid("sue@x"), &name("company")));
        assert!(v.warnings.iter().any(|w| w.contains("sales")), "{:?}", v.warnings);
        assert_eq!(v.groups_of(&jid("bob@x")), vec![&name("backend"), &name("company"), &name("eng")]);
        assert_eq!(v.attributes(&jid("ceo@x")).map(|a| a.title.as_str()), Some("CEO"));
        assert_eq!(v.members(&name("eng")).len(), 1);
    }
}
