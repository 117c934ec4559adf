//! `bottle doctor` and `bottle net status` through the real binary and real plugins: what
//! they report, their exit statuses, and that the pool's status says what leasing will do.

use std::net::{Ipv4Addr, TcpListener};

use bottle_e2e::{process_spec, Home};
use serde_json::Value;

/// A spec with a `.smolmachine` artifact next to it, with the process runtime's one service
/// `hello`, or with no service at all (so that nothing listens on its alias).
fn spec(home: &Home, slug: &str, with_service: bool) -> String {
    let dir = home.dir.path().join(slug);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.smolmachine"), b"").unwrap();
    let mut text =
        process_spec(slug, 0).replace("[agent]\n", "[agent]\nfrom = \"agent.smolmachine\"\n");
    if !with_service {
        let cut = text.find("[services.").unwrap();
        text.truncate(cut);
    }
    home.spec(&format!("{slug}/bottle.toml"), &text)
        .display()
        .to_string()
}

/// The JSON a `--json` run printed, whatever its exit status.
fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// The check of `plugin` in one of the report's lists (`vmms`, `runtimes`).
fn check<'a>(report: &'a Value, list: &str, plugin: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no check of {plugin} in {list}: {report}"))
}

/// The row of `alias` in `bottle net status --json`.
fn row(status: &Value, alias: Ipv4Addr) -> &Value {
    status["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alias"] == alias.to_string())
        .unwrap_or_else(|| panic!("no row for {alias}: {status}"))
}

/// The line of `alias` in the text of `bottle net status` or `bottle doctor`.
fn line(text: &str, alias: Ipv4Addr) -> &str {
    let start = format!("{alias} ");
    text.lines()
        .find(|l| l.trim_start().starts_with(&start))
        .unwrap_or_else(|| panic!("no line for {alias}:\n{text}"))
}

fn statuses(status: &Value) -> Vec<String> {
    status["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

fn alias(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 40, last)
}

#[test]
fn doctor_reports_plugins_defaults_and_the_pool_and_exits_0_when_ready() {
    let home = Home::new("127.0.40.0/29", "0.8.0", "process");

    let text = home.run(&["doctor"]).ok();
    assert!(
        text.contains("defaults: vmm vmm-smolvm, runtime runtime-process\n"),
        "{text}"
    );
    assert!(
        text.contains("ready: bottles can be launched with the defaults\n"),
        "{text}"
    );
    assert!(text.contains("\nvmm vmm-smolvm: ok\n  0.8.0: holds an agent to exactly its alias\n"));
    assert!(text.contains("\nruntime runtime-process: ok\n"), "{text}");
    // The pool's table sits under its heading, indented like the lines around it.
    let heading = "\n  pool 127.0.40.0/29:\n    ALIAS ";
    assert!(text.contains(heading), "{text}");
    for last in 0..8 {
        let line = line(&text, alias(last));
        assert!(line.starts_with("    127.0.40."), "{line:?}");
        assert!(line.contains(" free "), "{line:?}");
    }
    let sockets = text
        .lines()
        .find(|l| l.contains("in-use detection reads"))
        .unwrap_or_else(|| panic!("no line on in-use detection:\n{text}"));
    let count: usize = sockets
        .rsplit(": ")
        .next()
        .and_then(|n| n.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no socket count in {sockets:?}"));
    let noun = if count == 1 {
        "socket now"
    } else {
        "sockets now"
    };
    assert!(
        sockets.ends_with(&format!("{count} listening TCP {noun}")),
        "{sockets:?}"
    );

    let report = home.run(&["doctor", "--json"]).json();
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(report["pool"], "127.0.40.0/29");
    assert_eq!(report["default_vmm"], "vmm-smolvm");
    assert_eq!(report["default_runtime"], "runtime-process");
    assert_eq!(report["home"], home.bottle_home().display().to_string());
    assert_eq!(report["net"]["plugin"], "net-linux");
    assert_eq!(report["net"]["ok"], true);
    let vmms_and_runtimes =
        report["vmms"].as_array().unwrap().len() + report["runtimes"].as_array().unwrap().len();
    // Each VMM and runtime checked, and at least the net plugin of this OS.
    assert!(
        report["plugins_loaded"].as_u64().unwrap() > vmms_and_runtimes as u64,
        "{report}"
    );
    assert!(report["plugins_rejected"].is_u64(), "{report}");

    let smolvm = check(&report, "vmms", "vmm-smolvm");
    assert_eq!(smolvm["ok"], true, "{smolvm}");
    assert_eq!(
        smolvm["lines"][0],
        "0.8.0: holds an agent to exactly its alias"
    );
    let sandbox = check(&report, "vmms", "vmm-sandbox");
    assert_eq!(sandbox["ok"], true, "{sandbox}");
    let scope = sandbox["lines"][0].as_str().unwrap();
    assert!(
        scope.ends_with(": holds an agent to exactly its alias"),
        "{scope}"
    );
    assert_eq!(check(&report, "runtimes", "runtime-process")["ok"], true);
    check(&report, "runtimes", "runtime-docker");

    assert_eq!(report["pool_error"], Value::Null, "{report}");
    let pool = &report["pool_status"];
    assert_eq!(pool["pool"], "127.0.40.0/29");
    assert_eq!(pool["net_plugin"], "net-linux");
    assert_eq!(statuses(pool), vec!["free"; 8], "{pool}");
    assert!(pool["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["present"] == true));
}

#[test]
fn doctor_exits_6_when_the_default_vmm_cannot_hold_an_agent_to_its_alias() {
    let home = Home::new("127.0.40.8/29", "1.9.2", "process");

    let run = home.run(&["doctor"]);
    run.fails_with(6);
    let text = run.stdout();
    assert!(text.contains("\nNOT READY: "), "{text}");
    assert!(
        text.contains("\nvmm vmm-smolvm: NOT READY\n  1.9.2: cannot hold an agent to its alias"),
        "{text}"
    );

    let run = home.run(&["doctor", "--json"]);
    run.fails_with(6);
    let report = json_of(&run.stdout());
    assert_eq!(report["ready"], false);
    assert_eq!(report["default_vmm"], "vmm-smolvm");
    let smolvm = check(&report, "vmms", "vmm-smolvm");
    assert_eq!(smolvm["ok"], false);
    let scope = smolvm["lines"][0].as_str().unwrap();
    assert!(
        scope.starts_with("1.9.2: cannot hold an agent to its alias"),
        "{scope}"
    );
    assert_eq!(report["net"]["ok"], true, "the rest is still checked");
    assert_eq!(report["pool_status"]["pool"], "127.0.40.8/29");

    // The same home with a VMM that can is ready again.
    let mut ready = home;
    ready.env = vec![("FAKE_SMOLVM_VERSION".into(), "1.0.3".into())];
    ready.run(&["doctor"]).ok();
}

#[test]
fn doctor_shows_why_the_pool_cannot_be_read_and_is_not_ready() {
    let home = Home::new("127.0.40.16/29", "0.8.0", "process");
    home.run(&["doctor"]).ok();
    let conn = rusqlite::Connection::open(home.bottle_home().join("state.db")).unwrap();
    conn.execute(
        "INSERT INTO leases (alias, slug, leased_at) VALUES ('not-an-alias', 'x', 0)",
        [],
    )
    .unwrap();
    drop(conn);

    let run = home.run(&["doctor"]);
    run.fails_with(6);
    let text = run.stdout();
    let heading = text
        .lines()
        .find(|l| l.starts_with("  pool 127.0.40.16/29: "))
        .unwrap_or_else(|| panic!("no pool line:\n{text}"));
    assert!(heading.contains("cannot be read"), "{heading}");
    assert!(heading.contains("not-an-alias"), "{heading}");

    let run = home.run(&["doctor", "--json"]);
    run.fails_with(6);
    let report = json_of(&run.stdout());
    assert_eq!(report["pool_status"], Value::Null);
    let error = report["pool_error"].as_str().unwrap();
    assert!(error.contains("not-an-alias"), "{error}");
}

#[test]
fn net_status_without_docker_says_what_it_could_not_check() {
    let home = Home::new("127.0.40.24/29", "0.8.0", "process");
    let config = home.bottle_home().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[plugins.runtime-docker]\ndocker = \"/nonexistent/docker\"\n");
    std::fs::write(&config, text).unwrap();

    let status = home.run(&["net", "status", "--json"]).json();
    assert_eq!(status["runtimes"], serde_json::json!(["runtime-process"]));
    let unchecked = status["unchecked"].as_array().unwrap();
    assert_eq!(unchecked.len(), 1, "{status}");
    let docker = unchecked[0].as_str().unwrap();
    assert!(docker.starts_with("what runtime-docker runs: "), "{docker}");
    assert_eq!(statuses(&status), vec!["free"; 8]);

    let text = home.run(&["net", "status"]).ok();
    assert!(
        text.lines()
            .any(|l| l.starts_with("not checked: what runtime-docker runs: ")),
        "{text}"
    );
    let doctor = home.run(&["doctor"]).ok();
    assert!(
        doctor.contains("\n    not checked: what runtime-docker runs: "),
        "{doctor}"
    );
}

#[test]
fn net_status_says_what_leasing_will_do() {
    let a = Home::new("127.0.40.32/29", "0.8.0", "process");
    // One claim directory and one smolvm for both, as for two users of one machine.
    let b = a.neighbour();
    let alias = |n: u8| alias(32 + n);

    // Home a: `holder` with a service on .0, `quiet` without one on .1.
    let up = a.run(&["up", &spec(&a, "holder", true), "--json"]).json();
    assert_eq!(up["alias"], alias(0).to_string());
    let service_port = up["endpoints"][0]["host_port"].as_u64().unwrap();
    let up = a.run(&["up", &spec(&a, "quiet", false), "--json"]).json();
    assert_eq!(up["alias"], alias(1).to_string());

    let status = a.run(&["net", "status", "--json"]).json();
    assert_eq!(status["pool"], "127.0.40.32/29");
    let holder = row(&status, alias(0));
    assert_eq!(holder["status"], "leased", "{status}");
    assert_eq!(holder["leased_by"], "holder");
    assert_eq!(holder["listening_ports"][0], service_port);
    assert_eq!(holder["foreign_ports"], serde_json::json!([]));
    assert_eq!(row(&status, alias(1))["status"], "leased");
    assert!(status["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["present"] == true));

    // Listeners bottle knows nothing of: one on a free alias, one on a leased one.
    let squatter = TcpListener::bind((alias(2), 0)).unwrap();
    let squatter_port = squatter.local_addr().unwrap().port();
    let intruder = TcpListener::bind((alias(0), 0)).unwrap();
    let intruder_port = intruder.local_addr().unwrap().port();
    let status = a.run(&["net", "status", "--json"]).json();
    let busy = row(&status, alias(2));
    assert_eq!(busy["status"], "busy", "{status}");
    assert_eq!(busy["leased_by"], Value::Null);
    assert_eq!(busy["foreign_ports"], serde_json::json!([squatter_port]));
    let contested = row(&status, alias(0));
    assert_eq!(contested["status"], "busy", "{status}");
    assert_eq!(contested["leased_by"], "holder");
    assert_eq!(
        contested["foreign_ports"],
        serde_json::json!([intruder_port])
    );

    let text = a.run(&["net", "status"]).ok();
    assert!(
        text.starts_with("pool 127.0.40.32/29 (net-linux)\nALIAS "),
        "{text}"
    );
    let l = line(&text, alias(0));
    assert!(l.contains(" busy ") && l.contains(" holder "), "{l:?}");
    assert!(l.contains(&format!("a listener outside bottle on {intruder_port}")));
    let l = line(&text, alias(1));
    assert!(l.contains(" leased ") && l.contains(" quiet "), "{l:?}");
    let l = line(&text, alias(2));
    assert!(
        l.contains(" busy ") && l.contains(&squatter_port.to_string()),
        "{l:?}"
    );
    assert!(line(&text, alias(3)).contains(" free "));

    // Home b sees a's leases as claims of another home, and a bundle record its own runtime
    // keeps (a crash leftover of another home's bottle) as published.
    let a_db = a.bottle_home().join("state.db").display().to_string();
    leftover_bundle(&b, "ghost", alias(3));
    let status = b.run(&["net", "status", "--json"]).json();
    let claimed = row(&status, alias(1));
    assert_eq!(claimed["status"], "claimed", "{status}");
    assert_eq!(claimed["leased_by"], Value::Null);
    assert_eq!(
        claimed["claimed_by"],
        format!("bottle quiet of the home at {a_db}")
    );
    assert_eq!(
        row(&status, alias(0))["status"],
        "busy",
        "listeners come first"
    );
    assert_eq!(
        row(&status, alias(0))["claimed_by"],
        format!("bottle holder of the home at {a_db}")
    );
    let published = row(&status, alias(3));
    assert_eq!(published["status"], "published", "{status}");
    let by = published["published_by"][0].as_str().unwrap();
    assert!(
        by.starts_with("process ") && by.ends_with(" of bottle ghost (another home)"),
        "{by}"
    );
    assert_eq!(
        statuses(&status),
        [
            "busy",
            "claimed",
            "busy",
            "published",
            "free",
            "free",
            "free",
            "free"
        ]
    );
    let text = b.run(&["net", "status"]).ok();
    let l = line(&text, alias(1));
    assert!(
        l.contains(" claimed ") && l.contains("claimed by bottle quiet of the home at"),
        "{l:?}"
    );
    assert!(line(&text, alias(3)).contains(" published "));

    // Leasing agrees: b's first free alias is the one it gets.
    let up = b.run(&["up", &spec(&b, "twin", false), "--json"]).json();
    assert_eq!(up["alias"], alias(4).to_string(), "{status}");
    let status = b.run(&["net", "status", "--json"]).json();
    assert_eq!(row(&status, alias(4))["status"], "leased");
    assert_eq!(row(&status, alias(4))["leased_by"], "twin");
    assert_eq!(
        row(&a.run(&["net", "status", "--json"]).json(), alias(4))["status"],
        "claimed"
    );

    b.run(&["down", "twin"]).ok();
    a.run(&["down", "holder"]).ok();
    a.run(&["down", "quiet"]).ok();
    drop((squatter, intruder));
    std::fs::remove_file(bundle_record(&b, "ghost")).unwrap();
    a.assert_empty();
    b.assert_empty();
}

/// Where the process runtime of `home` keeps the record of `slug`'s bundle.
fn bundle_record(home: &Home, slug: &str) -> std::path::PathBuf {
    home.bottle_home()
        .join("plugins/runtime-process/bundles")
        .join(format!("{slug}.json"))
}

/// Leaves in `home`'s process runtime the record of a bundle on `on` that another home's
/// bottle `slug` started, as a crash leaves it: its service's process is gone.
fn leftover_bundle(home: &Home, slug: &str, on: Ipv4Addr) {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let record = serde_json::json!({
        "slug": slug,
        "instance": "0123456789abcdef",
        "alias": on.to_string(),
        "services": [{
            "name": "web", "pid": pid, "pgid": pid, "start_time": null,
            "port": 8080, "host_port": 8080, "log": "/dev/null",
        }],
    });
    let path = bundle_record(home, slug);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, record.to_string()).unwrap();
}
