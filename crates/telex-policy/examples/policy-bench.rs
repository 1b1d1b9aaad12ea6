//! The cost of one policy decision in a large tenant: a directory of `--users` users in
//! `--groups` groups (nested ten deep in places), a policy of `--rules` rules with barriers,
//! and checks of random (sender, recipient) pairs. Prints ns per decision, p50 and p99 of
//! batches, and the time to compile the policy against the directory.
//!
//!     cargo run --release -p telex-policy --example policy-bench -- --users 10000 --groups 1000 --rules 100

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use telex_policy::directory::DirectoryView;
use telex_policy::rules::{PolicyAction, TenantPolicy};
use telex_types::directory::{DirectoryData, GroupName, GroupRecord, Source, UserAttributes};
use telex_types::{Domain, UserJid};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift), so every run checks the same pairs.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn main() {
    let (users, groups, rules) = (arg("--users", 10_000), arg("--groups", 1_000), arg("--rules", 100));
    let tenant = Domain::parse("acme.example").unwrap();
    let jid = |i: usize| UserJid::new(&format!("u{i}"), tenant.clone()).unwrap();
    let gname = |i: usize| GroupName::parse(&format!("g{i}")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let titles = ["Engineer", "Manager", "Analyst", "Director", "Trader"];
    let mut data = DirectoryData::default();
    for i in 0..users {
        let attrs = UserAttributes {
            title: titles[i % titles.len()].into(),
            department: format!("dept{}", i % 40),
            ..UserAttributes::default()
        };
        data.users.push((jid(i), attrs));
    }
    for g in 0..groups {
        // Every tenth group holds the next nine (departments of teams).
        let subgroups: BTreeSet<GroupName> =
            if g % 10 == 0 { (g + 1..(g + 10).min(groups)).map(gname).collect() } else { BTreeSet::new() };
        data.groups.push(GroupRecord {
            tenant: tenant.clone(),
            name: gname(g),
            display_name: format!("Group {g}"),
            description: String::new(),
            subgroups,
            shown_to: BTreeSet::new(),
            source: Source::Local,
        });
    }
    // Each user is in three groups.
    for u in 0..users {
        for _ in 0..3 {
            data.members.push((gname(rng.next(groups)), jid(u)));
        }
    }
    let started = Instant::now();
    let view = Arc::new(DirectoryView::build(data));
    let built = started.elapsed();
    let mut text = String::new();
    let barriers = rules / 10;
    for b in 0..barriers {
        // Two groups without subgroups (group 1 + 10k and 5 + 10k never nest).
        text.push_str(&format!(
            "[[barrier]]\nname = \"barrier-{b}\"\nbetween = [\"group:g{}\", \"group:g{}\"]\n\n",
            (10 * b + 1) % groups,
            (10 * b + 5) % groups
        ));
    }
    let actions = ["message", "see", "invite", "attach"];
    for r in 0..rules - barriers {
        let action = actions[r % actions.len()];
        text.push_str(&format!(
            "[[rule]]\nname = \"rule-{r}\"\neffect = \"deny\"\nactions = [\"{action}\"]\nfrom = [\"group:g{}\"]\nexcept_from = [\"attr:title=Manager\"]\nto = [\"group:g{}\", \"user:u{}@acme.example\"]\ndescription = \"rule {r}\"\n\n",
            rng.next(groups),
            rng.next(groups),
            rng.next(users)
        ));
    }
    let started = Instant::now();
    let policy = match TenantPolicy::compile(tenant.clone(), 1, &text, view.clone()) {
        Ok(p) => p,
        Err(e) => panic!("the generated policy does not compile: {e}"),
    };
    let compiled = started.elapsed();
    let pairs: Vec<(UserJid, UserJid)> = (0..4096).map(|_| (jid(rng.next(users)), jid(rng.next(users)))).collect();
    let (batches, per_batch) = (200, pairs.len());
    let mut batch_ns = Vec::with_capacity(batches);
    let mut denied = 0usize;
    for _ in 0..batches {
        let t = Instant::now();
        for (s, o) in &pairs {
            if policy.check(black_box(s), PolicyAction::Message, black_box(o)).is_err() {
                denied += 1;
            }
        }
        batch_ns.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    batch_ns.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| batch_ns[((batch_ns.len() as f64 - 1.0) * p) as usize];
    let mean = batch_ns.iter().sum::<f64>() / batch_ns.len() as f64;
    println!(
        "users {users} groups {groups} rules {rules} ({barriers} barriers): directory built in {:.1} ms, policy compiled in {:.1} ms",
        built.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3
    );
    println!(
        "decision (message): mean {mean:.0} ns, batch p50 {:.0} ns, p99 {:.0} ns; {:.1}% denied",
        pct(0.5),
        pct(0.99),
        100.0 * denied as f64 / (batches * per_batch) as f64
    );
}
