//! A bottle's life through the real binary and real plugins: the process runtime for the
//! bundle, the fake smolvm (at a version whose scope bottle can enforce) for the agent.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use bottle_e2e::{first_line, greeting, process_spec, wait_within, Home};

/// A spec of the process runtime with a `.smolmachine` artifact next to it.
fn spec_with_artifact(home: &Home, slug: &str) -> String {
    let dir = home.dir.path().join(slug);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.smolmachine"), b"").unwrap();
    let text = process_spec(slug, 0).replace(
        "[agent]\n",
        "[agent]\nfrom = \"agent.smolmachine\"\nenv = { GREETING = \"hi\" }\n",
    );
    home.spec(&format!("{slug}/bottle.toml"), &text)
        .display()
        .to_string()
}

#[test]
fn up_ls_inspect_down() {
    let home = Home::new("127.0.1.0/28", "0.8.0", "process");
    let spec = spec_with_artifact(&home, "life");

    let up = home.run(&["up", &spec, "--json"]).json();
    assert_eq!(up["slug"], "life");
    let alias: Ipv4Addr = up["alias"].as_str().unwrap().parse().unwrap();
    assert_eq!(alias, Ipv4Addr::new(127, 0, 1, 0));
    let endpoint = &up["endpoints"][0];
    assert_eq!(endpoint["service"], "hello");
    assert_eq!(endpoint["host_ip"], "127.0.1.0");
    let port = endpoint["host_port"].as_u64().unwrap() as u16;
    assert_eq!(greeting(alias, port), "hello from life\n");

    // smolvm 0.8.0 dropped --allow-cidr; what its `start` read is the patched allow-list.
    let machine = up["machine"]["name"].as_str().unwrap();
    assert!(machine.starts_with("bottle-life-"), "{machine}");
    let enforced = home.enforced(machine).expect("the machine was started");
    assert_eq!(
        enforced["allowed_cidrs"],
        serde_json::json!(["127.0.1.0/32"])
    );
    assert_eq!(enforced["network"], true);

    let ls = home.run(&["ls", "--json"]).json();
    assert_eq!(ls[0]["slug"], "life");
    assert_eq!(ls[0]["status"], "running", "{ls}");
    assert_eq!(ls[0]["alias"], "127.0.1.0");

    let table = home.run(&["ls"]).ok();
    assert!(table.starts_with("SLUG"), "{table}");
    assert!(
        table.contains(&format!("hello=127.0.1.0:{port}")),
        "{table}"
    );

    let inspect = home.run(&["inspect", "life"]).ok();
    assert!(inspect.contains("status:    running"), "{inspect}");
    assert!(
        inspect.contains(&format!("machine:   {machine}")),
        "{inspect}"
    );

    let status = home.run(&["net", "status", "--json"]).json();
    let first = &status["aliases"][0];
    assert_eq!(first["leased_by"], "life");
    assert_eq!(first["status"], "leased");

    let down = home.run(&["down", "life"]).ok();
    assert_eq!(down, "removed life\n");
    home.assert_empty();
    assert!(
        !bottle_e2e::answers(alias, port),
        "the service still answers"
    );

    let again = home.run(&["down", "life"]);
    assert_eq!(again.ok(), "", "a second down removes nothing");
    assert!(
        again
            .stderr()
            .contains("no bottle named `life`: nothing to remove"),
        "{}",
        again.stderr()
    );
}

#[test]
fn the_agent_learns_its_bundle_from_its_environment() {
    let home = Home::new("127.0.2.0/28", "1.0.3", "process");
    let spec = spec_with_artifact(&home, "envy");
    // The agent waits for its stdin to close, so that the bottle can be inspected meanwhile.
    let script = "echo \"$BOTTLE_ALIAS $BOTTLE_SERVICE_HELLO $BOTTLE_SERVICE_HELLO_8080 \
                  $GREETING\"; read _; exit 3";
    let mut child = home
        .command(&["run", &spec, "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{line}");

    let inspect = home.run(&["inspect", "envy", "--json"]).json();
    let endpoint = &inspect["endpoints"][0];
    assert_eq!(endpoint["container_port"], 8080, "{inspect}");
    let address = format!(
        "{}:{}",
        endpoint["host_ip"].as_str().unwrap(),
        endpoint["host_port"]
    );
    assert_eq!(fields[0], "127.0.2.0");
    assert_eq!(fields[1], address, "BOTTLE_SERVICE_HELLO");
    assert_eq!(fields[2], address, "BOTTLE_SERVICE_HELLO_8080");
    assert_eq!(fields[3], "hi");
    let port: u16 = endpoint["host_port"].as_u64().unwrap().try_into().unwrap();
    assert_eq!(
        greeting(Ipv4Addr::new(127, 0, 2, 0), port),
        "hello from envy\n"
    );

    drop(child.stdin.take());
    let out = wait_within(child, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(3),
        "the agent's status is passed through: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    home.assert_empty();
}

#[test]
fn down_all_without_bottles_succeeds_and_says_so() {
    let home = Home::new("127.0.12.0/28", "0.8.0", "process");
    let down = home.run(&["down", "--all"]);
    assert_eq!(down.ok(), "", "nothing was removed");
    assert!(
        down.stderr()
            .contains("bottle: no bottles here: nothing to remove"),
        "{}",
        down.stderr()
    );

    // The same once the home has had a bottle.
    let spec = spec_with_artifact(&home, "gone");
    home.run(&["up", &spec]).ok();
    assert_eq!(home.run(&["down", "--all"]).ok(), "removed gone\n");
    let again = home.run(&["down", "--all"]);
    assert_eq!(again.ok(), "");
    assert!(
        again.stderr().contains("nothing to remove"),
        "{}",
        again.stderr()
    );
    home.assert_empty();
}

#[test]
fn up_refuses_a_name_in_use_and_a_bad_spec() {
    let home = Home::new("127.0.3.0/28", "0.8.0", "process");
    let spec = spec_with_artifact(&home, "twice");
    home.run(&["up", &spec]).ok();
    let err = home.run(&["up", &spec]).fails_with(4);
    assert!(
        err.contains("a bottle named `twice` already exists (running)"),
        "{err}"
    );
    assert_eq!(home.bottles().len(), 1, "the running bottle is untouched");

    let bad = home.spec("bad/bottle.toml", "name = \"Bad Name\"\n");
    let err = home.run(&["up", &bad.display().to_string()]).fails_with(3);
    assert!(err.contains("bad/bottle.toml: `name`: expected"), "{err}");

    home.run(&["down", "--all"]).ok();
    home.assert_empty();
}

#[test]
fn a_dead_service_shows_the_bottle_as_degraded() {
    let home = Home::new("127.0.4.0/28", "0.8.0", "process");
    let spec = spec_with_artifact(&home, "frail");
    home.run(&["up", &spec]).ok();
    let pids = home.service_processes();
    assert!(!pids.is_empty());
    for pid in pids {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ls = home.run(&["ls", "--json"]).json();
    assert_eq!(ls[0]["status"], "degraded", "{ls}");
    home.run(&["down", "frail"]).ok();
    home.assert_empty();
}

#[test]
fn plugins_lists_every_first_party_plugin() {
    let home = Home::new("127.0.5.0/28", "0.8.0", "process");
    let plugins = home.run(&["plugins", "--json"]).json();
    let loaded: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "loaded")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "net-linux",
        "net-macos",
        "vmm-smolvm",
        "vmm-sandbox",
        "runtime-docker",
        "runtime-process",
    ] {
        assert!(loaded.contains(&name), "{name} is not loaded: {plugins}");
    }
    let rejected: Vec<_> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] != "loaded")
        .collect();
    assert!(
        rejected.is_empty(),
        "a fresh build rejects nothing: {rejected:?}"
    );
}

#[test]
fn two_homes_on_one_host_keep_apart() {
    let a = Home::new("127.0.10.0/28", "0.8.0", "process");
    // One claim directory and one smolvm for both, as for two users of one machine.
    let b = a.neighbour();

    // No services: nothing listens on the aliases, so only the host-wide claims can keep
    // the second home off the first one's alias.
    let no_services = |home: &Home| {
        let path = spec_with_artifact(home, "twin");
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.find("[services.").unwrap();
        std::fs::write(&path, &text[..cut]).unwrap();
        path
    };
    let spec_a = no_services(&a);
    let spec_b = no_services(&b);
    let up_a = a.run(&["up", &spec_a, "--json"]).json();
    let up_b = b.run(&["up", &spec_b, "--json"]).json();
    assert_eq!(up_a["alias"], "127.0.10.0");
    assert_eq!(up_b["alias"], "127.0.10.1", "the claimed alias was skipped");
    let claims = a.dir.path().join("claims");
    assert!(claims.join("127.0.10.0").is_file() && claims.join("127.0.10.1").is_file());
    assert_ne!(up_a["machine"]["name"], up_b["machine"]["name"]);

    b.run(&["down", "twin"]).ok();
    let ls = a.run(&["ls", "--json"]).json();
    assert_eq!(
        ls[0]["status"], "running",
        "the other home's bottle was harmed: {ls}"
    );
    let gc = b.run(&["gc"]).ok();
    assert_eq!(gc, "nothing to collect\n");
    assert_eq!(a.run(&["ls", "--json"]).json()[0]["status"], "running");

    a.run(&["down", "twin"]).ok();
    a.assert_empty();
}

#[test]
fn an_alias_a_host_process_listens_on_is_never_leased() {
    let home = Home::new("127.0.11.0/28", "0.8.0", "process");
    let squatter = std::net::TcpListener::bind("127.0.11.0:0").unwrap();
    let mapped = std::net::TcpListener::bind("[::ffff:127.0.11.1]:0").unwrap();
    let status = home.run(&["net", "status", "--json"]).json();
    assert_eq!(status["aliases"][0]["status"], "busy", "{status}");
    assert_eq!(status["aliases"][1]["status"], "busy", "{status}");

    let spec = spec_with_artifact(&home, "polite");
    let up = home.run(&["up", &spec, "--json"]).json();
    assert_eq!(up["alias"], "127.0.11.2", "the busy aliases were skipped");
    home.run(&["down", "polite"]).ok();
    home.assert_empty();
    drop((squatter, mapped));
}
