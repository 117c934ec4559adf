//! Fault injection through the real binary: each launch step fails in turn, or the launcher
//! is killed with SIGKILL while a step is under way; afterwards nothing may be left: no
//! bottle, lease, machine or service process (after `bottle gc`, for the killed launcher).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bottle_core::state::Step;
use bottle_e2e::{artifacts, first_line, process_spec, processes_where, wait_within, Home};

/// A spec with an artifact, the service listening after `delay` seconds.
fn spec(home: &Home, slug: &str, delay: u32) -> String {
    let dir = home.dir.path().join(slug);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.smolmachine"), b"").unwrap();
    let text =
        process_spec(slug, delay).replace("[agent]\n", "[agent]\nfrom = \"agent.smolmachine\"\n");
    home.spec(&format!("{slug}/bottle.toml"), &text)
        .display()
        .to_string()
}

/// Runs `bottle up` with `fault` in the fake smolvm, expects exit status `code`, and
/// returns stderr after checking that nothing was left behind.
fn up_fails(home: &Home, slug: &str, fault: &str, code: i32) -> String {
    let spec = spec(home, slug, 0);
    let mut cmd = home.command(&["up", &spec, "--ready-timeout", "3"]);
    cmd.env("FAKE_SMOLVM_FAIL", fault);
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{fault}: {stderr}");
    home.assert_empty();
    stderr
}

#[test]
fn a_failing_machine_create_leaves_nothing() {
    let home = Home::new("127.0.6.0/28", "0.8.0", "process");
    let err = up_fails(&home, "nocreate", "create", 6);
    assert!(
        err.contains("bottle `nocreate`: creating the machine failed"),
        "{err}"
    );
}

#[test]
fn a_failing_machine_start_leaves_nothing() {
    let home = Home::new("127.0.6.16/28", "0.8.0", "process");
    let err = up_fails(&home, "nostart", "start", 6);
    assert!(
        err.contains("bottle `nostart`: starting the machine failed"),
        "{err}"
    );
}

#[test]
fn a_patch_that_does_not_stick_stops_the_launch() {
    let home = Home::new("127.0.6.32/28", "0.8.0", "process");
    let err = up_fails(&home, "slippery", "patch-revert", 6);
    assert!(
        err.contains("bottle `slippery`: creating the machine failed"),
        "{err}"
    );
    // `delete` removes what `start` wrote down, so ask the fake's log of calls instead.
    let calls = std::fs::read_to_string(home.smolvm_data().join("fake/calls.log")).unwrap();
    assert!(calls.contains("\"create\""), "{calls}");
    assert!(
        !calls.contains("\"start\""),
        "the machine was started: {calls}"
    );
}

#[test]
fn a_service_that_never_answers_leaves_nothing() {
    let home = Home::new("127.0.6.48/28", "0.8.0", "process");
    let spec = spec(&home, "mute", 600);
    let err = home
        .run(&["up", &spec, "--ready-timeout", "2"])
        .fails_with(6);
    assert!(
        err.contains("bottle `mute`: starting the bundle failed"),
        "{err}"
    );
    home.assert_empty();
}

#[test]
fn a_vmm_that_cannot_enforce_the_scope_is_refused_before_any_machine_exists() {
    for version in ["1.0.4", "1.9.2", "nonsense"] {
        let home = Home::new("127.0.6.64/28", version, "process");
        let spec = spec(&home, "refused", 0);
        let err = home.run(&["up", &spec]).fails_with(5);
        assert!(
            err.contains("bottle `refused`: probing the VMM failed"),
            "{version}: {err}"
        );
        assert!(
            err.contains(version),
            "the message names the version: {err}"
        );
        home.assert_empty();
        let calls =
            std::fs::read_to_string(home.smolvm_data().join("fake/calls.log")).unwrap_or_default();
        assert!(
            !calls.contains("create"),
            "{version}: smolvm was asked to create: {calls}"
        );
    }
}

/// A `smolvm` that sleeps before the command named by `SLOW_AT` (`probe`, `create` or
/// `start`), then runs the fake: it holds a launch inside that step.
fn slow_smolvm(home: &Home) -> PathBuf {
    let path = home.dir.path().join("slow-smolvm");
    let script = format!(
        "#!/bin/sh\nexport SLOWED_FOR={}\ncase \"$SLOW_AT $1 $2\" in\n  \"probe --version\"*|\
         \"create machine create\"|\"start machine start\") sleep 60 ;;\nesac\nexec {} \"$@\"\n",
        home.dir.path().display(),
        artifacts().fake_smolvm.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Starts `bottle up` in a process group of its own, waits until the launch is inside
/// `step`, and kills the whole group (the launcher and the command it was waiting for) with
/// SIGKILL, as a crash or `kill -9` of a terminal job would.
fn kill_during(home: &Home, slug: &str, step: Step, slow_at: &str, delay: u32) {
    let spec = spec(home, slug, delay);
    let mut child = home
        .command(&["up", &spec, "--ready-timeout", "120"])
        .env("SLOW_AT", slow_at)
        .process_group(0)
        .spawn()
        .unwrap();
    home.wait_for_step(slug, step, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let group = format!("-{}", child.id());
    std::process::Command::new("kill")
        .args(["-9", "--", &group])
        .status()
        .unwrap();
    child.wait().unwrap();
    // The smolvm command the launcher waited for runs in a group of its own; it goes too, as
    // in a crash of the whole session, rather than wake up after the test and write into a
    // home that is gone. Only the slowed smolvm carries SLOWED_FOR; the bundle's services,
    // which `bottle gc` must find, do not.
    let slowed = format!("SLOWED_FOR={}", home.dir.path().display());
    for pid in processes_where(|var| var == slowed) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

#[test]
fn gc_finishes_what_a_killed_launcher_left_at_every_step() {
    let home = Home::new("127.0.6.80/28", "0.8.0", "process");
    home.write_config(&slow_smolvm(&home), "process");
    let cases = [
        ("probe", Step::ProbingVmm, "probe", 0),
        ("bundle", Step::StartingBundle, "", 60),
        ("create", Step::CreatingMachine, "create", 0),
        ("start", Step::StartingMachine, "start", 0),
    ];
    for (slug, step, slow_at, delay) in cases {
        kill_during(&home, slug, step, slow_at, delay);

        let ls = home.run(&["ls", "--json"]).json();
        assert_eq!(ls[0]["slug"], slug, "{ls}");
        assert_eq!(ls[0]["status"], "half-done", "{ls}");
        let up_again = home.run(&["up", &spec(&home, "other", 0), "--json"]);
        assert!(up_again
            .stderr()
            .contains(&format!("bottle `{slug}` was left half-done")));
        home.run(&["down", "other"]).ok();

        let gc = home.run(&["gc"]).ok();
        assert!(
            gc.contains(&format!("finished removing half-done bottle {slug}")),
            "{gc}"
        );
        home.assert_empty();
    }
}

#[test]
fn gc_removes_this_homes_unrecorded_machines_only() {
    let home = Home::new("127.0.6.96/28", "1.0.3", "process");
    let instance = home.state().instance_id().unwrap();
    let ours = format!("bottle-ghost-{}", &instance[..8]);
    let theirs = "bottle-ghost-0000beef".to_owned();
    for name in [&ours, &theirs] {
        let status = std::process::Command::new(&artifacts().fake_smolvm)
            .args(["machine", "create", "--name", name, "-I", "alpine"])
            .env("HOME", home.user_home())
            .env("FAKE_SMOLVM_VERSION", "1.0.3")
            .status()
            .unwrap();
        assert!(status.success());
    }
    let gc = home.run(&["gc"]).ok();
    assert!(
        gc.contains(&format!("removed unowned vmm-smolvm: machine {ours}")),
        "{gc}"
    );
    assert_eq!(
        home.machines(),
        vec![theirs],
        "only this home's machine is removed"
    );
}

#[test]
fn ctrl_c_during_a_launch_rolls_it_back() {
    let home = Home::new("127.0.6.112/28", "0.8.0", "process");
    let spec = spec(&home, "hasty", 3);
    // `bottle run` too: stopped before its agent ran, it was interrupted, not failing.
    for args in [vec!["up", &spec], vec!["run", &spec, "--", "true"]] {
        let child = home.command(&args).stderr(Stdio::piped()).spawn().unwrap();
        home.wait_for_step("hasty", Step::StartingBundle, Duration::from_secs(30));
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{}: {stderr}", args[0]);
        assert!(
            stderr.contains("bottle `hasty`: stopped before creating the machine"),
            "{stderr}"
        );
        home.assert_empty();
    }
}

#[test]
fn ctrl_c_while_the_agent_runs_removes_the_bottle() {
    let home = Home::new("127.0.6.144/28", "0.8.0", "process");
    let text = process_spec("attached", 0).replace("[agent]\n", "vmm = \"sandbox\"\n\n[agent]\n");
    let sandboxed = home
        .spec("attached/bottle.toml", &text)
        .display()
        .to_string();
    // The fake smolvm ends a command when its machine stops, and exits 1: bottle still says
    // it was interrupted.
    let in_smolvm = spec(&home, "attached", 0);
    // A terminal's Ctrl-C reaches bottle's whole process group, agent included; `kill`
    // reaches bottle alone, and the agent would sleep on if bottle only waited for it.
    let cases = [
        (&sandboxed, false),
        (&sandboxed, true),
        (&in_smolvm, false),
        (&in_smolvm, true),
    ];
    for (spec, to_the_group) in cases {
        let mut child = home
            .command(&["run", spec, "--", "sh", "-c", "echo attached; sleep 60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let line = first_line(&mut child);
        assert_eq!(line, "attached\n", "the agent did not start");
        let target = if to_the_group {
            format!("-{}", child.id())
        } else {
            child.id().to_string()
        };
        std::process::Command::new("kill")
            .args(["-INT", "--", &target])
            .status()
            .unwrap();
        let out = wait_within(child, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{target}: {stderr}");
        assert!(
            stderr.contains("bottle `attached`: interrupted while its agent ran"),
            "{stderr}"
        );
        home.assert_empty();
    }
}

#[test]
fn gc_removes_the_bottle_of_a_killed_bottle_run() {
    let home = Home::new("127.0.6.128/28", "0.8.0", "process");
    let spec = spec(&home, "orphaned", 0);
    let mut child = home
        .command(&["run", &spec, "--", "sleep", "60"])
        .process_group(0)
        .spawn()
        .unwrap();
    home.wait_for_step("orphaned", Step::Running, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let group = format!("-{}", child.id());
    std::process::Command::new("kill")
        .args(["-9", "--", &group])
        .status()
        .unwrap();
    child.wait().unwrap();

    let ls = home.run(&["ls", "--json"]).json();
    assert_eq!(ls[0]["status"], "half-done", "{ls}");
    let gc = home.run(&["gc"]).ok();
    assert!(
        gc.contains("finished removing half-done bottle orphaned"),
        "{gc}"
    );
    home.assert_empty();
}
