//! The sandbox against real listeners: from inside a started sandbox, the agent reaches its
//! own endpoint through the relay, and nothing else of the host.
//!
//! Each test uses an alias of its own in 127.0.0.240 – 127.0.0.254, so that the tests can
//! run at once, and all traffic stays on loopback.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use bottle_core::{
    AgentSpec, EgressPolicy, ErrorKind, ExecOutput, ExecStdio, Machine, MachineState, Mount,
    ScopeSupport, ServiceEndpoint, VmmBackend,
};
use bottle_vmm_sandbox::{ProcessId, SandboxBackend, SupervisorRecord, VERSION};

const HELPER: &str = env!("CARGO_BIN_EXE_bottle-sandbox");

/// A TCP listener that answers every connection with `greeting` and closes it.
fn greeter(address: SocketAddrV4, greeting: &'static str) -> SocketAddrV4 {
    let listener = TcpListener::bind(address).unwrap();
    let std::net::SocketAddr::V4(bound) = listener.local_addr().unwrap() else {
        panic!("bound to IPv4")
    };
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(greeting.as_bytes());
        }
    });
    bound
}

fn endpoint(address: SocketAddrV4) -> ServiceEndpoint {
    ServiceEndpoint {
        service: "web".parse().unwrap(),
        container_port: 8080,
        host_ip: *address.ip(),
        host_port: address.port(),
    }
}

/// A sandbox backend with its own state directory, and one machine that is removed at the
/// end of the test whatever happens.
struct Fixture {
    _state: tempfile::TempDir,
    state_dir: PathBuf,
    backend: SandboxBackend,
    machine: Machine,
    alias: Ipv4Addr,
}

impl Fixture {
    fn new(last_octet: u8) -> Self {
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().to_path_buf();
        let settings = serde_json::json!({ "state_dir": state_dir, "helper": HELPER });
        Fixture {
            _state: state,
            state_dir,
            backend: SandboxBackend::from_settings(&settings).unwrap(),
            machine: Machine {
                name: format!("bottle-t{last_octet}"),
            },
            alias: Ipv4Addr::new(127, 0, 0, last_octet),
        }
    }

    fn agent(&self, endpoints: Vec<ServiceEndpoint>) -> AgentSpec {
        AgentSpec {
            slug: self.machine.name["bottle-".len()..].parse().unwrap(),
            machine_name: self.machine.name.clone(),
            from: None,
            image: None,
            command: Vec::new(),
            env: BTreeMap::from([
                ("BOTTLE_ALIAS".to_owned(), self.alias.to_string()),
                ("GREETING".to_owned(), "hello world".to_owned()),
            ]),
            mounts: Vec::new(),
            cpus: None,
            memory_mib: None,
            alias: self.alias,
            endpoints,
        }
    }

    /// Creates and starts the machine for `agent`.
    fn start(&self, agent: &AgentSpec) {
        let machine = self
            .backend
            .create(agent, &EgressPolicy::alias_only(self.alias))
            .unwrap();
        assert_eq!(machine, self.machine);
        self.backend.start(&machine).unwrap();
        assert_eq!(
            self.backend.status(&machine).unwrap(),
            MachineState::Running
        );
    }

    fn machine_dir(&self) -> PathBuf {
        self.state_dir.join("machines").join(&self.machine.name)
    }

    fn supervisor(&self) -> SupervisorRecord {
        let text = fs::read_to_string(self.machine_dir().join("supervisor.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn exec(&self, command: &[&str]) -> ExecOutput {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        self.backend
            .exec(&self.machine, &command, ExecStdio::Capture)
            .unwrap()
    }

    /// Runs a shell script inside; it must exit 0. Returns its standard output.
    fn sh(&self, script: &str) -> String {
        let output = self.exec(&["sh", "-c", script]);
        assert_eq!(output.exit_code, Some(0), "`{script}` failed: {output:?}");
        output.stdout
    }

    /// Tries a TCP connection from inside: the bytes it read, or the error's name.
    fn connect(&self, address: &str) -> String {
        let (host, port) = address.rsplit_once(':').unwrap();
        let script = format!(
            "import socket\n\
             try:\n    \
                 s = socket.create_connection(('{host}', {port}), timeout=3)\n    \
                 print('read:' + s.recv(100).decode())\n\
             except OSError as e:\n    \
                 print('error:' + type(e).__name__ + ':' + str(e.errno))\n"
        );
        self.exec(&["python3", "-c", &script])
            .stdout
            .trim()
            .to_owned()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.backend.remove(&self.machine);
    }
}

fn is_refused(answer: &str) -> bool {
    answer.starts_with("error:ConnectionRefusedError")
}

#[test]
fn the_agent_reaches_its_endpoint_and_no_other_address() {
    let fixture = Fixture::new(241);
    let service = greeter(
        SocketAddrV4::new(fixture.alias, 0),
        "hello from your bundle",
    );
    let host = greeter(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), "host loopback");
    let other_alias = Ipv4Addr::new(127, 0, 0, 242);
    // Another bottle's service, on the very port number of this bottle's endpoint.
    let other = greeter(
        SocketAddrV4::new(other_alias, service.port()),
        "another bottle",
    );
    let same_alias_other_port = greeter(SocketAddrV4::new(fixture.alias, 0), "not relayed");
    fixture.start(&fixture.agent(vec![endpoint(service)]));

    assert_eq!(
        fixture.connect(&service.to_string()),
        "read:hello from your bundle"
    );
    for unreachable in [host, other, same_alias_other_port] {
        let answer = fixture.connect(&unreachable.to_string());
        assert!(is_refused(&answer), "{unreachable}: {answer}");
    }
    let outside = fixture.connect("192.0.2.1:80");
    assert!(
        outside.starts_with("error:OSError:101") || outside.contains("Unreachable"),
        "{outside}"
    );
    // Once more, so that the relay is seen to serve more than one connection.
    assert_eq!(
        fixture.connect(&service.to_string()),
        "read:hello from your bundle"
    );
}

#[test]
fn host_unix_sockets_are_out_of_reach() {
    let fixture = Fixture::new(243);
    let name = format!("bottle-sandbox-test-{}", std::process::id());
    // /run is writable by root only; an unprivileged run tries /tmp and /dev/shm.
    let mut sockets = Vec::new();
    for dir in ["/tmp", "/run", "/dev/shm"] {
        let path = PathBuf::from(dir).join(format!("{name}.sock"));
        if let Ok(listener) = UnixListener::bind(&path) {
            sockets.push((path, listener));
        }
    }
    assert!(sockets.len() >= 2, "{sockets:?}");
    let abstract_name = format!("\0{name}");
    let _abstract = bind_abstract(&name);
    fixture.start(&fixture.agent(Vec::new()));

    let docker = PathBuf::from("/var/run/docker.sock");
    for path in sockets.iter().map(|(path, _)| path).chain([&docker]) {
        let path = path.display().to_string();
        let output = fixture.exec(&["test", "-e", &path]);
        assert_eq!(output.exit_code, Some(1), "{path} is visible inside");
    }
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         try:\n    s.connect({abstract_name:?})\n    print('connected')\n\
         except OSError as e:\n    print(type(e).__name__)\n"
    );
    let answer = fixture.exec(&["python3", "-c", &script]).stdout;
    assert_eq!(answer.trim(), "ConnectionRefusedError");
    for (path, _) in &sockets {
        let _ = fs::remove_file(path);
    }
}

fn bind_abstract(name: &str) -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    std::os::unix::net::UnixListener::bind_addr(&address).unwrap()
}

#[test]
fn the_sandbox_has_only_loopback_and_sees_only_its_own_processes() {
    let fixture = Fixture::new(244);
    fixture.start(&fixture.agent(Vec::new()));

    let devices = fixture.sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert_eq!(devices.trim(), "lo");
    let pids = fixture.sh("ls /proc | grep -E '^[0-9]+$' || true");
    let pids: Vec<&str> = pids.lines().collect();
    assert!(pids.len() <= 4, "the sandbox sees {pids:?}");
    assert!(pids.contains(&"1"), "{pids:?}");
    assert!(!pids.contains(&std::process::id().to_string().as_str()));
    assert_eq!(fixture.sh("hostname").trim(), fixture.machine.name);
}

#[test]
fn the_agent_sees_read_only_system_files_and_only_its_mounts() {
    let fixture = Fixture::new(245);
    let shared = tempfile::tempdir().unwrap();
    let read_only = shared.path().join("ro");
    let writable = shared.path().join("rw");
    fs::create_dir(&read_only).unwrap();
    fs::create_dir(&writable).unwrap();
    fs::write(read_only.join("note"), "from the host\n").unwrap();
    for dir in [shared.path(), &writable] {
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    fs::set_permissions(
        &read_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut agent = fixture.agent(Vec::new());
    agent.mounts = vec![
        Mount {
            host: read_only.clone(),
            guest: "/work/ro".into(),
            read_only: true,
        },
        Mount {
            host: writable.clone(),
            guest: "/work/rw".into(),
            read_only: false,
        },
    ];
    fixture.start(&agent);

    assert_eq!(fixture.sh("cat /work/ro/note"), "from the host\n");
    assert_eq!(fixture.sh("id -u"), "0\n");
    for (what, script) in [
        ("a read-only mount", "touch /work/ro/x"),
        ("/usr", "touch /usr/bottle-sandbox-test"),
        ("/etc", "touch /etc/bottle-sandbox-test"),
        ("the root", "mkdir /bottle-sandbox-test"),
        ("a remount of /usr", "mount -o remount,rw /usr"),
        (
            "a remount of the ro mount",
            "mount -o remount,bind,rw /work/ro",
        ),
        ("an unmount of the ro mount", "umount /work/ro"),
        ("/etc/shadow", "cat /etc/shadow"),
    ] {
        let output = fixture.exec(&["sh", "-c", &format!("{script} 2>&1")]);
        assert_ne!(output.exit_code, Some(0), "{what} is allowed: {output:?}");
    }
    assert!(!read_only.join("x").exists());
    assert!(!Path::new("/usr/bottle-sandbox-test").exists());
    fixture.sh("echo made inside > /work/rw/made && echo tmp > /tmp/t && echo run > /run/r");
    let made = fs::metadata(writable.join("made")).unwrap();
    // SAFETY: geteuid has no preconditions.
    let expected_owner = match unsafe { libc::geteuid() } {
        0 => bottle_vmm_sandbox::ROOT_AGENT_ID,
        uid => uid,
    };
    assert_eq!(made.uid(), expected_owner);
    // The agent's /tmp is its own.
    assert!(!Path::new("/tmp/t").exists() || fs::read_to_string("/tmp/t").unwrap() != "tmp\n");
}

#[test]
fn the_environment_is_the_agents_only() {
    let fixture = Fixture::new(246);
    fixture.start(&fixture.agent(Vec::new()));
    let env = fixture.sh("env | sort");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| *k != "PWD" && *k != "SHLVL" && *k != "_")
        .collect();
    assert_eq!(names, ["BOTTLE_ALIAS", "GREETING", "HOME", "PATH"]);
    assert!(env.contains("GREETING=hello world\n"), "{env}");
}

#[test]
fn exec_passes_exit_codes_through() {
    let fixture = Fixture::new(247);
    fixture.start(&fixture.agent(Vec::new()));
    let machine = &fixture.machine;
    let command = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let inherited = fixture
        .backend
        .exec(machine, &command("exit 7"), ExecStdio::Inherit)
        .unwrap();
    assert_eq!(inherited.exit_code, Some(7));
    let captured = fixture.exec(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        (
            captured.exit_code,
            captured.stdout.as_str(),
            captured.stderr.as_str()
        ),
        (Some(3), "out\n", "err\n")
    );
    let killed = fixture.exec(&["sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.exit_code, None);
    let missing = fixture.exec(&["no-such-program"]);
    assert_eq!(missing.exit_code, Some(127));
    assert!(missing.stderr.contains("no-such-program"), "{missing:?}");
}

#[test]
fn stop_kills_every_agent_process_and_remove_leaves_nothing() {
    let fixture = Fixture::new(248);
    fixture.start(&fixture.agent(Vec::new()));
    fixture.sh("sleep 1000 >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 &");
    let running = fixture.supervisor();
    let pid_ns = fs::read_link(format!("/proc/{}/ns/pid", running.init.pid)).unwrap();
    let in_sandbox = processes_in(&pid_ns);
    assert!(in_sandbox.len() >= 3, "init and two sleeps: {in_sandbox:?}");

    fixture.backend.stop(&fixture.machine).unwrap();
    assert_eq!(
        fixture.backend.status(&fixture.machine).unwrap(),
        MachineState::Stopped
    );
    for process in in_sandbox
        .iter()
        .chain([&running.supervisor, &running.init])
    {
        assert!(!process.is_alive(), "process {} survived", process.pid);
    }
    assert!(processes_in(&pid_ns).is_empty());
    fixture.backend.stop(&fixture.machine).unwrap();

    fixture.backend.remove(&fixture.machine).unwrap();
    assert!(!fixture.machine_dir().exists());
    assert_eq!(
        fixture.backend.status(&fixture.machine).unwrap(),
        MachineState::Missing
    );
    fixture.backend.remove(&fixture.machine).unwrap();
}

/// Every live process whose PID namespace is `pid_ns`.
fn processes_in(pid_ns: &Path) -> Vec<ProcessId> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == pid_ns))
        .filter_map(|pid| ProcessId::of(pid).ok())
        .filter(ProcessId::is_alive)
        .collect()
}

#[test]
fn the_agents_command_runs_and_its_end_stops_the_machine() {
    let fixture = Fixture::new(249);
    let mut agent = fixture.agent(Vec::new());
    agent.command = vec![
        "sh".into(),
        "-c".into(),
        "echo \"agent says $GREETING\"".into(),
    ];
    fixture
        .backend
        .create(&agent, &EgressPolicy::alias_only(fixture.alias))
        .unwrap();
    fixture.backend.start(&fixture.machine).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fixture.backend.status(&fixture.machine).unwrap() == MachineState::Running {
        assert!(Instant::now() < deadline, "the machine did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        fixture.backend.status(&fixture.machine).unwrap(),
        MachineState::Stopped
    );
    let log = fs::read_to_string(fixture.machine_dir().join("agent.log")).unwrap();
    assert_eq!(log, "agent says hello world\n");
}

#[test]
fn an_agent_command_that_cannot_run_fails_the_start() {
    let fixture = Fixture::new(250);
    let mut agent = fixture.agent(Vec::new());
    agent.command = vec!["no-such-agent".into()];
    fixture
        .backend
        .create(&agent, &EgressPolicy::alias_only(fixture.alias))
        .unwrap();
    let err = fixture.backend.start(&fixture.machine).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert!(err.message.contains("cannot run `no-such-agent`"), "{err}");
    assert_ne!(
        fixture.backend.status(&fixture.machine).unwrap(),
        MachineState::Running
    );
}

#[test]
fn unrestricted_or_wide_policies_are_refused_at_create() {
    let fixture = Fixture::new(251);
    let agent = fixture.agent(vec![endpoint(SocketAddrV4::new(fixture.alias, 8080))]);
    for policy in [
        EgressPolicy::Unrestricted,
        EgressPolicy::AllowOnly(vec!["127.0.0.0/8".parse().unwrap()]),
        EgressPolicy::AllowOnly(vec!["127.0.0.252/32".parse().unwrap()]),
    ] {
        let err = fixture.backend.create(&agent, &policy).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{policy}: {err}");
    }
    assert!(!fixture.machine_dir().exists());
    assert!(fixture.backend.list_machines().unwrap().is_empty());
}

#[test]
fn probe_finds_the_scope_exact_here() {
    let fixture = Fixture::new(253);
    let probe = fixture.backend.probe().unwrap();
    assert_eq!(probe.version.as_deref(), Some(VERSION));
    assert_eq!(probe.scope, ScopeSupport::Exact, "{probe:?}");
    let lines = fixture.backend.describe().unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with("sandbox check: passed")),
        "{lines:?}"
    );
}

#[test]
fn no_process_inside_holds_a_host_file_and_a_stopped_machine_starts_again() {
    let fixture = Fixture::new(254);
    fixture.start(&fixture.agent(Vec::new()));
    let state_dir = fixture.state_dir.display().to_string();
    let links =
        fixture.sh("for f in /proc/[0-9]*/fd/*; do readlink \"$f\"; done 2>/dev/null; true");
    for target in links.lines() {
        assert!(
            !target.contains(&state_dir) && !target.ends_with(".log"),
            "a process inside holds {target}"
        );
    }

    fixture.backend.stop(&fixture.machine).unwrap();
    fixture.backend.start(&fixture.machine).unwrap();
    assert_eq!(
        fixture.backend.status(&fixture.machine).unwrap(),
        MachineState::Running
    );
    assert_eq!(fixture.sh("echo again"), "again\n");
}

#[test]
fn the_hello_example_agent_finds_the_promise_kept() {
    let fixture = Fixture::new(240);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    let example = example.canonicalize().unwrap();
    let port = TcpListener::bind((fixture.alias, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = std::process::Command::new("python3")
        .arg("service.py")
        .current_dir(&example)
        .env("BOTTLE_ALIAS", fixture.alias.to_string())
        .env("PORT", port.to_string())
        .spawn()
        .unwrap();
    let address = SocketAddrV4::new(fixture.alias, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "the example's service did not start"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut agent = fixture.agent(vec![endpoint(address)]);
    agent.env.insert("BOTTLE_SLUG".into(), "hello".into());
    agent
        .env
        .insert("BOTTLE_SERVICE_HELLO".into(), address.to_string());
    agent.mounts.push(Mount {
        host: example,
        guest: "/hello".into(),
        read_only: true,
    });
    fixture.start(&agent);

    let report = fixture.exec(&["python3", "/hello/agent.py"]);
    let _ = service.kill();
    let _ = service.wait();
    assert_eq!(
        report.exit_code,
        Some(0),
        "{}{}",
        report.stdout,
        report.stderr
    );
    assert!(
        report
            .stdout
            .contains("answered \"hello from your bundle\""),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains("the promise holds"),
        "{}",
        report.stdout
    );
}
