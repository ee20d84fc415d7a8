//! An OpenLDAP server of the test's own (Debian packages `slapd` and
//! `ldap-utils`): a configuration and database in a temporary folder, the
//! Lync/Exchange attribute names from `tests/ldap/ad-lync.schema`, `ldap://`
//! on a loopback port (and `ldaps://` on another when given a certificate),
//! stopped when dropped. Suffix `dc=contoso,dc=test`; the router binds as
//! `cn=reader,dc=contoso,dc=test` (password `reader-secret`), which may only read.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=contoso,dc=test";
/// The read-only account the router binds as.
pub const READER: &str = "cn=reader,dc=contoso,dc=test";
/// Its password.
pub const READER_PASSWORD: &str = "reader-secret";
const ADMIN: &str = "cn=admin,dc=contoso,dc=test";
const ADMIN_PASSWORD: &str = "admin-secret";

/// A running (or stopped) slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    /// `ldap://` port on 127.0.0.1.
    pub port: u16,
    /// `ldaps://` port, when TLS was given.
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn slapd_binary() -> PathBuf {
    for p in ["/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/local/libexec/slapd"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("slapd is not installed: `apt-get install -y slapd ldap-utils` (scripts/test.sh does it)");
}

impl Slapd {
    /// Starts a server with the base entries and the reader; `tls` is a
    /// certificate and key (PEM) for `ldaps://` and StartTLS.
    pub fn start(tls: Option<(&str, &str)>) -> Slapd {
        let dir = tempfile::Builder::new().prefix("exum-slapd-").tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("mkdir");
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("ldap/ad-lync.schema");
        let mut conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude {schema}\n\
             pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n",
            schema = schema.display(),
            d = dir.path().display()
        );
        let mut tls_port = None;
        if let Some((cert, key)) = tls {
            std::fs::write(dir.path().join("server.crt"), cert).expect("write");
            std::fs::write(dir.path().join("server.key"), key).expect("write");
            conf.push_str(&format!(
                "TLSCertificateFile {d}/server.crt\nTLSCertificateKeyFile {d}/server.key\n",
                d = dir.path().display()
            ));
            tls_port = Some(free_port());
        }
        conf.push_str(&format!(
            "access to dn.base=\"\" by * read\ndatabase mdb\nmaxsize 1073741824\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN}\"\nrootpw {ADMIN_PASSWORD}\n\
             directory {d}/db\nindex objectClass eq\n\
             # Paged searches may read the whole directory, as in AD (the total is not capped).\n\
             limits * size.prtotal=unlimited size.pr=1000\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by dn.exact=\"{READER}\" read by * none\n",
            d = dir.path().display()
        ));
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("write");
        let mut s = Slapd { dir, port: free_port(), tls_port, child: None };
        s.run();
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: contoso\no: Contoso\n\n\
             dn: {READER}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: {READER_PASSWORD}\n\n\
             dn: ou=Redmond,{SUFFIX}\nobjectClass: organizationalUnit\nou: Redmond\n\n\
             dn: ou=Paris,{SUFFIX}\nobjectClass: organizationalUnit\nou: Paris\n"
        ));
        s
    }

    fn run(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let child = Command::new(slapd_binary())
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        let url = format!("ldap://127.0.0.1:{}/", self.port);
        let what = format!("slapd (slapd.conf in {})", self.dir.path().display());
        let child = self.child.insert(child);
        crate::wait_until_serving(&what, child, || {
            Command::new("ldapsearch")
                .args(["-x", "-H", &url, "-s", "base", "-b", "", "-LLL"])
                .arg("namingContexts")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (same data, same ports).
    pub fn restart(&mut self) {
        self.run();
    }

    /// The `ldap://` URI.
    pub fn uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The `ldaps://` URI, when TLS was given.
    pub fn tls_uri(&self) -> Option<String> {
        self.tls_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    fn tool(&self, program: &str, ldif: &str) {
        use std::io::Write as _;
        let mut child = Command::new(program)
            .args(["-x", "-H", &self.uri(), "-D", ADMIN, "-w", ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs (apt-get install -y ldap-utils): {e}"));
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("write LDIF");
        let out = child.wait_with_output().expect(program);
        assert!(out.status.success(), "{program}: {}\n{ldif}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds the entries of `ldif` (as the administrator, with `ldapadd`).
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", ldif);
    }

    /// Applies the changes of `ldif` (with `ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", ldif);
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
