//! A tenant's policy: one TOML file of rules over the directory, compiled against a node's
//! view of it into bit sets, so a check is a few bit tests per rule (no I/O, no allocation).
//!
//! ```toml
//! [defaults]            # every action is allowed unless a rule denies it; "deny" here makes
//! message = "allow"     # an allow rule necessary
//!
//! [[barrier]]           # an information barrier: the sides never see or message each other
//! name = "research-trading"
//! between = ["group:research", "group:trading"]
//! description = "Research and trading are kept apart"
//!
//! [[rule]]
//! name = "ceo"
//! effect = "deny"
//! actions = ["message"]
//! from = ["*"]
//! except_from = ["group:managers"]
//! to = ["user:ceo@acme.example"]
//! description = "Only managers may message the CEO"
//!
//! [[sessions]]          # sessions per user
//! who = ["group:contractors"]
//! max = 2
//!
//! [[attachments]]       # what may be sent as a file
//! who = ["*"]
//! max_bytes = 10485760
//! types = ["image/*", "application/pdf"]
//! ```
//!
//! Selectors: `*`, `group:NAME` (subgroups' members included), `user:JID`, `attr:KEY=VALUE`
//! (display_name, title, department, email, manager; the value compared without case).
//! Deny wins: a matching deny rule or barrier refuses; otherwise the action's default decides,
//! and an allow rule lifts a default of deny.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use serde::Deserialize;
use telex_types::directory::{GroupName, UserAttributes, ATTRIBUTES, MAX_POLICY};
use telex_types::{Domain, UserJid};
use toml::Spanned;

use crate::directory::{DirectoryView, SharedContact};

/// What a policy rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyAction {
    /// See the other in the directory, in presence, rosters, search and room occupant lists.
    See,
    Message,
    JoinRoom,
    CreateRoom,
    /// Invite the other into a room.
    Invite,
    /// Send a file (`attachments` limits its size and type).
    Attach,
    /// Send end-to-end encrypted content (OMEMO and the like), which the archive cannot read.
    E2ee,
    /// Message users of other domains (federation).
    External,
}

pub const ACTIONS: [PolicyAction; 8] = [
    PolicyAction::See,
    PolicyAction::Message,
    PolicyAction::JoinRoom,
    PolicyAction::CreateRoom,
    PolicyAction::Invite,
    PolicyAction::Attach,
    PolicyAction::E2ee,
    PolicyAction::External,
];

impl PolicyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::See => "see",
            PolicyAction::Message => "message",
            PolicyAction::JoinRoom => "join_room",
            PolicyAction::CreateRoom => "create_room",
            PolicyAction::Invite => "invite",
            PolicyAction::Attach => "attach",
            PolicyAction::E2ee => "e2ee",
            PolicyAction::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyAction> {
        ACTIONS.into_iter().find(|a| a.as_str() == s)
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// Actions an information barrier stops between its sides.
    fn barred(self) -> bool {
        matches!(self, PolicyAction::See | PolicyAction::Message | PolicyAction::Invite | PolicyAction::JoinRoom)
    }
}

/// A policy file refused: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based; 0 when the whole file is at fault.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// Which rule refused, and what it says (shown to the refused user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRefusal {
    pub rule: String,
    pub description: String,
}

impl PolicyRefusal {
    /// What the user is told: the rule's description, or its name when it has none.
    pub fn message(&self) -> String {
        if self.description.is_empty() {
            format!("refused by the policy rule {}", self.rule)
        } else {
            self.description.clone()
        }
    }

    /// As an error (`PolicyDenied`; XMPP `policy-violation`), for calls outside `decide`.
    pub fn to_error(&self) -> telex_types::TelexError {
        telex_types::TelexError::new(telex_types::ErrorCode::PolicyDenied, self.message())
    }
}

/// Why a check came out as it did (`telex policy test`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    /// The rule that decided: a rule's or barrier's name, or `default`.
    pub rule: String,
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Effect {
    Allow,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    barrier: Vec<Spanned<BarrierSpec>>,
    #[serde(default)]
    sessions: Vec<Spanned<SessionsSpec>>,
    #[serde(default)]
    attachments: Vec<Spanned<AttachmentSpec>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    see: Option<Effect>,
    message: Option<Effect>,
    join_room: Option<Effect>,
    create_room: Option<Effect>,
    invite: Option<Effect>,
    attach: Option<Effect>,
    e2ee: Option<Effect>,
    external: Option<Effect>,
}

fn everyone() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "*".to_string())]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Spanned<String>,
    effect: Effect,
    actions: Vec<Spanned<String>>,
    #[serde(default = "everyone")]
    from: Vec<Spanned<String>>,
    #[serde(default)]
    except_from: Vec<Spanned<String>>,
    #[serde(default = "everyone")]
    to: Vec<Spanned<String>>,
    #[serde(default)]
    except_to: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BarrierSpec {
    name: Spanned<String>,
    between: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsSpec {
    who: Vec<Spanned<String>>,
    max: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentSpec {
    who: Vec<Spanned<String>>,
    max_bytes: Option<u64>,
    #[serde(default)]
    types: Vec<String>,
}

/// Who a list of selectors names: everyone, or users of the directory by index and users it
/// does not know by address.
#[derive(Clone, Debug, Default)]
struct Matcher {
    all: bool,
    known: FixedBitSet,
    unknown: HashSet<UserJid>,
}

impl Matcher {
    fn matches(&self, who: Who<'_>) -> bool {
        self.all
            || match who.index {
                Some(i) => self.known.contains(i as usize),
                None => self.unknown.contains(who.jid),
            }
    }

    /// Everyone in `self` is in `other`.
    fn within(&self, other: &Matcher) -> bool {
        other.all || (!self.all && self.known.is_subset(&other.known) && self.unknown.is_subset(&other.unknown))
    }
}

/// A user being checked: its address and, if the directory knows it, its index.
#[derive(Clone, Copy)]
struct Who<'a> {
    jid: &'a UserJid,
    index: Option<u32>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    description: String,
    deny: bool,
    from: Matcher,
    except_from: Matcher,
    to: Matcher,
    except_to: Matcher,
}

impl Rule {
    fn applies(&self, s: Who<'_>, o: Who<'_>) -> bool {
        self.from.matches(s) && !self.except_from.matches(s) && self.to.matches(o) && !self.except_to.matches(o)
    }
}

#[derive(Debug)]
struct Barrier {
    name: String,
    description: String,
    sides: Vec<Matcher>,
}

impl Barrier {
    fn separates(&self, s: Who<'_>, o: Who<'_>) -> bool {
        let side = |w: Who<'_>| self.sides.iter().position(|m| m.matches(w));
        matches!((side(s), side(o)), (Some(a), Some(b)) if a != b)
    }
}

/// A tenant's policy compiled against a directory view.
#[derive(Debug)]
pub struct TenantPolicy {
    pub tenant: Domain,
    /// The policy version (0: none set, everything allowed).
    pub version: u64,
    pub view: Arc<DirectoryView>,
    defaults: [bool; ACTIONS.len()],
    rules: [Vec<Rule>; ACTIONS.len()],
    barriers: Vec<Barrier>,
    sessions: Vec<(Matcher, u32)>,
    attachments: Vec<(Matcher, Option<u64>, Vec<String>)>,
}

impl TenantPolicy {
    /// No policy: everything the built-in rules allow.
    pub fn open(tenant: Domain, view: Arc<DirectoryView>) -> TenantPolicy {
        TenantPolicy {
            tenant,
            version: 0,
            view,
            defaults: [true; ACTIONS.len()],
            rules: Default::default(),
            barriers: Vec::new(),
            sessions: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Parses and checks `text` against `view`: an unknown field, action, group or attribute,
    /// or a contradiction, is refused with its line.
    pub fn compile(
        tenant: Domain,
        version: u64,
        text: &str,
        view: Arc<DirectoryView>,
    ) -> Result<TenantPolicy, PolicyError> {
        if text.len() > MAX_POLICY {
            return Err(PolicyError { line: 0, message: format!("the policy is longer than {MAX_POLICY} bytes") });
        }
        let file: File = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let c = Compiler { text, view: &view, tenant: &tenant };
        let mut policy = TenantPolicy::open(tenant.clone(), view.clone());
        policy.version = version;
        let d = &file.defaults;
        for (action, effect) in [
            (PolicyAction::See, d.see),
            (PolicyAction::Message, d.message),
            (PolicyAction::JoinRoom, d.join_room),
            (PolicyAction::CreateRoom, d.create_room),
            (PolicyAction::Invite, d.invite),
            (PolicyAction::Attach, d.attach),
            (PolicyAction::E2ee, d.e2ee),
            (PolicyAction::External, d.external),
        ] {
            if let (Some(e), Some(slot)) = (effect, policy.defaults.get_mut(action.slot())) {
                *slot = e == Effect::Allow;
            }
        }
        let mut names = BTreeSet::new();
        let mut scopes: BTreeMap<(PolicyAction, String), (bool, String)> = BTreeMap::new();
        for spec in &file.rule {
            let line = line_of(text, spec.span().start);
            let r = spec.get_ref();
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(c.err(r.name.span().start, format!("rule name {name:?} is empty or used twice")));
            }
            if r.actions.is_empty() {
                return Err(PolicyError { line, message: format!("rule {name} names no actions") });
            }
            let from = c.matcher(&r.from)?;
            let except_from = c.matcher(&r.except_from)?;
            if !r.except_from.is_empty() && from.within(&except_from) {
                return Err(PolicyError {
                    line,
                    message: format!("rule {name} contradicts itself: everyone in `from` is in `except_from`"),
                });
            }
            let to = c.matcher(&r.to)?;
            let except_to = c.matcher(&r.except_to)?;
            if !r.except_to.is_empty() && to.within(&except_to) {
                return Err(PolicyError {
                    line,
                    message: format!("rule {name} contradicts itself: everyone in `to` is in `except_to`"),
                });
            }
            let scope = [&r.from, &r.except_from, &r.to, &r.except_to]
                .map(|l| l.iter().map(|s| s.get_ref().trim().to_string()).collect::<BTreeSet<_>>())
                .map(|s| s.into_iter().collect::<Vec<_>>().join(","))
                .join("|");
            let deny = r.effect == Effect::Deny;
            for a in &r.actions {
                let Some(action) = PolicyAction::parse(a.get_ref().trim()) else {
                    let known: Vec<&str> = ACTIONS.iter().map(|a| a.as_str()).collect();
                    return Err(c.err(
                        a.span().start,
                        format!("unknown action {:?} (one of {})", a.get_ref(), known.join(", ")),
                    ));
                };
                if let Some((other_deny, other)) = scopes.insert((action, scope.clone()), (deny, name.clone())) {
                    if other_deny != deny {
                        return Err(PolicyError {
                            line,
                            message: format!(
                                "rules {other} and {name} allow and deny {} to the same users: deny would always win",
                                action.as_str()
                            ),
                        });
                    }
                }
                let Some(rules) = policy.rules.get_mut(action.slot()) else { continue };
                rules.push(Rule {
                    name: name.clone(),
                    description: r.description.clone(),
                    deny,
                    from: from.clone(),
                    except_from: except_from.clone(),
                    to: to.clone(),
                    except_to: except_to.clone(),
                });
            }
        }
        for spec in &file.barrier {
            let line = line_of(text, spec.span().start);
            let b = spec.get_ref();
            let name = b.name.get_ref().trim().to_string();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(c.err(b.name.span().start, format!("barrier name {name:?} is empty or used twice")));
            }
            if b.between.len() < 2 {
                return Err(PolicyError { line, message: format!("barrier {name} needs at least two sides") });
            }
            let mut sides = Vec::new();
            for side in &b.between {
                let m = c.matcher(std::slice::from_ref(side))?;
                if m.all {
                    return Err(c.err(side.span().start, format!("barrier {name} cannot have everyone on one side")));
                }
                sides.push(m);
            }
            if let Some(both) = overlap(&sides, &view) {
                return Err(PolicyError {
                    line,
                    message: format!("barrier {name} contradicts itself: {both} would be on both sides"),
                });
            }
            policy.barriers.push(Barrier { name, description: b.description.clone(), sides });
        }
        for spec in &file.sessions {
            let s = spec.get_ref();
            let who = c.matcher(&s.who)?;
            if s.max == 0 && who.all {
                return Err(PolicyError {
                    line: line_of(text, spec.span().start),
                    message: "max = 0 for everyone would lock every user out, admins included".into(),
                });
            }
            policy.sessions.push((who, s.max));
        }
        for spec in &file.attachments {
            let a = spec.get_ref();
            for t in &a.types {
                if !t.contains('/') {
                    return Err(PolicyError {
                        line: line_of(text, spec.span().start),
                        message: format!("attachment type {t:?} is not a media type like image/png or image/*"),
                    });
                }
            }
            policy.attachments.push((c.matcher(&a.who)?, a.max_bytes, a.types.clone()));
        }
        Ok(policy)
    }

    fn who<'a>(&self, jid: &'a UserJid) -> Who<'a> {
        Who { jid, index: self.view.index_of(jid) }
    }

    /// May `subject` do `action` to `object` (for actions without one, pass the subject)?
    /// Allocates nothing unless it refuses.
    pub fn check(&self, subject: &UserJid, action: PolicyAction, object: &UserJid) -> Result<(), PolicyRefusal> {
        match self.outcome(subject, action, object) {
            Outcome::Allowed(_) => Ok(()),
            Outcome::Denied(rule, description) => {
                Err(PolicyRefusal { rule: rule.to_string(), description: description.to_string() })
            }
            Outcome::DeniedByDefault => Err(PolicyRefusal { rule: "default".into(), description: by_default(action) }),
        }
    }

    /// The decision and the rule that made it.
    pub fn explain(&self, subject: &UserJid, action: PolicyAction, object: &UserJid) -> Explanation {
        let (allowed, rule, description) = match self.outcome(subject, action, object) {
            Outcome::Allowed(Some(r)) => (true, r.name.clone(), r.description.clone()),
            Outcome::Allowed(None) => (true, "default".into(), String::new()),
            Outcome::Denied(rule, description) => (false, rule.to_string(), description.to_string()),
            Outcome::DeniedByDefault => (false, "default".into(), by_default(action)),
        };
        Explanation { allowed, rule, description }
    }

    fn outcome(&self, subject: &UserJid, action: PolicyAction, object: &UserJid) -> Outcome<'_> {
        let (s, o) = (self.who(subject), self.who(object));
        if action.barred() && subject != object {
            if let Some(b) = self.barriers.iter().find(|b| b.separates(s, o)) {
                return Outcome::Denied(&b.name, &b.description);
            }
        }
        let rules = self.rules.get(action.slot()).map_or(&[][..], Vec::as_slice);
        if let Some(r) = rules.iter().find(|r| r.deny && r.applies(s, o)) {
            return Outcome::Denied(&r.name, &r.description);
        }
        let allowed_by = rules.iter().find(|r| !r.deny && r.applies(s, o));
        match (self.defaults.get(action.slot()).copied().unwrap_or(true), allowed_by) {
            (_, Some(r)) => Outcome::Allowed(Some(r)),
            (true, None) => Outcome::Allowed(None),
            (false, None) => Outcome::DeniedByDefault,
        }
    }

    /// The contacts shared roster groups put on `user`'s roster, less those the policy hides
    /// from `user`.
    pub fn shared_roster(&self, user: &UserJid) -> BTreeMap<UserJid, SharedContact> {
        let mut contacts = self.view.shared_contacts(user);
        contacts.retain(|c, _| self.check(user, PolicyAction::See, c).is_ok());
        contacts
    }

    /// Whether shared roster groups make `a` and `b` contacts (presence both ways), unless the
    /// policy hides `b` from `a`.
    pub fn shares(&self, a: &UserJid, b: &UserJid) -> bool {
        self.view.shares(a, b) && self.check(a, PolicyAction::See, b).is_ok()
    }

    /// Up to `limit` users of the directory whose JID or attributes contain `query` (case
    /// ignored; empty matches everyone), that the policy lets `searcher` see, by JID.
    pub fn search(&self, searcher: &UserJid, query: &str, limit: usize) -> Vec<(UserJid, UserAttributes)> {
        self.search_where(searcher, query, limit, &|_, _| true)
    }

    /// `search`, keeping only the entries `keep` accepts (before the limit applies).
    pub fn search_where(
        &self,
        searcher: &UserJid,
        query: &str,
        limit: usize,
        keep: &dyn Fn(&UserJid, &UserAttributes) -> bool,
    ) -> Vec<(UserJid, UserAttributes)> {
        let q = query.trim().to_lowercase();
        let hit = |jid: &UserJid, a: &UserAttributes| {
            q.is_empty()
                || jid.to_string().contains(&q)
                || [&a.display_name, &a.title, &a.department, &a.email].iter().any(|v| v.to_lowercase().contains(&q))
        };
        let mut out: Vec<(UserJid, UserAttributes)> = self
            .view
            .users()
            .filter(|(_, jid, a)| jid != &searcher && hit(jid, a) && keep(jid, a))
            .filter(|(_, jid, _)| self.check(searcher, PolicyAction::See, jid).is_ok())
            .map(|(_, jid, a)| (jid.clone(), a.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        out
    }

    /// The most sessions `user` may have open, if the policy limits it.
    pub fn max_sessions(&self, user: &UserJid) -> Option<u32> {
        let w = self.who(user);
        self.sessions.iter().filter(|(m, _)| m.matches(w)).map(|(_, n)| *n).min()
    }

    /// Whether `user` may send a file of `bytes` bytes and media type `media_type`.
    pub fn check_attachment(&self, user: &UserJid, bytes: u64, media_type: &str) -> Result<(), PolicyRefusal> {
        self.check(user, PolicyAction::Attach, user)?;
        let w = self.who(user);
        for (_, max, types) in self.attachments.iter().filter(|(m, _, _)| m.matches(w)) {
            if max.is_some_and(|max| bytes > max) {
                return Err(PolicyRefusal {
                    rule: "attachments".into(),
                    description: format!("files larger than {} bytes are not allowed", max.unwrap_or(0)),
                });
            }
            if !types.is_empty() && !types.iter().any(|t| media_matches(t, media_type)) {
                return Err(PolicyRefusal {
                    rule: "attachments".into(),
                    description: format!("files of type {media_type} are not allowed (only {})", types.join(", ")),
                });
            }
        }
        Ok(())
    }
}

enum Outcome<'a> {
    /// By an allow rule, or by default.
    Allowed(Option<&'a Rule>),
    /// By a rule or barrier: its name and description.
    Denied(&'a str, &'a str),
    DeniedByDefault,
}

fn by_default(action: PolicyAction) -> String {
    format!("{} is not allowed unless a rule allows it", action.as_str())
}

/// `image/*` matches `image/png`.
fn media_matches(pattern: &str, media_type: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), media_type.to_ascii_lowercase());
    match p.strip_suffix("/*") {
        Some(major) => t.split('/').next() == Some(major),
        None => p == t,
    }
}

/// Someone in two sides of a barrier, if anyone.
fn overlap(sides: &[Matcher], view: &DirectoryView) -> Option<String> {
    for (i, a) in sides.iter().enumerate() {
        for b in sides.iter().skip(i + 1) {
            if let Some(u) = a.known.intersection(&b.known).next() {
                return view.users().nth(u).map(|(_, j, _)| j.to_string());
            }
            if let Some(u) = a.unknown.intersection(&b.unknown).next() {
                return Some(u.to_string());
            }
        }
    }
    None
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count() + 1)
}

struct Compiler<'a> {
    text: &'a str,
    view: &'a DirectoryView,
    tenant: &'a Domain,
}

impl Compiler<'_> {
    fn err(&self, offset: usize, message: String) -> PolicyError {
        PolicyError { line: line_of(self.text, offset), message }
    }

    fn matcher(&self, selectors: &[Spanned<String>]) -> Result<Matcher, PolicyError> {
        let mut m = Matcher { known: FixedBitSet::with_capacity(self.view.len()), ..Matcher::default() };
        for s in selectors {
            self.add(&mut m, s.get_ref().trim()).map_err(|why| self.err(s.span().start, why))?;
        }
        Ok(m)
    }

    fn add(&self, m: &mut Matcher, selector: &str) -> Result<(), String> {
        if selector == "*" {
            m.all = true;
            return Ok(());
        }
        let Some((kind, value)) = selector.split_once(':') else {
            return Err(format!("selector {selector:?}: use *, group:NAME, user:JID or attr:KEY=VALUE"));
        };
        match kind {
            "group" => {
                let name = GroupName::parse(value).map_err(|e| e.message)?;
                let Some(g) = self.view.group(&name) else {
                    return Err(format!("unknown group {:?}", name.as_str()));
                };
                m.known.union_with(&g.members);
            }
            "user" => {
                let jid = UserJid::parse(value).map_err(|e| e.message)?;
                if jid.domain() != self.tenant {
                    return Err(format!("{jid} is not a user of {}", self.tenant));
                }
                match self.view.index_of(&jid) {
                    Some(i) => m.known.insert(i as usize),
                    None => {
                        m.unknown.insert(jid);
                    }
                }
            }
            "attr" => {
                let Some((key, want)) = value.split_once('=') else {
                    return Err(format!("selector {selector:?}: attr:KEY=VALUE"));
                };
                let key = key.trim();
                if !ATTRIBUTES.contains(&key) {
                    return Err(format!("unknown attribute {key:?} (one of {})", ATTRIBUTES.join(", ")));
                }
                let want = want.trim();
                for (i, _, a) in self.view.users() {
                    let have = match key {
                        "manager" => a.manager.as_ref().map(|j| j.to_string()),
                        k => a.get(k).map(str::to_string),
                    };
                    if have.is_some_and(|h| h.eq_ignore_ascii_case(want)) {
                        m.known.insert(i as usize);
                    }
                }
            }
            other => return Err(format!("unknown selector kind {other:?} (group, user or attr)")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::tests::{group, jid, name};
    use telex_types::directory::DirectoryData;

    fn view() -> Arc<DirectoryView> {
        let manager = UserAttributes { title: "Manager".into(), ..UserAttributes::default() };
        Arc::new(DirectoryView::build(DirectoryData {
            users: vec![(jid("max@x"), manager)],
            groups: vec![group("research", &[]), group("trading", &[]), group("managers", &[]), group("staff", &[])],
            members: vec![
                (name("research"), jid("rita@x")),
                (name("trading"), jid("tom@x")),
                (name("managers"), jid("mia@x")),
                (name("staff"), jid("rita@x")),
                (name("staff"), jid("tom@x")),
            ],
        }))
    }

    fn compile(text: &str) -> Result<TenantPolicy, PolicyError> {
        TenantPolicy::compile(Domain::parse("x").unwrap(), 1, text, view())
    }

    const POLICY: &str = r#"
[[barrier]]
name = "chinese-wall"
between = ["group:research", "group:trading"]
description = "Research and trading are kept apart"

[[rule]]
name = "ceo"
effect = "deny"
actions = ["message"]
except_from = ["group:managers", "attr:title=manager"]
to = ["user:ceo@x"]
description = "Only managers may message the CEO"

[[sessions]]
who = ["group:staff"]
max = 2

[[attachments]]
who = ["*"]
max_bytes = 1000
types = ["image/*"]
"#;

    #[test]
    fn barriers_and_rules_decide_and_say_which() {
        let p = compile(POLICY).unwrap();
        let (rita, tom, mia, max, ceo) = (jid("rita@x"), jid("tom@x"), jid("mia@x"), jid("max@x"), jid("ceo@x"));
        let e = p.check(&rita, PolicyAction::Message, &tom).unwrap_err();
        assert_eq!(e.rule, "chinese-wall");
        assert_eq!(p.check(&tom, PolicyAction::See, &rita).unwrap_err().rule, "chinese-wall", "both ways");
        assert!(p.check(&rita, PolicyAction::Message, &mia).is_ok());
        assert!(p.check(&rita, PolicyAction::CreateRoom, &rita).is_ok(), "not a barred action");
        let e = p.check(&rita, PolicyAction::Message, &ceo).unwrap_err();
        assert_eq!((e.rule.as_str(), e.description.as_str()), ("ceo", "Only managers may message the CEO"));
        assert!(p.check(&mia, PolicyAction::Message, &ceo).is_ok(), "a manager by group");
        assert!(p.check(&max, PolicyAction::Message, &ceo).is_ok(), "a manager by title");
        assert!(p.check(&jid("stranger@x"), PolicyAction::Message, &ceo).is_err(), "unknown users are `*`");
        assert_eq!(p.explain(&mia, PolicyAction::See, &rita).rule, "default");
        assert_eq!(p.max_sessions(&rita), Some(2));
        assert_eq!(p.max_sessions(&mia), None);
        assert!(p.check_attachment(&rita, 10, "image/png").is_ok());
        assert!(p.check_attachment(&rita, 10, "application/zip").unwrap_err().description.contains("image/*"));
        assert!(p.check_attachment(&rita, 5000, "image/png").unwrap_err().description.contains("1000"));
    }

    #[test]
    fn a_default_of_deny_needs_an_allow_rule() {
        let p = compile(
            r#"
[defaults]
e2ee = "deny"

[[rule]]
name = "security-team-may-encrypt"
effect = "allow"
actions = ["e2ee"]
from = ["group:managers"]
"#,
        )
        .unwrap();
        assert!(p.check(&jid("mia@x"), PolicyAction::E2ee, &jid("mia@x")).is_ok());
        let e = p.explain(&jid("tom@x"), PolicyAction::E2ee, &jid("tom@x"));
        assert!(!e.allowed && e.rule == "default", "{e:?}");
    }

    #[test]
    fn a_search_finds_by_name_or_attribute_and_hides_whom_the_policy_hides() {
        let p = compile(POLICY).unwrap();
        let found = |who: &str, q: &str| -> Vec<String> {
            p.search(&jid(who), q, 10).into_iter().map(|(j, _)| j.to_string()).collect()
        };
        assert_eq!(found("mia@x", "MANAGER"), vec!["max@x"], "by title, case ignored");
        assert_eq!(found("mia@x", "a"), vec!["max@x", "rita@x"], "by JID");
        assert_eq!(found("mia@x", "tom"), vec!["tom@x"]);
        // The barrier hides trading from research, in search too.
        assert!(found("rita@x", "tom").is_empty());
        assert!(found("rita@x", "rita").is_empty(), "not yourself");
        assert_eq!(p.search(&jid("mia@x"), "", 2).len(), 2, "bounded");
    }

    #[test]
    fn bad_files_are_refused_with_the_line_and_the_reason() {
        let cases = [
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"message\"]\ncolour = \"red\"\n", 5, "colour"),
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"shout\"]\n", 4, "unknown action"),
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"message\"]\nfrom = [\"group:nope\"]\n", 5, "unknown group"),
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"see\"]\nto = [\"attr:shoe=9\"]\n", 5, "unknown attribute"),
            ("[[barrier]]\nname = \"b\"\nbetween = [\"group:staff\", \"group:research\"]\n", 1, "both sides"),
            (
                "[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"message\"]\nfrom = [\"group:research\"]\n\n[[rule]]\nname = \"b\"\neffect = \"allow\"\nactions = [\"message\"]\nfrom = [\"group:research\"]\n",
                7,
                "deny would always win",
            ),
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"message\"]\nfrom = [\"group:research\"]\nexcept_from = [\"group:staff\"]\n", 1, "contradicts itself"),
            ("[[rule]]\nname = \"a\"\neffect = \"deny\"\nactions = [\"message\"]\nto = [\"user:ceo@elsewhere\"]\n", 5, "not a user of x"),
            ("[defaults]\nmessage = \"maybe\"\n", 2, "maybe"),
            ("[[sessions]]\nwho = [\"*\"]\nmax = 0\n", 1, "lock every user out"),
        ];
        for (text, line, needle) in cases {
            let e = compile(text).unwrap_err();
            assert!(e.message.contains(needle), "{text}: {e}");
            assert_eq!(e.line, line, "{text}: {e}");
        }
        assert!(compile("").is_ok(), "an empty policy allows what the built-in rules allow");
    }
}
