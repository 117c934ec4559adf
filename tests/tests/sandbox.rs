//! The main job on Linux: the sandbox VMM and the process runtime, with nothing installed
//! beyond the build, through the real binary.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bottle_e2e::{processes_where, wait_within, Home};

/// Writes the spec of a sandboxed bottle `slug` whose agent only sleeps, next to one service
/// that answers on `port`, and returns its path.
fn idle_bottle(home: &Home, slug: &str, service: &str, port: u16) -> std::path::PathBuf {
    let text = format!(
        "name = \"{slug}\"\nvmm = \"sandbox\"\n\n[agent]\ncommand = [\"sleep\", \"600\"]\n\n\
         [services.{service}]\ncommand = [\"python3\", \"{}\", \"{slug}\"]\nports = [{port}]\n",
        bottle_e2e::fixture("hello_server.py")
    );
    home.spec(&format!("{slug}/bottle.toml"), &text)
}

fn example(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn run_examples_hello_keeps_the_promise_and_leaves_nothing() {
    let home = Home::new("127.0.8.0/28", "0.8.0", "process");
    let run = home.run(&["run", &example("hello"), "--vmm", "sandbox"]);
    let report = run.ok();
    assert!(report.contains("the promise holds"), "{report}");
    assert!(
        report.contains("answered \"hello from your bundle\""),
        "{report}"
    );
    home.assert_empty();
}

#[test]
fn probe_shows_the_matrix_from_inside_a_running_agent() {
    let home = Home::new("127.0.8.16/28", "0.8.0", "process");
    let spec = idle_bottle(&home, "idle", "hello", 8080);
    let neighbour = idle_bottle(&home, "next", "web", 80);
    home.run(&["up", &spec.display().to_string()]).ok();
    home.run(&["up", &neighbour.display().to_string()]).ok();

    let probe = home.run(&["probe", "idle", "--json"]).json();
    let rows = probe.as_array().unwrap();
    let row = |target: &str| {
        rows.iter()
            .find(|r| r["target"] == target)
            .unwrap_or_else(|| panic!("{target}: {probe}"))
    };
    assert_eq!(row("own service hello")["observed"], "reachable");
    assert_eq!(row("bottle next service web")["observed"], "unreachable");
    assert_eq!(row("host loopback service")["observed"], "unreachable");
    assert_eq!(row("unleased pool alias")["observed"], "unreachable");
    assert_eq!(
        row("host service on every address")["observed"],
        "unreachable"
    );
    assert!(rows.iter().all(|r| r["holds"] == true), "{probe}");

    let table = home.run(&["probe", "idle"]).ok();
    assert!(!table.contains("VIOLATION"), "{table}");

    home.run(&["down", "--all"]).ok();
    home.assert_empty();
}

#[test]
fn the_agent_finds_its_endpoints_file() {
    let home = Home::new("127.0.8.32/28", "0.8.0", "process");
    let run = home.run(&[
        "run",
        &example("hello"),
        "--",
        "sh",
        "-c",
        "cat \"$BOTTLE_ENDPOINTS\"",
    ]);
    let json: serde_json::Value = serde_json::from_str(&run.ok()).expect("the file is JSON");
    assert_eq!(json["slug"], "hello");
    assert_eq!(json["alias"], "127.0.8.32");
    assert_eq!(json["endpoints"][0]["service"], "hello");
    assert_eq!(json["endpoints"][0]["host_ip"], "127.0.8.32");
    home.assert_empty();
}

#[test]
fn run_passes_its_stdin_to_the_agent() {
    let home = Home::new("127.0.8.48/28", "0.8.0", "process");
    // The agent answers with what it read, and exits with its length.
    let script = "read line; echo \"the agent read: $line\"; exit ${#line}";
    let mut child = home
        .command(&["run", &example("hello"), "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written before the launch and closed: nothing before the agent may consume it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"twelve bytes\n").unwrap();
    drop(stdin);
    let out = wait_within(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "the agent read: twelve bytes\n",
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    home.assert_empty();
}

#[test]
fn a_dead_agent_shows_the_bottle_as_degraded() {
    let home = Home::new("127.0.8.64/28", "0.8.0", "process");
    let spec = idle_bottle(&home, "lonely", "hello", 8080);
    let up = home
        .run(&["up", &spec.display().to_string(), "--json"])
        .json();
    let machine = up["machine"]["name"].as_str().unwrap().to_owned();
    let ls = home.run(&["ls", "--json"]).json();
    assert_eq!(ls[0]["status"], "running", "{ls}");

    // Only the agent is given BOTTLE_SLUG; the service keeps running.
    let agents = processes_where(|var| var == "BOTTLE_SLUG=lonely");
    assert_eq!(agents.len(), 1, "the agent's processes: {agents:?}");
    std::process::Command::new("kill")
        .args(["-9", &agents[0].to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ls = loop {
        let ls = home.run(&["ls", "--json"]).json();
        if ls[0]["status"] != "running" || Instant::now() >= deadline {
            break ls;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ls[0]["status"], "degraded", "{ls}");
    let stopped = serde_json::json!([format!("machine {machine} is stopped")]);
    assert_eq!(ls[0]["problems"], stopped, "{ls}");

    let inspect = home.run(&["inspect", "lonely", "--json"]).json();
    assert_eq!(inspect["slug"], "lonely");
    assert_eq!(inspect["status"], "degraded", "{inspect}");
    assert_eq!(inspect["problems"], stopped, "{inspect}");
    let text = home.run(&["inspect", "lonely"]).ok();
    assert!(text.contains("status:    degraded"), "{text}");

    // gc finishes half-done bottles only: a degraded one is left for `bottle down`.
    let gc = home.run(&["gc", "--json"]).json();
    let nothing = serde_json::json!({ "finished": [], "orphans_removed": [], "failures": [] });
    assert_eq!(gc, nothing);
    assert_eq!(home.bottles().len(), 1, "gc removed a degraded bottle");

    home.run(&["down", "lonely"]).ok();
    home.assert_empty();
}
