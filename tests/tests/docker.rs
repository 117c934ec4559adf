//! The Docker runtime through the real binary, against the real Docker engine: services on
//! the alias only, a failed start that leaves nothing, and `gc` that removes only this
//! home's unowned containers. `scripts/start-docker.sh` starts the engine;
//! `scripts/docker-test-image.sh` builds the image (both run by `scripts/test`).

use std::process::Command;

use bottle_e2e::Home;

const IMAGE: &str = "bottle-test/busybox:1";

fn repo(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

/// Builds the test image if it is missing; Docker must be running.
fn test_image() {
    let status = Command::new(repo("scripts/docker-test-image.sh"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot build {IMAGE}: is Docker running? (scripts/start-docker.sh)"
    );
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Containers and networks labelled as `slug`'s.
fn labelled(slug: &str) -> String {
    let filter = format!("label=io.bottle.slug={slug}");
    docker(&["ps", "-aq", "--filter", &filter])
        + &docker(&["network", "ls", "-q", "--filter", &filter])
}

fn docker_spec(slug: &str, image: &str) -> String {
    format!(
        "name = \"{slug}\"\nvmm = \"sandbox\"\nruntime = \"docker\"\n\n[agent]\n\
         command = [\"sleep\", \"600\"]\n\n[services.web]\nimage = \"{image}\"\n\
         command = [\"httpd\", \"-f\", \"-p\", \"8080\"]\nports = [8080]\n"
    )
}

#[test]
fn a_docker_bundle_answers_on_its_alias_only_and_down_removes_it() {
    test_image();
    let home = Home::new("127.0.9.0/28", "0.8.0", "docker");
    let spec = home.spec("e2e-docker/bottle.toml", &docker_spec("e2e-docker", IMAGE));
    let up = home
        .run(&["up", &spec.display().to_string(), "--json"])
        .json();
    let port = up["endpoints"][0]["host_port"].as_u64().unwrap();
    assert_eq!(up["endpoints"][0]["host_ip"], "127.0.9.0");

    let instance = home.state().instance_id().unwrap();
    let container = format!("bottle-e2e-docker-{}.web", &instance[..8]);
    let published = docker(&["port", &container, "8080/tcp"]);
    assert_eq!(
        published.trim(),
        format!("127.0.9.0:{port}"),
        "published elsewhere too"
    );
    assert!(bottle_e2e::answers(
        "127.0.9.0".parse().unwrap(),
        port as u16
    ));
    assert!(!bottle_e2e::answers(
        "127.0.0.1".parse().unwrap(),
        port as u16
    ));

    let probe = home.run(&["probe", "e2e-docker", "--json"]).json();
    assert!(
        probe.as_array().unwrap().iter().all(|r| r["holds"] == true),
        "{probe}"
    );

    home.run(&["down", "e2e-docker"]).ok();
    assert_eq!(labelled("e2e-docker"), "");
    home.assert_empty();
}

#[test]
fn a_docker_bundle_next_to_a_smolvm_agent_keeps_to_the_alias_and_down_removes_both() {
    test_image();
    // smolvm 0.8.0 can be held to the alias: it drops --allow-cidr for a machine made --from
    // an artifact, and bottle patches the record.
    let home = Home::new("127.0.9.48/28", "0.8.0", "docker");
    let slug = "e2e-smol";
    std::fs::create_dir_all(home.dir.path().join(slug)).unwrap();
    std::fs::write(home.dir.path().join(slug).join("agent.smolmachine"), b"").unwrap();
    let text = docker_spec(slug, IMAGE)
        .replace("vmm = \"sandbox\"", "vmm = \"smolvm\"")
        .replace("[agent]\n", "[agent]\nfrom = \"agent.smolmachine\"\n");
    let spec = home.spec(&format!("{slug}/bottle.toml"), &text);
    let up = home
        .run(&["up", &spec.display().to_string(), "--json"])
        .json();
    assert_eq!(up["alias"], "127.0.9.48");
    let port = up["endpoints"][0]["host_port"].as_u64().unwrap();
    assert_eq!(up["endpoints"][0]["host_ip"], "127.0.9.48");

    let machine = up["machine"]["name"].as_str().unwrap();
    let record = home
        .machine_record(machine)
        .expect("smolvm has the machine");
    let alias_only = serde_json::json!(["127.0.9.48/32"]);
    assert_eq!(record["allowed_cidrs"], alias_only, "{record}");
    let enforced = home.enforced(machine).expect("the machine was started");
    assert_eq!(enforced["allowed_cidrs"], alias_only, "{enforced}");
    assert_eq!(enforced["network"], true);

    let instance = home.state().instance_id().unwrap();
    let network = format!("bottle-{slug}-{}", &instance[..8]);
    let container = format!("{network}.web");
    let published = docker(&["port", &container, "8080/tcp"]);
    assert_eq!(
        published.trim(),
        format!("127.0.9.48:{port}"),
        "published elsewhere too"
    );
    assert!(bottle_e2e::answers(
        "127.0.9.48".parse().unwrap(),
        port as u16
    ));
    let ls = home.run(&["ls", "--json"]).json();
    assert_eq!(ls[0]["status"], "running", "{ls}");

    let named = |name: &str| format!("name=^{name}$");
    let containers = || docker(&["ps", "-aq", "--filter", &named(&container)]);
    let networks = || docker(&["network", "ls", "-q", "--filter", &named(&network)]);
    assert_ne!(containers(), "", "no container named {container}");
    assert_ne!(networks(), "", "no network named {network}");

    home.run(&["down", slug]).ok();
    assert_eq!(labelled(slug), "");
    assert_eq!(containers(), "", "the container is left");
    assert_eq!(networks(), "", "the network is left");
    home.assert_empty();
}

#[test]
fn a_missing_image_fails_the_launch_and_leaves_nothing() {
    test_image();
    let home = Home::new("127.0.9.16/28", "0.8.0", "docker");
    let spec = home.spec(
        "e2e-noimage/bottle.toml",
        &docker_spec("e2e-noimage", "bottle-test/absent:0"),
    );
    let err = home.run(&["up", &spec.display().to_string()]).fails_with(6);
    assert!(
        err.contains("bottle `e2e-noimage`: starting the bundle failed"),
        "{err}"
    );
    assert_eq!(labelled("e2e-noimage"), "");
    home.assert_empty();
}

#[test]
fn gc_removes_this_homes_unowned_containers_only() {
    test_image();
    let home = Home::new("127.0.9.32/28", "0.8.0", "docker");
    let ours = home.state().instance_id().unwrap();
    let run = |slug: &str, instance: &str| {
        docker(&[
            "run",
            "-d",
            "--label",
            "io.bottle.managed=1",
            "--label",
            &format!("io.bottle.slug={slug}"),
            "--label",
            &format!("io.bottle.instance={instance}"),
            IMAGE,
            "sleep",
            "600",
        ])
    };
    run("e2e-orphan", &ours);
    run("e2e-foreign", "another-home");

    let gc = home.run(&["gc"]).ok();
    assert!(
        gc.contains("removed unowned runtime-docker: bundle of e2e-orphan"),
        "{gc}"
    );
    assert_eq!(labelled("e2e-orphan"), "");
    assert_ne!(
        labelled("e2e-foreign"),
        "",
        "another home's container was removed"
    );

    let foreign = docker(&["ps", "-aq", "--filter", "label=io.bottle.slug=e2e-foreign"]);
    for id in foreign.split_whitespace() {
        docker(&["rm", "-f", id]);
    }
}
