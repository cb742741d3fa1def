//! A real `PostgreSQL` server for the tests: Debian's `postgresql` package (installed by
//! `scripts/install-deps --test`), `initdb` and `pg_ctl` in a temporary directory on a
//! free loopback port, its socket directory inside that directory, stopped and removed
//! when the [`Postgres`] is dropped. [`Postgres::url`] makes a fresh database per call, so
//! the tests of one process can share one server ([`shared`]).
//!
//! `initdb` refuses to run as root: then the server runs as the `postgres` system user
//! (`runuser`), and the temporary directory is handed to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates; the server trusts loopback connections.
pub const SUPERUSER: &str = "postgres";

/// How many times a start is tried on a fresh port when another process took it first.
const PORT_TRIES: usize = 5;

/// One `PostgreSQL` server, stopped (`pg_ctl stop -m immediate`) and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The system user the server runs as, when the tests run as root.
    run_as: Option<&'static str>,
    databases: AtomicUsize,
}

impl Postgres {
    /// Starts a server of its own: `initdb` (about 1.5 s here) and `pg_ctl start`.
    pub fn start() -> Self {
        let bin = bin_dir();
        let run_as = is_root().then_some(SUPERUSER);
        let dir = tempfile::Builder::new()
            .prefix("factory-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        if let Some(user) = run_as {
            give_to(dir.path(), user);
        }
        let data = dir.path().join("data");
        let init = command(run_as, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run `initdb`");
        assert_ok("initdb", &init);
        let mut server = Self {
            dir,
            bin,
            port: 0,
            run_as,
            databases: AtomicUsize::new(0),
        };
        for attempt in 1..=PORT_TRIES {
            server.port = free_port();
            let started = server.pg_ctl_start();
            if started.status.success() {
                server.wait_ready();
                return server;
            }
            assert!(
                attempt < PORT_TRIES,
                "`pg_ctl start` failed {PORT_TRIES} times; last: {}\nserver log:\n{}",
                String::from_utf8_lossy(&started.stderr),
                server.log()
            );
        }
        unreachable!("the loop returns or panics")
    }

    fn pg_ctl_start(&self) -> Output {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        command(self.run_as, &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-s", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("run `pg_ctl start`")
    }

    /// `pg_ctl -w` waits for the socket; wait for a query to answer too.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.psql("postgres", "SELECT 1").status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not answer; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one statement with `psql` as the superuser in `database`.
    pub fn psql(&self, database: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("run `psql`")
    }

    /// The URL of a database of its own, created for the caller.
    pub fn url(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("factory_test_{n}");
        let created = self.psql("postgres", &format!("CREATE DATABASE {name}"));
        assert_ok("CREATE DATABASE", &created);
        self.url_of(&name)
    }

    /// The URL of an existing database.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server at once, as a crash would.
    fn stop(&self) {
        let _ = command(self.run_as, &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

/// One server for the whole test process, started on first use and stopped when the
/// process exits (statics are never dropped, so an exit hook stops it).
pub fn shared() -> &'static Postgres {
    SHARED.get_or_init(|| {
        let server = Postgres::start();
        // SAFETY: `stop_shared` is a plain `extern "C" fn` without arguments.
        unsafe { libc::atexit(stop_shared) };
        server
    })
}

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(server.dir.path());
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian keeps it off PATH), or
/// `PG_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .max_by_key(|(version, _)| *version)
    });
    newest.map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server under `{}`; run `scripts/install-deps --test` (or set `PG_BIN_DIR`)",
            root.display()
        )
    })
}

fn is_root() -> bool {
    // SAFETY: `geteuid` has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn command(run_as: Option<&str>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Hands `dir` to `user` (the server writes its data and socket there).
fn give_to(dir: &Path, user: &str) {
    let status = Command::new("chown")
        .arg(user)
        .arg(dir)
        .status()
        .expect("run `chown`");
    assert!(
        status.success(),
        "cannot hand `{}` to `{user}`",
        dir.display()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "`{what}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_harness_starts_a_server_that_answers_and_stops_it_on_drop() {
    let started = Instant::now();
    let server = Postgres::start();
    let startup = started.elapsed();
    let url = server.url();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let out = server.psql(
        &database,
        "CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (42)",
    );
    assert_ok("psql", &out);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (x,): (i64,) = sqlx::query_as("SELECT x FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(x, 42);
    pool.close().await;
    let other = server.url();
    assert_ne!(url, other, "each call makes a database of its own");
    let dir = server.dir.path().to_owned();
    let port = server.port();
    assert!(dir.join("data").join("postmaster.pid").is_file());
    assert!(
        startup < Duration::from_secs(30),
        "a server takes {startup:?} to start"
    );
    drop(server);
    assert!(!dir.exists(), "the server's directory is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the server's port after drop"
    );
}

#[test]
fn the_shared_server_gives_every_caller_a_database_of_its_own() {
    let first = shared().url();
    let second = shared().url();
    assert_ne!(first, second);
    let name = second.rsplit('/').next().unwrap();
    assert_ok(
        "psql",
        &shared().psql(name, "CREATE TABLE only_here (x BIGINT)"),
    );
    let first_name = first.rsplit('/').next().unwrap();
    let seen = shared().psql(first_name, "SELECT * FROM only_here");
    assert!(
        !seen.status.success(),
        "a table of one database is not in another"
    );
}
