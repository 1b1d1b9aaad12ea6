//! Password login through the client API: right, wrong, unknown and disabled credentials, and
//! token revocation.

use telex_testkit::{data_dir, Telexd};

#[test]
fn login_accepts_only_right_credentials_and_tokens_are_revocable() {
    let (_tmp, dir) = data_dir();
    let node = Telexd::start(&dir, &["--shards", "4"]);
    node.cli(&["user", "add", "alice@localhost", "--password", "correct horse"]).success();

    let login =
        |user: &str, pw: &str| node.cli(&["--json", "login", "--user", user, "--password", pw, "--device", "laptop"]);

    let ok = login("alice@localhost", "correct horse").json();
    let token = ok["token"].as_str().unwrap().to_string();
    assert_eq!(ok["jid"], "alice@localhost");
    assert_eq!(ok["device"], "laptop");
    let who = node.cli(&["--json", "whoami", "--token", &token]).json();
    assert_eq!(who["jid"], "alice@localhost");
    assert_eq!(who["device"], "laptop");

    // Wrong password, unknown user and unknown tenant get the same answer.
    let wrong = login("alice@localhost", "wrong").failure("unauthenticated: invalid username or password");
    let unknown = login("mallory@localhost", "correct horse").failure("unauthenticated");
    let no_tenant = login("alice@elsewhere.example", "correct horse").failure("unauthenticated");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, no_tenant);

    // Forged and garbage tokens are refused.
    let mut forged = token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    node.cli(&["whoami", "--token", &forged]).failure("unauthenticated: invalid, expired or revoked session token");
    node.cli(&["whoami", "--token", "garbage"]).failure("unauthenticated");

    // Disabling revokes existing tokens and refuses new logins.
    node.cli(&["user", "disable", "alice@localhost"]).success();
    node.cli(&["whoami", "--token", &token]).failure("unauthenticated");
    login("alice@localhost", "correct horse").failure("permission denied: account alice@localhost is disabled");
    node.cli(&["user", "enable", "alice@localhost"]).success();

    // Logout revokes only that token.
    let t1 = login("alice@localhost", "correct horse").json()["token"].as_str().unwrap().to_string();
    let t2 = login("alice@localhost", "correct horse").json()["token"].as_str().unwrap().to_string();
    node.cli(&["logout", "--token", &t1]).success();
    node.cli(&["whoami", "--token", &t1]).failure("unauthenticated");
    node.cli(&["whoami", "--token", &t2]).success();

    // A new password revokes the rest and the old password stops working.
    node.cli(&["user", "passwd", "alice@localhost", "--password", "battery staple"]).success();
    node.cli(&["whoami", "--token", &t2]).failure("unauthenticated");
    login("alice@localhost", "correct horse").failure("unauthenticated");
    let t3 = login("alice@localhost", "battery staple").json()["token"].as_str().unwrap().to_string();
    let revoked = node.cli(&["--json", "user", "revoke-tokens", "alice@localhost"]).json();
    assert_eq!(revoked["revoked"], 1);
    node.cli(&["whoami", "--token", &t3]).failure("unauthenticated");

    // A removed user's tokens die with the account.
    let t4 = login("alice@localhost", "battery staple").json()["token"].as_str().unwrap().to_string();
    node.cli(&["user", "remove", "alice@localhost"]).success();
    node.cli(&["whoami", "--token", &t4]).failure("unauthenticated");
}
