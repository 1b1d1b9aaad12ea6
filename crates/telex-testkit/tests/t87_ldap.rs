//! The company directory synced from a real OpenLDAP server (`slapd`, started by the test):
//! a dry run that lists the changes, the sync itself, nested groups, attributes and managers,
//! users disabled or removed on the server disabled here, passwords checked by binding to the
//! server, departments published as shared rosters across syncs, scheduled syncs, and a server
//! that cannot be reached (the last synced directory stays, and `/readyz` says so).

use std::time::{Duration, Instant};

use telex_testkit::ldap::{Slapd, ROOT_DN, ROOT_PASSWORD, SUFFIX};
use telex_testkit::{data_dir, http_get, Telexd};

fn person(uid: &str, cn: &str, title: &str, department: &str, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!("{extra}\n") };
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {uid}\n\
         title: {title}\ndepartmentNumber: {department}\nmail: {uid}@acme.example\nuserPassword: {uid}-pw\n{extra}\n"
    )
}

fn group(cn: &str, members: &[&str]) -> String {
    let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
    format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n")
}

fn uid(u: &str) -> String {
    format!("uid={u},ou=people,{SUFFIX}")
}

fn cn(g: &str) -> String {
    format!("cn={g},ou=groups,{SUFFIX}")
}

fn config(dir: &std::path::Path, url: &str, interval: u64) -> std::path::PathBuf {
    let path = dir.with_extension("toml");
    std::fs::write(
        &path,
        format!(
            "[[ldap]]\ntenant = \"localhost\"\nurl = \"{url}\"\nbind_dn = \"{ROOT_DN}\"\n\
             bind_password = \"{ROOT_PASSWORD}\"\nbase_dn = \"ou=people,{SUFFIX}\"\n\
             group_base_dn = \"ou=groups,{SUFFIX}\"\ndisabled_attribute = \"employeeType\"\n\
             sync_interval_secs = {interval}\npassword_bind = true\ntimeout_secs = 3\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_admin_syncs_the_company_from_ldap_and_the_directory_follows_the_server() {
    let (tmp, dir) = data_dir();
    let mut ldap = Slapd::start(&tmp.path().join("ldap"));
    let mut people = String::new();
    people.push_str(&person("carla", "Carla Chief", "CEO", "Board", ""));
    people.push_str(&person("mia", "Mia Manager", "Manager", "Sales", &format!("manager: {}", uid("carla"))));
    people.push_str(&person("sam", "Sam Seller", "Seller", "Sales", ""));
    people.push_str(&person("rita", "Rita Research", "Analyst", "Research", ""));
    people.push_str(&person("tom", "Tom Trader", "Trader", "Trading", ""));
    ldap.ldif("add", &people);
    let groups = [
        group("Managers", &[&uid("mia")]),
        group("Sales", &[&uid("mia"), &uid("sam")]),
        group("Research", &[&uid("rita")]),
        group("Trading", &[&uid("tom")]),
        group("Company", &[&uid("carla"), &cn("Managers"), &cn("Sales"), &cn("Research"), &cn("Trading")]),
    ];
    ldap.ldif("add", &groups.concat());

    let config = config(&dir, &ldap.url(), 0);
    let mut node = Telexd::start(&dir, &["--shards", "8", "--config", config.to_str().unwrap()]);

    // A dry run lists the changes and makes none.
    let dry = node.cli(&["directory", "sync", "localhost", "--dry-run"]).success();
    for line in [
        "+ user carla@localhost (uid=carla,ou=people,dc=acme,dc=example)",
        "~ user mia@localhost: display name \"\" -> \"Mia Manager\", title \"\" -> \"Manager\"",
        "+ group company (subgroups: managers,research,sales,trading)",
        "+ member sam@localhost of sales",
        "would apply (dry run) from 5 users and 5 groups",
    ] {
        assert!(dry.contains(line), "{line:?} not in:\n{dry}");
    }
    assert!(node.cli(&["group", "list", "localhost"]).success().trim().is_empty(), "a dry run changed nothing");
    node.cli(&["user", "show", "carla@localhost"]).failure("no such user");

    let applied = node.cli(&["directory", "sync", "localhost"]).success();
    assert!(applied.contains("changes applied from 5 users and 5 groups"), "{applied}");
    let mia = node.cli(&["--json", "user", "show", "mia@localhost"]).json();
    let d = &mia["directory"];
    assert_eq!(d["title"], "Manager");
    assert_eq!(d["manager"], "carla@localhost");
    assert_eq!(d["source"], uid("mia"));
    assert_eq!(d["groups"], serde_json::json!(["company", "managers", "sales"]), "nested through company: {d}");
    let again = node.cli(&["directory", "sync", "localhost"]).success();
    assert!(again.starts_with("0 changes nothing to change"), "a second sync changes nothing: {again}");

    // Passwords are the server's: a bind as the user, never stored here.
    let whoami = |who: &str, pw: &str| node.cli(&["--user", who, "--password", pw, "login"]);
    assert!(whoami("carla@localhost", "carla-pw").success().starts_with("tx1."));
    whoami("carla@localhost", "wrong").failure("unauthenticated");

    // A department published as a shared roster stays published across syncs.
    node.cli(&["group", "add", "sales@localhost", "--shown-to", "sales"]).success();
    let again = node.cli(&["directory", "sync", "localhost"]).success();
    assert!(again.starts_with("0 changes"), "publishing survives a sync: {again}");
    let roster = node.cli(&["--user", "sam@localhost", "--password", "sam-pw", "roster", "list"]).success();
    assert!(roster.contains("mia@localhost"), "{roster}");

    // The server changes: tom is disabled there, rita removed, mia promoted, nina hired.
    ldap.ldif(
        "modify",
        &format!("dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n", uid("tom")),
    );
    ldap.ldif("modify", &format!("dn: {}\nchangetype: delete\n", uid("rita")));
    ldap.ldif("modify", &format!("dn: {}\nchangetype: modify\nreplace: title\ntitle: VP Sales\n", uid("mia")));
    ldap.ldif("add", &person("nina", "Nina New", "Analyst", "Research", ""));
    ldap.ldif("modify", &format!("dn: {}\nchangetype: modify\nadd: member\nmember: {}\n", cn("Research"), uid("nina")));
    let changed = node.cli(&["directory", "sync", "localhost"]).success();
    for line in [
        "~ user tom@localhost: disable (as the directory server says)",
        "~ user rita@localhost: disable (no longer in the directory server)",
        "~ user mia@localhost: title \"Manager\" -> \"VP Sales\"",
        "+ user nina@localhost",
        "+ member nina@localhost of research",
        "- member rita@localhost of research",
    ] {
        assert!(changed.contains(line), "{line:?} not in:\n{changed}");
    }
    whoami("tom@localhost", "tom-pw").failure("disabled");
    assert!(node.cli(&["user", "show", "rita@localhost"]).success().contains("disabled"));

    let audit = node.cli(&["--json", "audit", "list", "localhost", "--actor", "bootstrap"]).success();
    assert_eq!(
        audit.matches(r#""action":"ldap.sync""#).count(),
        2,
        "one entry per sync that changed something: {audit}"
    );

    // The server goes away: the sync says why, the directory stays, /readyz and the status say so.
    ldap.stop();
    node.cli(&["directory", "sync", "localhost"]).failure("cannot reach the directory server");
    let status = node.cli(&["directory", "status"]).success();
    assert!(status.contains("localhost") && status.contains("FAILING since"), "{status}");
    let (code, body) = http_get(node.addrs.http, "/readyz").unwrap();
    assert_eq!(code, 200, "the node still serves: {body}");
    assert!(body.contains("ldap localhost: sync failing"), "{body}");
    let list = node.cli(&["group", "list", "localhost"]).success();
    assert!(list.contains("research") && list.contains("company"), "the last synced directory stays: {list}");
    let metrics = http_get(node.addrs.http, "/metrics").unwrap().1;
    assert!(metrics.contains("telex_ldap_sync_ok{tenant=\"localhost\"} 0"), "metrics say so too");

    // Scheduled syncs: with an interval, the leader of the meta group syncs by itself.
    drop(ldap);
    let mut ldap = Slapd::start(&tmp.path().join("ldap2"));
    ldap.ldif("add", &person("zoe", "Zoe Zed", "Intern", "Sales", ""));
    std::fs::write(&config, std::fs::read_to_string(config_for(&dir, &ldap.url())).unwrap()).unwrap();
    node.kill9();
    node.restart();
    node.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.cli(&["user", "show", "zoe@localhost"]).ok {
        assert!(Instant::now() < deadline, "the scheduled sync never ran");
        std::thread::sleep(Duration::from_millis(250));
    }
    let audit = node.cli(&["audit", "list", "localhost", "--actor", "ldap-sync (scheduled)"]).success();
    assert!(audit.contains("ldap.sync"), "{audit}");
}

fn config_for(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let scheduled = dir.with_extension("scheduled");
    std::fs::create_dir_all(&scheduled).unwrap();
    config(&scheduled.join("node"), url, 1)
}
