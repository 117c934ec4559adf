//! Helpers shared by the end-to-end tests: the built `bottle` binary, its plugins and the
//! fake smolvm, scratch homes with a pool of their own, and running `bottle` in them.
//!
//! Every test gets its own `BOTTLE_HOME`, `HOME` (where the fake smolvm keeps its database)
//! and alias pool, so tests run in parallel without seeing each other.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bottle_core::state::BottleRecord;
use bottle_core::StateDb;

/// Where the workspace's build put what the tests run.
pub struct Artifacts {
    /// The `bottle` binary; its plugins sit next to it.
    pub bottle: PathBuf,
    /// The fake `smolvm` (a test double of smolvm's CLI).
    pub fake_smolvm: PathBuf,
}

/// What the end-to-end tests run: the binary, every first-party plugin, the fake smolvm.
const PACKAGES: &[&str] = &[
    "bottle",
    "bottle-fake-smolvm",
    "bottle-plugin-net-linux",
    "bottle-plugin-net-macos",
    "bottle-plugin-vmm-smolvm",
    "bottle-plugin-runtime-docker",
    "bottle-plugin-runtime-process",
    "bottle-plugin-vmm-sandbox",
    "bottle-vmm-sandbox",
];

/// Builds the binary, every plugin and the fake smolvm once per test process, into the
/// target directory this test runs from, and returns their paths.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/<test>: the target directory is three levels up.
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the test runs inside a target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.arg("build");
        for package in PACKAGES {
            build.args(["-p", package]);
        }
        let status = build
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the workspace failed");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        Artifacts {
            bottle: bin.join("bottle"),
            fake_smolvm: bin.join("smolvm"),
        }
    })
}

/// A scratch home: bottle's state, the fake smolvm's data and a config naming a pool.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub pool: String,
    /// Extra environment for every `bottle` run from this home.
    pub env: Vec<(String, String)>,
}

impl Home {
    /// A home whose pool is `pool` (give each test its own), with the fake smolvm at
    /// `smolvm_version` as the VMM and `runtime` as the bundle runtime by default.
    pub fn new(pool: &str, smolvm_version: &str, runtime: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = Home {
            dir,
            pool: pool.to_owned(),
            env: vec![("FAKE_SMOLVM_VERSION".into(), smolvm_version.into())],
        };
        home.write_config(&artifacts().fake_smolvm, runtime);
        home
    }

    /// A second home on the same host as `self`, with the same pool: it shares `self`'s alias
    /// claim directory and smolvm, as a second user of one machine would.
    pub fn neighbour(&self) -> Self {
        let mut other = Home::new(&self.pool, "0.8.0", "process");
        let claims = self.dir.path().join("claims").display().to_string();
        other.env.push(("BOTTLE_CLAIM_DIR".into(), claims));
        let user_home = self.user_home().display().to_string();
        other.env.push(("HOME".into(), user_home));
        other
    }

    /// Rewrites `config.toml` with `smolvm` as the smolvm executable.
    pub fn write_config(&self, smolvm: &Path, runtime: &str) {
        std::fs::create_dir_all(self.bottle_home()).unwrap();
        let config = format!(
            "pool = \"{}\"\nvmm = \"smolvm\"\nruntime = \"{runtime}\"\n\n\
             [plugins.vmm-smolvm]\nsmolvm = \"{}\"\n",
            self.pool,
            smolvm.display()
        );
        std::fs::write(self.bottle_home().join("config.toml"), config).unwrap();
    }

    pub fn bottle_home(&self) -> PathBuf {
        self.dir.path().join("bottle")
    }

    pub fn user_home(&self) -> PathBuf {
        self.dir.path().join("user")
    }

    /// The fake smolvm's data directory.
    pub fn smolvm_data(&self) -> PathBuf {
        self.user_home().join(".local/share/smolvm")
    }

    /// A `bottle` command in this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&artifacts().bottle);
        cmd.args(args)
            .env("BOTTLE_HOME", self.bottle_home())
            .env("HOME", self.user_home())
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("BOTTLE_PLUGIN_PATH")
            .env_remove("RUST_LOG")
            .env("BOTTLE_CLAIM_DIR", self.dir.path().join("claims"))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `bottle ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("bottle runs");
        Run {
            args: args.join(" "),
            output,
        }
    }

    /// Writes a spec file into the home and returns its path.
    pub fn spec(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn state(&self) -> StateDb {
        StateDb::open_in(&self.bottle_home()).expect("the state database opens")
    }

    pub fn bottles(&self) -> Vec<BottleRecord> {
        self.state().bottles().expect("bottles are listed")
    }

    /// Machines in the fake smolvm's database.
    pub fn machines(&self) -> Vec<String> {
        let db = self.smolvm_data().join("server/smolvm.db");
        if !db.exists() {
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM vms ORDER BY name").unwrap();
        let names = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        names.map(Result::unwrap).collect()
    }

    /// `machine`'s record in the fake smolvm's database, as smolvm stores it (a JSON object).
    pub fn machine_record(&self, machine: &str) -> Option<serde_json::Value> {
        let db = self.smolvm_data().join("server/smolvm.db");
        let conn = rusqlite::Connection::open(db).ok()?;
        let data: Vec<u8> = conn
            .query_row("SELECT data FROM vms WHERE name = ?1", [machine], |r| {
                r.get(0)
            })
            .ok()?;
        Some(serde_json::from_slice(&data).expect("the fake stores JSON"))
    }

    /// Machines of the sandbox VMM: the directories it keeps them in.
    pub fn sandbox_machines(&self) -> Vec<String> {
        let dir = self.bottle_home().join("plugins/vmm-sandbox/machines");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The allow-list the fake smolvm's `start` read for `machine`.
    pub fn enforced(&self, machine: &str) -> Option<serde_json::Value> {
        let path = self
            .smolvm_data()
            .join("fake")
            .join(format!("{machine}.enforced.json"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).expect("the fake writes JSON"))
    }

    /// Waits until `slug`'s launch has recorded `step` (or later), for crash tests.
    pub fn wait_for_step(&self, slug: &str, step: bottle_core::state::Step, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let reached = self
                .state()
                .bottles()
                .unwrap_or_default()
                .iter()
                .any(|b| b.slug.as_str() == slug && b.step >= step);
            if reached {
                return;
            }
            assert!(Instant::now() < deadline, "{slug} never reached {step}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that the home holds nothing: no bottle, no lease, no machine of either VMM,
    /// no process of the process runtime or of a sandboxed agent.
    pub fn assert_empty(&self) {
        assert_eq!(self.bottles(), vec![], "bottles left");
        assert_eq!(self.state().leases().unwrap(), vec![], "leases left");
        assert_eq!(self.machines(), Vec::<String>::new(), "machines left");
        let sandboxes = self.sandbox_machines();
        assert!(sandboxes.is_empty(), "sandbox machines left: {sandboxes:?}");
        let alive = self.service_processes();
        assert!(alive.is_empty(), "service processes left: {alive:?}");
        let dirs: Vec<_> = std::fs::read_dir(self.bottle_home().join("bottles"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(dirs.is_empty(), "bottle directories left: {dirs:?}");
        let claims: Vec<_> = std::fs::read_dir(self.dir.path().join("claims"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(claims.is_empty(), "alias claims left: {claims:?}");
    }

    /// Live processes whose environment names one of this home's pool aliases: the services
    /// the process runtime started for bottles of this home, and sandboxed agents (both are
    /// given `BOTTLE_ALIAS`).
    pub fn service_processes(&self) -> Vec<u32> {
        let pool: bottle_core::AliasPool = self.pool.parse().unwrap();
        let aliases: Vec<String> = pool
            .aliases()
            .map(|a| format!("BOTTLE_ALIAS={a}"))
            .collect();
        processes_where(|var| aliases.iter().any(|a| a == var))
    }
}

/// Live (not zombie) processes with an environment variable, `NAME=VALUE`, that `matches`.
pub fn processes_where(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let is_zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if is_zombie {
            continue;
        }
        if String::from_utf8_lossy(&environ).split('\0').any(&matches) {
            found.push(pid);
        }
    }
    found
}

/// Waits for a spawned `bottle` to end and returns what it printed on the streams that were
/// piped and not taken; kills it and fails the test if it, or a process that inherited those
/// streams (an agent that outlives bottle), takes longer than `within`. The streams are read
/// meanwhile, so that a full pipe cannot hold bottle up.
pub fn wait_within(mut child: Child, within: Duration) -> Output {
    let stdout = child.stdout.take().map(read_to_end_in_background);
    let stderr = child.stderr.take().map(read_to_end_in_background);
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for bottle") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bottle did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        let Some(reader) = reader else {
            return Vec::new();
        };
        while !reader.is_finished() {
            assert!(
                Instant::now() < deadline,
                "bottle ended, but something it started still holds its output open"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reader.join().expect("the reader thread")
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// The first line a spawned `bottle` prints on its piped stdout. The rest is read and dropped
/// in the background, so that the pipe stays open: a closed one would end bottle with SIGPIPE
/// at its next write.
pub fn first_line(child: &mut Child) -> String {
    use std::io::{BufRead, BufReader};

    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("reading bottle's stdout");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    line
}

fn read_to_end_in_background(
    mut stream: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

impl Drop for Home {
    /// A test that failed halfway still removes what its bottles run.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.command(&["down", "--all"]).output();
        }
    }
}

/// A finished `bottle` run.
pub struct Run {
    pub args: String,
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.output.status.success(),
            "`bottle {}` failed ({:?}):\n{}",
            self.args,
            self.code(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts failure with `code` and returns stderr.
    pub fn fails_with(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            Some(code),
            "`bottle {}`:\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).expect("--json prints JSON")
    }
}

/// A TCP connection to `alias:port` succeeds.
pub fn answers(alias: Ipv4Addr, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&(alias, port).into(), Duration::from_secs(1)).is_ok()
}

/// The path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A spec whose one service `hello` (port 8080) answers each connection on its endpoint with
/// `hello from SLUG`, after `delay` seconds of not listening.
pub fn process_spec(slug: &str, delay: u32) -> String {
    let server = fixture("hello_server.py");
    format!(
        r#"name = "{slug}"

[agent]
command = ["sh", "-c", "echo agent of {slug}"]

[services.hello]
command = ["python3", "{server}", "{slug}", "{delay}"]
ports = [8080]
"#
    )
}

/// Reads what `alias:port` says on connecting.
pub fn greeting(alias: Ipv4Addr, port: u16) -> String {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect_timeout(&(alias, port).into(), Duration::from_secs(2))
            .expect("the service answers");
    let mut text = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .read_to_string(&mut text)
        .expect("the service says something");
    text
}
