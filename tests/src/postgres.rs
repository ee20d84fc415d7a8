//! A PostgreSQL server of the test's own (Debian package `postgresql`): a data
//! directory in a temporary folder, a loopback port, stopped and removed when
//! dropped. PostgreSQL refuses to run as root, so as root the server runs as
//! the `postgres` user (`runuser`).
//!
//! Two roles: the cluster's owner `admin` (the test's own changes) and
//! `router` (what the routers connect as), so a test can shut the routers out
//! (`NOLOGIN` and their sessions ended) while it goes on writing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
    /// Settings added to the server's command line (TLS).
    extra: Vec<String>,
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The folder of `initdb` and `postgres`: `EXUM_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin`, else the PATH's.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("EXUM_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").is_file())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, p)) => p,
        None => {
            let found = Command::new("initdb").arg("--version").stdout(Stdio::null()).status();
            assert!(
                found.is_ok(),
                "PostgreSQL is not installed: `apt-get install -y postgresql` (scripts/test.sh does it)"
            );
            PathBuf::new()
        }
    }
}

/// `program` from `bin`, run as the `postgres` user when we are root.
fn command(bin: &Path, program: &str) -> Command {
    let path = if bin.as_os_str().is_empty() { PathBuf::from(program) } else { bin.join(program) };
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn free_port() -> u16 {
    // The server binds the port itself; a port just released is free unless
    // another process takes it in between, which the start would report.
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Postgres {
    /// Creates a cluster in a temporary folder and starts it.
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// [`Postgres::start`] with server settings (`name=value`) over the
    /// tests' defaults (which favour speed: `fsync=off`,
    /// `synchronous_commit=off`); its standbys take them too.
    pub fn start_with(settings: &[&str]) -> Postgres {
        let dir = tempfile::Builder::new().prefix("exum-pg-").tempdir().expect("tempdir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the data folder to postgres");
        }
        let bin = bin_dir();
        let out = command(&bin, "initdb")
            .args(["-A", "trust", "-U", "admin", "-E", "UTF8", "--no-sync", "-D"])
            .arg(dir.path().join("data"))
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let extra = settings.iter().flat_map(|s| ["-c".to_owned(), (*s).to_owned()]).collect();
        let mut pg = Postgres { dir, port: free_port(), bin, child: None, extra };
        pg.run();
        pg.admin_sql("CREATE ROLE router LOGIN SUPERUSER", "postgres");
        pg.admin_sql("CREATE DATABASE exum OWNER router", "postgres");
        pg
    }

    fn run(&mut self) {
        let data = self.dir.path().join("data");
        let child = command(&self.bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200", "-c", "log_min_messages=fatal"])
            // No parallel query: it needs /dev/shm, small in containers.
            .args(["-c", "max_parallel_workers_per_gather=0", "-c", "dynamic_shared_memory_type=mmap"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        // Ready when it accepts a query.
        let port = self.port.to_string();
        let child = self.child.insert(child);
        crate::wait_until_serving("postgres", child, || {
            Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "admin", "-d", "postgres"])
                .args(["-XAtqc", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// The postmaster's pid, from its pid file.
    fn postmaster(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (fast shutdown: sessions ended) and waits for it.
    pub fn stop(&mut self) {
        if let Some(pid) = self.postmaster() {
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        // The pid file goes when the server is down.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.dir.path().join("data/postmaster.pid").exists() {
            assert!(Instant::now() < deadline, "postgres did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.run();
    }

    /// Serves TLS too, with this certificate and key (PEM), from now on
    /// (restarted). Clients may still connect without TLS.
    pub fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (self.dir.path().join("server.crt"), self.dir.path().join("server.key"));
        std::fs::write(&cert, cert_pem).expect("write the certificate");
        std::fs::write(&key, key_pem).expect("write the key");
        let _ = Command::new("chmod").arg("600").arg(&key).status();
        if is_root() {
            let _ = Command::new("chown").arg("postgres:postgres").arg(&cert).arg(&key).status();
        }
        self.extra.extend([
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", cert.display()),
            "-c".into(),
            format!("ssl_key_file={}", key.display()),
        ]);
        self.stop();
        self.run();
    }

    /// A hot standby of `primary`, streaming from it (`pg_basebackup -R`), on a
    /// port of its own.
    pub fn standby_of(primary: &Postgres) -> Postgres {
        let dir = tempfile::Builder::new().prefix("exum-pg-standby-").tempdir().expect("tempdir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the data folder to postgres");
        }
        let out = command(&primary.bin, "pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "admin",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-D",
            ])
            .arg(dir.path().join("data"))
            .output()
            .expect("pg_basebackup runs");
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
        let mut standby =
            Postgres { dir, port: free_port(), bin: primary.bin.clone(), child: None, extra: primary.extra.clone() };
        standby.run();
        standby
    }

    /// Promotes a standby to primary (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote(&self) {
        let out = command(&self.bin, "pg_ctl")
            .args(["promote", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl promote: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The routers' connection string.
    pub fn url(&self) -> String {
        format!("postgres://router@127.0.0.1:{}/exum", self.port)
    }

    /// The owner's connection string, to the routers' database.
    pub fn admin_url(&self) -> String {
        format!("postgres://admin@127.0.0.1:{}/exum", self.port)
    }

    /// Runs `sql` as the owner (in database `db`) with psql; panics with its
    /// error. Returns what it printed (unaligned, tuples only).
    pub fn admin_sql(&self, sql: &str, db: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "admin", "-d", db])
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql `{sql}`: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sql` as the owner in the routers' database.
    pub fn sql(&self, sql: &str) -> String {
        self.admin_sql(sql, "exum")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}
