//! A real OpenLDAP server (Debian's `slapd`, installed by `scripts/slapd.sh` when missing) in
//! a temporary directory on a loopback port, for the directory sync tests; stopped on drop.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=acme,dc=example";
pub const ROOT_DN: &str = "cn=admin,dc=acme,dc=example";
pub const ROOT_PASSWORD: &str = "ldap-secret";

pub struct Slapd {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn slapd_binary() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slapd.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("run scripts/slapd.sh");
    assert!(out.status.success(), "scripts/slapd.sh failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Slapd {
    /// Starts an empty directory for `dc=acme,dc=example` in `dir`.
    pub fn start(dir: &Path) -> Slapd {
        let binary = slapd_binary();
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             pidfile {dir}/slapd.pid\nsizelimit unlimited\n\
             database mdb\nmaxsize 104857600\ndirectory {dir}/db\n\
             suffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PASSWORD}\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by * read\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("slapd.log")).unwrap();
        let child = Command::new(binary)
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let mut s = Slapd { port, dir: dir.to_path_buf(), child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s.ldif(
            "add",
            &format!(
                "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Acme\ndc: acme\n\n\
                 dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
                 dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n"
            ),
        );
        s
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }

    /// Runs `ldapadd` (`add`) or `ldapmodify` (`modify`) with `ldif` as the root DN.
    pub fn ldif(&mut self, how: &str, ldif: &str) {
        let tool = if how == "add" { "ldapadd" } else { "ldapmodify" };
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapadd");
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server (the directory becomes unreachable).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
