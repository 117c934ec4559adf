//! `bottle net persist` on Linux, through the real binary and the real net-linux plugin:
//! nothing to persist, said plainly, in text and in JSON, and nothing done.
#![cfg(target_os = "linux")]

use bottle_e2e::Home;

const POOL: &str = "127.0.51.0/28";

const REASON: &str = "Linux routes all of 127.0.0.0/8 to lo at every boot: the pool's aliases \
                      need no setup to survive a reboot";

#[test]
fn on_linux_there_is_nothing_to_persist_and_it_says_why() {
    let home = Home::new(POOL, "0.8.0", "process");
    for args in [&["net", "persist"][..], &["net", "persist", "--yes"]] {
        let run = home.run(args);
        let stdout = run.ok();
        assert_eq!(
            stdout,
            format!("pool {POOL} (net-linux)\nnothing to persist: {REASON}\n"),
            "`bottle {}`",
            run.args
        );
        assert_eq!(run.stderr(), "", "`bottle {}`", run.args);
    }
}

#[test]
fn the_json_plan_names_the_pool_the_plugin_and_the_reason() {
    let home = Home::new(POOL, "0.8.0", "process");
    let run = home.run(&["net", "persist", "--json"]);
    assert_eq!(
        run.json(),
        serde_json::json!({
            "pool": POOL,
            "net_plugin": "net-linux",
            "plan": {"action": "not_needed", "reason": REASON},
        })
    );
    assert_eq!(run.stderr(), "");
}
