//! A real PostgreSQL server for tests: a throwaway cluster the first test
//! of a test binary starts (`initdb` into a temporary directory, run as an
//! unprivileged user when the tests run as root, on a free loopback port),
//! shared by every test of that binary and removed when the binary exits;
//! or the server `WAYMARK_TEST_POSTGRES` names (a URL whose user may create
//! databases). Each test takes a fresh database of its own.
//!
//! Missing server binaries are installed with apt-get when the tests run as
//! root; otherwise the test fails at once with the command that installs
//! them. A PostgreSQL test never passes by skipping.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{PostgresOptions, PostgresStore, PostgresUrl};

/// The environment variable naming an existing server to test against.
pub const SERVER_VAR: &str = "WAYMARK_TEST_POSTGRES";

/// The command that installs the server where it is missing.
pub const INSTALL: &str = "sudo apt-get install -y postgresql";

/// The server the tests of this process use.
pub struct TestCluster {
    /// Connects to its `postgres` database as a superuser.
    admin: PostgresUrl,
    /// The cluster this process started; None for `WAYMARK_TEST_POSTGRES`.
    owned: Option<OwnedCluster>,
    databases: AtomicU64,
}

struct OwnedCluster {
    bindir: PathBuf,
    data: PathBuf,
    /// The server's log (its output must not go to a pipe of ours, which
    /// it would hold open).
    log: PathBuf,
    /// The unprivileged user the server runs as when the tests run as root.
    user: Option<(u32, u32)>,
}

/// Server settings for tests: no fsync (a test's data need not survive a
/// power cut, and tests run many commits).
const FAST: &str = "-c fsync=off -c full_page_writes=off";

/// Server settings for benchmarks: every commit flushed as in production
/// (`fsync`, `synchronous_commit` on), and `pg_stat_statements` loaded to
/// count what each step costs the database.
const DURABLE: &str = "-c shared_preload_libraries=pg_stat_statements";

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| TestCluster::start(FAST))
}

/// A cluster of this process whose commits reach the disk (for
/// benchmarks), with `pg_stat_statements` available; started on first use.
/// `WAYMARK_TEST_POSTGRES` names the server here too.
pub fn durable_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| TestCluster::start(DURABLE))
}

/// A store on a fresh, empty database of the test cluster.
pub fn fresh_store() -> PostgresStore {
    let url = cluster().fresh_database();
    PostgresStore::open_with(
        &url,
        PostgresOptions {
            max_connections: 4,
            ..PostgresOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("opening a store on {url}: {e}"))
}

impl TestCluster {
    fn start(settings: &str) -> Self {
        if let Ok(text) = std::env::var(SERVER_VAR) {
            let admin = PostgresUrl::parse(&text)
                .unwrap_or_else(|e| panic!("{SERVER_VAR} is not a PostgreSQL URL: {e}"));
            return Self {
                admin,
                owned: None,
                databases: AtomicU64::new(0),
            };
        }
        let bindir = server_binaries();
        let user = running_as_root().then(unprivileged_user);
        let dir = tempfile::Builder::new()
            .prefix("waymark-pg-")
            .tempdir()
            .expect("a temporary directory for the test cluster")
            .keep();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("giving the cluster directory to its user");
        }
        let data = dir.join("data");
        let owned = OwnedCluster {
            bindir,
            data: data.clone(),
            log: dir.join("server.log"),
            user,
        };
        remove_when_this_process_exits(&dir, &data);
        owned.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "waymark",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = owned.start_on_free_port(&dir, settings);
        let admin = PostgresUrl::parse(&format!("postgres://waymark@127.0.0.1:{port}/postgres"))
            .expect("the test cluster's URL");
        Self {
            admin,
            owned: Some(owned),
            databases: AtomicU64::new(0),
        }
    }

    /// The URL of a new, empty database.
    pub fn fresh_database(&self) -> PostgresUrl {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("waymark_test_{}_{n}", std::process::id());
        self.execute(&format!("CREATE DATABASE {name}"));
        self.admin.with_dbname(&name)
    }

    /// Runs statements on the `postgres` database as the superuser.
    pub fn execute(&self, sql: &str) {
        self.execute_on(&self.admin, sql);
    }

    /// Runs statements on the database `url` names.
    pub fn execute_on(&self, url: &PostgresUrl, sql: &str) {
        self.rows_on(url, sql);
    }

    /// The rows (as text; NULL as None) the statements of `sql` return,
    /// run on the database `url` names.
    pub fn rows_on(&self, url: &PostgresUrl, sql: &str) -> Vec<Vec<Option<String>>> {
        let config = url.config().clone();
        let statement = sql.to_owned();
        // A thread of its own: the caller may be inside a tokio runtime,
        // where starting another one panics.
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                let driver = tokio::spawn(connection);
                let result = client
                    .simple_query(&statement)
                    .await
                    .map_err(|e| e.to_string())
                    .map(|messages| {
                        messages
                            .into_iter()
                            .filter_map(|message| match message {
                                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                                    (0..row.len())
                                        .map(|i| row.get(i).map(str::to_owned))
                                        .collect(),
                                ),
                                _ => None,
                            })
                            .collect::<Vec<Vec<Option<String>>>>()
                    });
                drop(client);
                let _ = driver.await;
                result
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the admin thread panicked".into()));
        outcome.unwrap_or_else(|e| panic!("running `{sql}` on {url}: {e}"))
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is
    /// closed, and the server is back when this returns.
    ///
    /// # Panics
    /// With `WAYMARK_TEST_POSTGRES`, whose server is not ours to restart.
    pub fn restart(&self) {
        let owned = self.owned.as_ref().unwrap_or_else(|| {
            panic!("restarting the server needs the throwaway cluster; unset {SERVER_VAR}")
        });
        let mut command = owned.server_command();
        command.args(["-m", "fast", "restart"]);
        if !command.status().is_ok_and(|s| s.success()) {
            let log = std::fs::read_to_string(&owned.log).unwrap_or_default();
            panic!("the test cluster did not restart; its log:\n{log}");
        }
    }

    /// The superuser's URL, on the `postgres` database.
    pub fn admin_url(&self) -> &PostgresUrl {
        &self.admin
    }
}

impl OwnedCluster {
    /// Runs a server program as the cluster's user, failing the test with
    /// its output if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let mut command = Command::new(self.bindir.join(program));
        command.args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        if !output.status.success() {
            panic!(
                "{program} {args:?} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// `pg_ctl` on the cluster, as its user, logging to its log file and
    /// waiting (up to a minute) for what it is asked to finish.
    fn server_command(&self) -> Command {
        let mut command = Command::new(self.bindir.join("pg_ctl"));
        command
            .args(["-D", path_str(&self.data), "-l", path_str(&self.log)])
            .args(["-w", "-t", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the server on a free loopback port (retrying if another
    /// process takes the port first) and returns the port.
    fn start_on_free_port(&self, dir: &Path, settings: &str) -> u16 {
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let options = format!(
                "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=500 \
                 -c shared_buffers=64MB {settings}",
                dir = dir.display()
            );
            let mut command = self.server_command();
            command.args(["-o", &options, "start"]);
            if command.status().is_ok_and(|s| s.success()) {
                return port;
            }
            last = std::fs::read_to_string(&self.log).unwrap_or_default();
        }
        panic!("the test cluster did not start; its log:\n{last}");
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The directory holding `initdb` and `pg_ctl`, installed first if they are
/// missing and we may (root, with apt-get).
fn server_binaries() -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find_server_binaries() {
        return found;
    }
    if running_as_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("installing PostgreSQL for the store tests (apt-get install postgresql)");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "-q", "postgresql"]) {
            apt(&["update", "-q"]);
            apt(&["install", "-y", "-q", "postgresql"]);
        }
    }
    find_server_binaries().unwrap_or_else(|| {
        panic!(
            "the PostgreSQL tests need the server binaries (initdb, pg_ctl): run `{INSTALL}`, \
             or name a server with {SERVER_VAR}=postgres://user@host/db"
        )
    })
}

/// `pg_config --bindir` if it holds the server, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn find_server_binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `postgres` (Debian's server user), else `nobody`.
fn unprivileged_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    find("postgres")
        .or_else(|| find("nobody"))
        .unwrap_or_else(|| {
            panic!(
                "running as root, the test cluster needs an unprivileged user (postgres or nobody)"
            )
        })
}

/// A watchdog that stops the server and deletes its directory once this
/// process has exited, however it exits (a panic, an abort, a signal).
#[allow(
    clippy::zombie_processes,
    reason = "the watchdog outlives this process by design; init reaps it"
)]
fn remove_when_this_process_exits(dir: &Path, data: &Path) {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        pid=$(head -n 1 "$3/postmaster.pid" 2>/dev/null)
        if [ -n "$pid" ]; then
            kill -QUIT "$pid" 2>/dev/null
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -rf "$2"
    "#;
    Command::new("sh")
        .args(["-c", script, "waymark-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("starting the test cluster's watchdog");
}
