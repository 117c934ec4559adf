//! The main job on Linux: the sandbox VMM and the process runtime, with nothing installed
//! beyond the build, through the real binary.

use bottle_e2e::Home;

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
    let spec = home.spec(
        "idle/bottle.toml",
        &format!(
            "name = \"idle\"\nvmm = \"sandbox\"\n\n[agent]\ncommand = [\"sleep\", \"600\"]\n\n\
             [services.hello]\ncommand = [\"python3\", \"{}\", \"idle\"]\nports = [8080]\n",
            bottle_e2e::fixture("hello_server.py")
        ),
    );
    let neighbour = home.spec(
        "next/bottle.toml",
        &format!(
            "name = \"next\"\nvmm = \"sandbox\"\n\n[agent]\ncommand = [\"sleep\", \"600\"]\n\n\
             [services.web]\ncommand = [\"python3\", \"{}\", \"next\"]\nports = [80]\n",
            bottle_e2e::fixture("hello_server.py")
        ),
    );
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
