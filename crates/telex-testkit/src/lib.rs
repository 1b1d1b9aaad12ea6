//! Test harness: starts real `telexd` processes on loopback with port-0 listeners, runs the
//! `telex` CLI against them, and kills (`SIGKILL`) or stops (`SIGTERM`) them.
//!
//! The binaries are found next to the test executable's directory (`target/<profile>/`); build
//! them first with `cargo build --release --bins` (the Makefile does).

pub mod client;
pub mod cluster;
pub mod containers;
pub mod history;
pub mod ldap;
pub mod netfault;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built in the same profile as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} not found: run `cargo build --release --bins` first", path.display());
    path
}

/// The addresses a node reported in `listen.json`.
#[derive(Clone, Debug)]
pub struct Addrs {
    pub client: SocketAddr,
    pub admin: SocketAddr,
    pub node: SocketAddr,
    pub http: SocketAddr,
    pub xmpp: SocketAddr,
    pub xmpp_tls: SocketAddr,
}

/// The bootstrap super-admin token every test node is started with (`TELEX_ADMIN_TOKEN`), and
/// that `Telexd::cli` passes to `telex`.
pub const ADMIN_TOKEN: &str = "testkit-super-admin-token";

type TokenFn = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// An admin API client that sends [`ADMIN_TOKEN`].
pub type AdminApi = telex_proto::v1::admin_client::AdminClient<AdminChannel>;

fn add_admin_token(mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    r.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().expect("ascii token"));
    Ok(r)
}

/// A channel to a node's admin listener that sends [`ADMIN_TOKEN`] with every call.
pub type AdminChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, TokenFn>;

pub async fn admin_channel(url: impl Into<String>) -> Result<AdminChannel, tonic::transport::Error> {
    let channel = tonic::transport::Channel::from_shared(url.into()).expect("admin url").connect().await?;
    Ok(tonic::service::interceptor::InterceptedService::new(channel, add_admin_token as TokenFn))
}

/// Connects to a node's admin API as the test's super-admin.
pub async fn admin_client(url: impl Into<String>) -> Result<AdminApi, tonic::transport::Error> {
    Ok(telex_proto::v1::admin_client::AdminClient::new(admin_channel(url).await?))
}

/// A `telexd` child process with its own data directory.
pub struct Telexd {
    pub data_dir: PathBuf,
    pub addrs: Addrs,
    child: Option<Child>,
    log: PathBuf,
    extra: Vec<String>,
}

impl Telexd {
    /// Starts a node in `data_dir` and waits until `/readyz` says ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Telexd {
        let mut node = Telexd::launch(data_dir, extra);
        node.wait_ready();
        node
    }

    /// Starts a node and returns once it listens (its addresses are known), before it is ready.
    pub fn launch(data_dir: &Path, extra: &[&str]) -> Telexd {
        let mut node = Telexd {
            data_dir: data_dir.to_path_buf(),
            addrs: Addrs {
                client: ([0, 0, 0, 0], 0).into(),
                admin: ([0, 0, 0, 0], 0).into(),
                node: ([0, 0, 0, 0], 0).into(),
                http: ([0, 0, 0, 0], 0).into(),
                xmpp: ([0, 0, 0, 0], 0).into(),
                xmpp_tls: ([0, 0, 0, 0], 0).into(),
            },
            child: None,
            log: data_dir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        node.relaunch();
        node
    }

    /// Starts the process again on the same data directory and the same ports (peers remember
    /// the node-to-node address; clients reconnect to the same address).
    pub fn restart(&mut self) {
        self.relaunch();
        self.wait_ready();
    }

    fn relaunch(&mut self) {
        assert!(self.child.is_none(), "node is still running");
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let _ = std::fs::remove_file(self.data_dir.join("listen.json"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let at = |a: SocketAddr| format!("127.0.0.1:{}", a.port());
        let a = self.addrs.clone();
        let child = Command::new(bin("telexd"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--client-addr", &at(a.client), "--node-addr", &at(a.node)])
            .args(["--admin-addr", &at(a.admin), "--http-addr", &at(a.http)])
            .args(["--xmpp-addr", &at(a.xmpp), "--xmpp-tls-addr", &at(a.xmpp_tls)])
            .args(&self.extra)
            .env("RUST_LOG", "info,openraft=warn")
            .env("TELEX_ADMIN_TOKEN", ADMIN_TOKEN)
            // Tests place leaders where they want them; `--balance-leaders-after-secs` in
            // `extra` turns the automatic balancer on.
            .env("TELEX_BALANCE_LEADERS_AFTER_SECS", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn telexd");
        self.child = Some(child);
        self.addrs = self.wait_for_addrs();
    }

    fn wait_for_addrs(&mut self) -> Addrs {
        let path = self.data_dir.join("listen.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("listen.json is JSON");
                let get = |k: &str| v[k].as_str().unwrap().parse().unwrap();
                return Addrs {
                    client: get("client"),
                    admin: get("admin"),
                    node: get("node"),
                    http: get("http"),
                    xmpp: get("xmpp"),
                    xmpp_tls: get("xmpp_tls"),
                };
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("telexd exited with {status} before listening; log:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "telexd did not write listen.json; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `/readyz` says ready (for a joining node: it replicates every group).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(self.addrs.http, "/readyz").map(|(code, _)| code) != Some(200) {
            assert!(Instant::now() < deadline, "telexd never became ready; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts node `id` of a cluster: with `join`, it joins the member at that node address.
    /// Waits until it is ready, which for a joining node means it replicates every group.
    pub fn start_member(data_dir: &Path, id: u64, join: Option<SocketAddr>, extra: &[&str]) -> Telexd {
        let mut node = Telexd::launch_member(data_dir, id, join, extra);
        node.wait_ready();
        node
    }

    /// As `start_member`, returning once the node listens.
    pub fn launch_member(data_dir: &Path, id: u64, join: Option<SocketAddr>, extra: &[&str]) -> Telexd {
        let id = id.to_string();
        let join = join.map(|a| a.to_string());
        let mut args = vec!["--node-id", id.as_str()];
        if let Some(j) = &join {
            args.extend(["--join", j.as_str()]);
        }
        args.extend_from_slice(extra);
        Telexd::launch(data_dir, &args)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().expect("kill -TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                c.wait().unwrap();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `telex` against this node with `args`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let out = Command::new(bin("telex"))
            .args(["--admin", &self.addrs.admin.to_string(), "--server", &self.addrs.client.to_string()])
            .args(args)
            .env_remove("TELEX_PASSWORD")
            .env("TELEX_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .output()
            .expect("run telex");
        CliOutput::from(out)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.addrs.admin)
    }

    pub fn client_url(&self) -> String {
        format!("http://{}", self.addrs.client)
    }
}

impl Drop for Telexd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a `telex` run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliOutput {
    fn from(o: Output) -> Self {
        CliOutput {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl CliOutput {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn success(self) -> String {
        assert!(self.ok, "telex failed: {}", self.stderr);
        self.stdout
    }

    /// Asserts failure with one line on stderr containing `needle`.
    #[track_caller]
    pub fn failure(self, needle: &str) -> String {
        assert!(!self.ok, "telex should have failed; stdout: {}", self.stdout);
        assert!(self.stderr.contains(needle), "stderr {:?} does not mention {needle:?}", self.stderr);
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "one-line reason expected: {:?}", self.stderr);
        self.stderr
    }

    /// Asserts that argument parsing refused the command with a reason containing `needle`.
    #[track_caller]
    pub fn usage_error(self, needle: &str) -> String {
        assert!(!self.ok, "telex should have refused its arguments; stdout: {}", self.stdout);
        assert!(self.stderr.contains(needle), "stderr {:?} does not mention {needle:?}", self.stderr);
        self.stderr
    }

    #[track_caller]
    pub fn json(self) -> serde_json::Value {
        serde_json::from_str(&self.success()).expect("JSON output")
    }
}

/// A minimal HTTP/1.0 GET; returns status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// A temporary directory for one node's data.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("node");
    (tmp, path)
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`; benchmarks take
/// the difference over their measured window.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // The kernel reports clock ticks of 1/100 s on every Linux this runs on (USER_HZ).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
