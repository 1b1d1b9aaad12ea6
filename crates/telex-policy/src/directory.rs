//! A node's view of one tenant's directory, built from what the meta group holds: every user
//! the directory knows gets a small index, and every group the set of its members (its
//! subgroups' members included) as a bit set, so "is A in group G" is one bit test.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Shared roster groups: (shown group, group it is shown to).
    shown: Vec<(GroupName, GroupName)>,
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
        for (name, record) in &records {
            for to in &record.shown_to {
                if records.contains_key(to) {
                    view.shown.push((name.clone(), to.clone()));
                } else {
                    view.warnings.push(format!("group {name} is shown to {to}, which does not exist"));
                }
            }
        }
        view.shown.sort();
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

/// A contact that shared roster groups put on a user's roster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedContact {
    /// The contact's display name in the directory.
    pub name: String,
    /// The roster groups (the shared groups' display names) it appears in.
    pub groups: BTreeSet<String>,
}

impl DirectoryView {
    /// Whether shared roster groups make `a` and `b` contacts of each other. A group shown to
    /// another puts each side on the other's rosters, so presence flows both ways.
    pub fn shares(&self, a: &UserJid, b: &UserJid) -> bool {
        if self.shown.is_empty() || a == b {
            return false;
        }
        let (Some(a), Some(b)) = (self.index_of(a), self.index_of(b)) else { return false };
        let (a, b) = (a as usize, b as usize);
        let has = |g: &GroupName, i: usize| self.groups.get(g).is_some_and(|g| g.members.contains(i));
        self.shown.iter().any(|(g, to)| (has(g, a) && has(to, b)) || (has(g, b) && has(to, a)))
    }

    /// Everyone shared roster groups put on `user`'s roster, with the groups they appear in.
    pub fn shared_contacts(&self, user: &UserJid) -> BTreeMap<UserJid, SharedContact> {
        let mut out: BTreeMap<UserJid, SharedContact> = BTreeMap::new();
        let Some(me) = self.index_of(user) else { return out };
        let me = me as usize;
        for (shown, to) in &self.shown {
            let (Some(g), Some(t)) = (self.groups.get(shown), self.groups.get(to)) else { continue };
            // Members of the group it is shown to see the shown group's members, and the other
            // way round (labelled with the group the contact is in).
            let mut add = |from: &GroupView| {
                let label = if from.record.display_name.is_empty() {
                    from.record.name.to_string()
                } else {
                    from.record.display_name.clone()
                };
                for i in from.members.ones().filter(|i| *i != me) {
                    let Some((jid, attributes)) = self.users.get(i) else { continue };
                    let c = out.entry(jid.clone()).or_insert_with(|| SharedContact {
                        name: attributes.display_name.clone(),
                        groups: BTreeSet::new(),
                    });
                    c.groups.insert(label.clone());
                }
            };
            if t.members.contains(me) {
                add(g);
            }
            if g.members.contains(me) {
                add(t);
            }
        }
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

    #[test]
    fn a_shown_group_puts_members_on_each_others_rosters_both_ways() {
        let mut sales = group("sales", &[]);
        sales.shown_to.insert(name("sales"));
        let mut management = group("management", &[]);
        management.display_name = "Management".into();
        management.shown_to.insert(name("everyone"));
        let mut ghost = group("ghost", &[]);
        ghost.shown_to.insert(name("missing"));
        let data = DirectoryData {
            users: vec![(jid("ceo@x"), UserAttributes { display_name: "The CEO".into(), ..UserAttributes::default() })],
            groups: vec![sales, management, group("everyone", &["sales", "management"]), ghost],
            members: vec![
                (name("sales"), jid("sue@x")),
                (name("sales"), jid("sam@x")),
                (name("management"), jid("ceo@x")),
                (name("everyone"), jid("eve@x")),
            ],
        };
        let v = DirectoryView::build(data);
        assert!(v.warnings.iter().any(|w| w.contains("missing")), "{:?}", v.warnings);
        let sue = v.shared_contacts(&jid("sue@x"));
        assert_eq!(sue.keys().map(|j| j.to_string()).collect::<Vec<_>>(), vec!["ceo@x", "sam@x"]);
        assert_eq!(sue[&jid("ceo@x")].name, "The CEO");
        assert_eq!(sue[&jid("ceo@x")].groups, BTreeSet::from(["Management".to_string()]));
        assert_eq!(sue[&jid("sam@x")].groups, BTreeSet::from(["sales".to_string()]));
        // The CEO sees everyone the management group is shown to, itself excepted.
        let ceo = v.shared_contacts(&jid("ceo@x"));
        assert_eq!(ceo.len(), 3, "{ceo:?}");
        assert!(!ceo.contains_key(&jid("ceo@x")));
        assert!(v.shares(&jid("sue@x"), &jid("ceo@x")) && v.shares(&jid("ceo@x"), &jid("sue@x")));
        assert!(v.shares(&jid("eve@x"), &jid("ceo@x")));
        assert!(!v.shares(&jid("eve@x"), &jid("sue@x")), "sales is shown only to itself");
        assert!(!v.shares(&jid("sue@x"), &jid("sue@x")));
        assert!(v.shared_contacts(&jid("nobody@x")).is_empty());
    }
}
