//! The admin CLI against a real telexd: tenants and users round trip, and bad input is named.

use telex_testkit::{data_dir, Telexd};

#[test]
fn tenants_and_users_round_trip_through_the_cli() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "8"]);

    // The bootstrap tenant exists on first start.
    let tenants = node.cli(&["--json", "tenant", "list"]).json();
    assert_eq!(tenants[0]["domain"], "localhost");

    assert_eq!(node.cli(&["tenant", "add", "Acme.Example"]).success().trim(), "tenant acme.example added");
    let list = node.cli(&["tenant", "list"]).success();
    assert!(list.contains("acme.example") && list.contains("localhost"), "{list}");

    for name in ["carol", "alice", "bob"] {
        let jid = format!("{name}@acme.example");
        node.cli(&["user", "add", &jid, "--password", "pw-1"]).success();
    }
    // TELEX_PASSWORD works in place of --password.
    node.cli_env(&["user", "add", "dave@acme.example"], &[("TELEX_PASSWORD", "pw-2")]).success();

    let users = node.cli(&["--json", "user", "list", "acme.example"]).json();
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["jid"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice@acme.example", "bob@acme.example", "carol@acme.example", "dave@acme.example"]);
    assert!(node.cli(&["user", "list", "localhost"]).success().trim().is_empty());

    let u = node.cli(&["--json", "user", "disable", "bob@acme.example"]).json();
    assert_eq!(u["disabled"], true);
    assert!(node.cli(&["user", "list", "acme.example"]).success().contains("disabled"));
    let u = node.cli(&["--json", "user", "enable", "bob@acme.example"]).json();
    assert_eq!(u["disabled"], false);

    let before = node.cli(&["--json", "user", "show", "carol@acme.example"]).json();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let after = node.cli(&["--json", "user", "passwd", "carol@acme.example", "--password", "new"]).json();
    assert!(after["password_changed_at_ms"].as_u64() > before["password_changed_at_ms"].as_u64());

    node.cli(&["user", "remove", "alice@acme.example"]).success();
    let users = node.cli(&["--json", "user", "list", "acme.example"]).json();
    assert_eq!(users.as_array().unwrap().len(), 3);

    let status = node.cli(&["--json", "status"]).json();
    assert_eq!(status["shards"], 8);
    assert_eq!(status["groups"].as_array().unwrap().len(), 9, "meta + 8 shards");
    assert!(status["groups"].as_array().unwrap().iter().all(|g| g["role"] == "leader"));
}

#[test]
fn bad_input_gets_a_clear_one_line_error() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);

    node.cli(&["tenant", "add", "bad_domain!"]).failure("invalid argument: invalid domain");
    node.cli(&["tenant", "add", "localhost"]).failure("already exists: tenant localhost already exists");
    node.cli(&["user", "add", "no-at-sign", "--password", "x"]).failure("invalid argument: invalid JID");
    node.cli(&["user", "add", "a b@localhost", "--password", "x"]).failure("invalid argument");
    node.cli(&["user", "add", "alice@nowhere.example", "--password", "x"])
        .failure("not found: no such tenant nowhere.example");
    node.cli(&["user", "add", "alice@localhost"]).failure("a password is required");
    node.cli(&["user", "add", "alice@localhost", "--password", ""])
        .failure("invalid argument: password must not be empty");
    node.cli(&["user", "add", "alice@localhost", "--password", "x"]).success();
    node.cli(&["user", "add", "Alice@LOCALHOST", "--password", "x"])
        .failure("already exists: user alice@localhost already exists");
    node.cli(&["user", "remove", "nobody@localhost"]).failure("not found: no such user nobody@localhost");
    node.cli(&["user", "disable", "nobody@localhost"]).failure("not found");
    node.cli(&["user", "show", "nobody@localhost"]).failure("not found: no such user nobody@localhost");
    node.cli(&["user", "show", "nobody@nowhere.example"]).failure("not found: no such tenant nowhere.example");
    assert!(node.cli(&["user", "show", "ALICE@localhost"]).success().contains("alice@localhost"));
    node.cli(&["user", "list", "nowhere.example"]).failure("not found: no such tenant");

    // An unreachable admin address is a one-line error too.
    let out = telex_testkit::CliOutput::from(
        std::process::Command::new(telex_testkit::bin("telex"))
            .args(["--admin", "127.0.0.1:1", "tenant", "list"])
            .output()
            .unwrap(),
    );
    out.failure("cannot connect to 127.0.0.1:1");
}
