//! The runtime-process plugin, loaded from its built library like the host loads it, running
//! real services on loopback aliases (127.0.0.201 and up, apart from the default pool).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bottle_plugin_api::bottle_core::{
    BundleLaunchSpec, BundleRuntime, ErrorKind, ServiceLaunch, Slug,
};
use bottle_plugin_api::{test_support, Discovery};
use serde_json::{json, Map, Value};

const PACKAGE: &str = "bottle-plugin-runtime-process";

fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let mut built = test_support::build_cdylibs(&[PACKAGE]).unwrap_or_else(|e| panic!("{e}"));
        built.remove(PACKAGE).unwrap()
    })
}

/// A test's world: a plugin directory, a state root and a spec directory.
struct World {
    plugins: tempfile::TempDir,
    state: tempfile::TempDir,
    spec_dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        World {
            plugins: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            spec_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new instance of the plugin, from a fresh copy of its library: it knows only what
    /// the state directory tells it.
    fn runtime(&self, settings: Value) -> Box<dyn BundleRuntime> {
        let dir = tempfile::tempdir_in(self.plugins.path()).unwrap();
        test_support::install(library(), dir.path(), "runtime_process");
        let discovery = Discovery::scan(&[dir.path().to_path_buf()]);
        let Value::Object(settings) = settings else {
            panic!("settings are an object")
        };
        discovery
            .runtime("process", settings, self.state.path())
            .unwrap()
    }

    fn spec(&self, slug: &str, alias: Ipv4Addr, services: Vec<ServiceLaunch>) -> BundleLaunchSpec {
        BundleLaunchSpec {
            slug: slug.parse().unwrap(),
            publish_host_ip: alias,
            spec_dir: self.spec_dir.path().to_path_buf(),
            services,
        }
    }

    /// The pid a service wrote to `file` in the spec directory.
    fn pid_in(&self, file: &str) -> u32 {
        let text = std::fs::read_to_string(self.spec_dir.path().join(file)).unwrap();
        text.trim().parse().unwrap()
    }

    fn record_files(&self) -> usize {
        let bundles = self.state.path().join("runtime-process/bundles");
        std::fs::read_dir(bundles).map(|d| d.count()).unwrap_or(0)
    }
}

fn service(name: &str, port: u16, command: &[&str]) -> ServiceLaunch {
    ServiceLaunch {
        name: name.parse().unwrap(),
        image: None,
        command: command.iter().map(|c| c.to_string()).collect(),
        ports: vec![port],
        env: BTreeMap::new(),
    }
}

/// An HTTP server on `$BOTTLE_ALIAS:$PORT`.
fn http_server(name: &str) -> ServiceLaunch {
    let script = "exec python3 -m http.server --bind \"$BOTTLE_ALIAS\" \"$PORT\"";
    service(name, 8080, &["sh", "-c", script])
}

/// A Python service that writes its pid to `pid_file`, then runs `rest`.
fn python(name: &str, pid_file: &str, rest: &str) -> ServiceLaunch {
    let program =
        format!("import os, socket, time\nopen({pid_file:?}, 'w').write(str(os.getpid()))\n{rest}");
    service(name, 9000, &["python3", "-c", &program])
}

/// Whether process `pid` is gone (or a zombie, which runs nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn http_get(address: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_service_answers_on_its_alias_and_a_fresh_instance_stops_it() {
    let world = World::new();
    let alias = Ipv4Addr::new(127, 0, 0, 201);
    let slug: Slug = "web-bot".parse().unwrap();
    let runtime = world.runtime(json!({"instance": "home-1"}));
    let endpoints = runtime
        .start_bundle(&world.spec("web-bot", alias, vec![http_server("web")]))
        .unwrap();

    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!((endpoint.host_ip, endpoint.container_port), (alias, 8080));
    assert!(http_get(&endpoint.address()).starts_with("HTTP/1.0 200"));
    assert_eq!(
        runtime
            .host_port(&slug, &"web".parse().unwrap(), 8080)
            .unwrap(),
        *endpoint
    );

    let fresh = world.runtime(json!({}));
    let owned = fresh.list_owned().unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!((&owned[0].slug, owned[0].kind.as_str()), (&slug, "process"));
    assert_eq!(
        (owned[0].published_on.as_slice(), owned[0].running),
        (&[alias][..], true)
    );
    let pid: u32 = owned[0].name.parse().unwrap();
    assert!(!gone(pid));

    fresh.stop_bundle(&slug).unwrap();
    assert!(gone(pid), "the service still runs after stop_bundle");
    assert!(TcpStream::connect(endpoint.address()).is_err());
    assert!(fresh.list_owned().unwrap().is_empty());
    assert_eq!(world.record_files(), 0);
    fresh.stop_bundle(&slug).unwrap();
}

#[test]
fn a_service_that_binds_the_wildcard_is_refused_and_killed() {
    let world = World::new();
    let alias = Ipv4Addr::new(127, 0, 0, 202);
    let wildcard = "s = socket.socket()\n\
                    s.bind(('0.0.0.0', int(os.environ['PORT'])))\n\
                    s.listen()\n\
                    time.sleep(60)";
    let spec = world.spec(
        "greedy",
        alias,
        vec![python("greedy", "greedy.pid", wildcard)],
    );
    let runtime = world.runtime(json!({}));

    let err = runtime.start_bundle(&spec).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ScopeNotEnforceable, "{err}");
    assert!(
        err.message
            .starts_with("service `greedy` listens on 0.0.0.0:"),
        "{err}"
    );
    assert!(
        err.message
            .contains("besides its bottle's alias 127.0.0.202"),
        "{err}"
    );
    assert!(
        gone(world.pid_in("greedy.pid")),
        "the service was not killed"
    );
    assert!(runtime.list_owned().unwrap().is_empty());
    assert_eq!(world.record_files(), 0);
}

#[test]
fn a_service_that_never_listens_times_out_and_leaves_nothing() {
    let world = World::new();
    let alias = Ipv4Addr::new(127, 0, 0, 203);
    let idle = python(
        "idle",
        "idle.pid",
        "print('warming up', flush=True)\ntime.sleep(60)",
    );
    let runtime = world.runtime(json!({"start_timeout_ms": 1000}));

    let err = runtime
        .start_bundle(&world.spec("idle", alias, vec![idle]))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(
        err.message
            .starts_with("service `idle` did not accept connections on 127.0.0.203:"),
        "{err}"
    );
    assert!(err.message.ends_with("within 1000 ms"), "{err}");
    assert!(
        err.causes[0].ends_with("idle.log, ends with:\nwarming up"),
        "{:?}",
        err.causes
    );
    assert!(gone(world.pid_in("idle.pid")), "the service was not killed");
    assert_eq!(world.record_files(), 0);
}

#[test]
fn a_failure_of_the_second_service_stops_the_first() {
    let world = World::new();
    let alias = Ipv4Addr::new(127, 0, 0, 204);
    let first = python(
        "first",
        "first.pid",
        "s = socket.socket()\ns.bind((os.environ['BOTTLE_ALIAS'], int(os.environ['PORT'])))\n\
         s.listen()\ntime.sleep(60)",
    );
    let second = service(
        "second",
        9001,
        &["sh", "-c", "echo cannot open the database >&2; exit 3"],
    );
    let runtime = world.runtime(json!({}));

    let err = runtime
        .start_bundle(&world.spec("pair", alias, vec![first, second]))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert!(
        err.message
            .starts_with("service `second` exited (exit status: 3)"),
        "{err}"
    );
    assert!(
        err.causes[0].ends_with("ends with:\ncannot open the database"),
        "{:?}",
        err.causes
    );
    assert!(
        gone(world.pid_in("first.pid")),
        "the first service still runs"
    );
    assert!(runtime.list_owned().unwrap().is_empty());
}

#[test]
fn a_spec_it_cannot_run_is_refused_before_anything_starts() {
    let world = World::new();
    let mut web = http_server("web");
    web.image = Some("nginx:1".to_owned());
    let spec = world.spec("img", Ipv4Addr::new(127, 0, 0, 205), vec![web]);
    let err = world.runtime(json!({})).start_bundle(&spec).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_eq!(world.record_files(), 0);
}

#[test]
fn bad_settings_are_refused_when_the_plugin_starts() {
    let world = World::new();
    let dir = tempfile::tempdir_in(world.plugins.path()).unwrap();
    test_support::install(library(), dir.path(), "runtime_process");
    let discovery = Discovery::scan(&[dir.path().to_path_buf()]);
    let mut settings = Map::new();
    settings.insert("start_timeout".to_owned(), json!(5));
    let err = discovery
        .runtime("runtime-process", settings, world.state.path())
        .err()
        .unwrap();
    let bottle_plugin_api::PluginError::Start { source, .. } = err else {
        panic!("expected a start error, got {err}");
    };
    assert_eq!(source.kind, ErrorKind::InvalidInput);
    assert!(
        source.causes[0].contains("unknown field `start_timeout`"),
        "{:?}",
        source.causes
    );
}
