//! A PostgreSQL cluster of SyncTalk's own, started from the installed server binaries
//! (`initdb`, `pg_ctl`): what `cargo run` uses when no `DATABASE_URL` is given, and what
//! the test kit uses so that `cargo test` needs nothing running.
//!
//! The cluster lives in one folder (`./.data` for the server): `postgres/` holds the
//! data, `password` the generated superuser password, `port` the private port on
//! 127.0.0.1 it listens on, `postgres.log` its log. A second start reuses it.
//!
//! PostgreSQL refuses to run as root; when we are root (CI, containers) its processes
//! run as the unprivileged `postgres` system user instead.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

/// Why the local cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The server binaries are not installed.
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`, \
         macOS: `brew install postgresql`) or set DATABASE_URL to a running server"
    )]
    NoBinaries,
    /// We are root and there is no unprivileged user to run PostgreSQL as.
    #[error(
        "running as root, and PostgreSQL refuses to: create a `postgres` system user \
         (`useradd --system postgres`) or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The step.
        what: &'static str,
        /// Its output or error.
        detail: String,
    },
    /// The unprivileged user cannot reach the cluster's folder.
    #[error(
        "PostgreSQL runs as the `postgres` user, which cannot reach {0} (a parent folder is \
         closed to other users): set SYNCTALK_DATA_DIR to a folder it can reach, such as \
         /var/tmp/synctalk, or set DATABASE_URL"
    )]
    Unreachable(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How the cluster is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A development server: durable writes.
    Durable,
    /// Throw-away test data: no fsync, so tests run fast.
    Ephemeral,
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    root: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    started_here: bool,
}

/// The superuser of a local cluster.
pub const SUPERUSER: &str = "synctalk";

impl LocalCluster {
    /// Starts the cluster under `root` (creating it on first use) and waits until it
    /// accepts connections. Safe to call from several processes at once.
    pub fn start(root: &Path, durability: Durability) -> Result<Self, ClusterError> {
        let bin_dir = find_binaries().ok_or(ClusterError::NoBinaries)?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        create_dir(root, 0o755)?;
        let root = root.canonicalize().map_err(|source| io(root, source))?;

        let lock_path = root.join("lock");
        let lock = File::create(&lock_path).map_err(|source| io(&lock_path, source))?;
        lock.lock().map_err(|source| io(&lock_path, source))?;

        if let Some((uid, gid)) = run_as {
            reachable_by(&root, uid, gid)?;
        }
        let mut cluster = Self {
            root: root.clone(),
            bin_dir,
            port: 0,
            password: String::new(),
            run_as,
            started_here: false,
        };
        if !cluster.data_dir().join("PG_VERSION").exists() {
            cluster.init(durability)?;
        }
        cluster.port =
            read_file(&root.join("port"))?
                .trim()
                .parse()
                .map_err(|_| ClusterError::Command {
                    what: "reading the port",
                    detail: "not a number".into(),
                })?;
        cluster.password = read_file(&root.join("password"))?.trim().to_owned();
        if !cluster.is_running() {
            cluster.pg_ctl_start()?;
            cluster.started_here = true;
        }
        drop(lock);
        Ok(cluster)
    }

    /// The URL of database `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this call started the server (rather than finding it running).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stops the server (fast shutdown: connections are closed, data is kept).
    pub fn stop(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-s"]);
        run(cmd, "pg_ctl stop")
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("postgres")
    }

    fn is_running(&self) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(self.data_dir());
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    fn init(&self, durability: Durability) -> Result<(), ClusterError> {
        let data = self.data_dir();
        if data.exists() {
            // A half-made cluster from an interrupted first start.
            fs::remove_dir_all(&data).map_err(|source| io(&data, source))?;
        }
        create_dir(&data, 0o700)?;
        self.give_away(&data)?;

        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| ClusterError::Command {
            what: "generating a password",
            detail: e.to_string(),
        })?;
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let password_path = self.root.join("password");
        write_private(&password_path, &password)?;
        self.give_away(&password_path)?;

        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&data);
        cmd.args([
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        cmd.arg(format!("--pwfile={}", password_path.display()));
        if durability == Durability::Ephemeral {
            cmd.arg("--no-sync");
        }
        run(cmd, "initdb")?;

        let port = free_port()?;
        let mut conf = format!(
            "\n# Written by SyncTalk.\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\nmax_connections = 300\n"
        );
        if durability == Durability::Ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = data.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|source| io(&conf_path, source))?;
        file.write_all(conf.as_bytes())
            .map_err(|source| io(&conf_path, source))?;
        write_private(&self.root.join("port"), &port.to_string())?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let log = self.root.join("postgres.log");
        if !log.exists() {
            write_private(&log, "")?;
            self.give_away(&log)?;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log);
        cmd.args(["-w", "-t", "120", "-s"]);
        // Its own process group: Ctrl-C in the terminal reaches the server, which then
        // stops PostgreSQL itself after its connections have closed.
        cmd.process_group(0);
        run(cmd, "pg_ctl start").map_err(|error| match fs::read_to_string(&log) {
            Ok(text) => ClusterError::Command {
                what: "pg_ctl start",
                detail: format!("{error}; last log lines:\n{}", tail(&text, 10)),
            },
            Err(_) => error,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir("/").stdin(Stdio::null());
        cmd.env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn give_away(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|source| io(path, source))?;
        }
        Ok(())
    }
}

/// The folder holding `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // Resolve symlinks (Debian links them into /usr/local/bin or /usr/bin)
                // so pg_ctl finds its `postgres` beside it.
                let real = dir.join("initdb").canonicalize().ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn unprivileged_user() -> Result<(u32, u32), ClusterError> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|source| io(Path::new("/etc/passwd"), source))?;
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == "postgres")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .next()
        .ok_or(ClusterError::NoUnprivilegedUser)
}

/// Checks that every folder above `root` lets `uid` pass through.
fn reachable_by(root: &Path, uid: u32, gid: u32) -> Result<(), ClusterError> {
    for dir in root.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(|source| io(dir, source))?;
        let mode = meta.mode();
        let passable = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passable {
            return Err(ClusterError::Unreachable(root.to_path_buf()));
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| ClusterError::Command {
        what: "finding a free port",
        detail: e.to_string(),
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| ClusterError::Command {
            what: "finding a free port",
            detail: e.to_string(),
        })
}

fn run(mut cmd: Command, what: &'static str) -> Result<(), ClusterError> {
    let output = cmd.output().map_err(|e| ClusterError::Command {
        what,
        detail: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(ClusterError::Command {
        what,
        detail: format!("{} ({detail})", output.status),
    })
}

fn create_dir(path: &Path, mode: u32) -> Result<(), ClusterError> {
    fs::create_dir_all(path).map_err(|source| io(path, source))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| io(path, source))
}

fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io(path, source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| io(path, source))
}

fn read_file(path: &Path) -> Result<String, ClusterError> {
    fs::read_to_string(path).map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
