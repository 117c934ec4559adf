//! Many `bottle up` at once, from separate processes: distinct aliases while the pool lasts,
//! then a clean refusal.

use std::collections::BTreeSet;
use std::process::Stdio;

use bottle_e2e::{process_spec, Home};

#[test]
fn sixteen_launches_get_sixteen_aliases_and_the_seventeenth_is_refused() {
    let home = Home::new("127.0.7.0/28", "0.8.0", "process");
    let specs: Vec<String> = (0..17)
        .map(|i| {
            let slug = format!("crowd-{i}");
            let dir = home.dir.path().join(&slug);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("agent.smolmachine"), b"").unwrap();
            let text = process_spec(&slug, 0)
                .replace("[agent]\n", "[agent]\nfrom = \"agent.smolmachine\"\n");
            home.spec(&format!("{slug}/bottle.toml"), &text)
                .display()
                .to_string()
        })
        .collect();
    let children: Vec<_> = specs
        .iter()
        .map(|spec| {
            home.command(&["up", spec, "--json", "--ready-timeout", "120"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    let mut aliases = Vec::new();
    let mut refusals = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => {
                let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                aliases.push(json["alias"].as_str().unwrap().to_owned());
            }
            Some(4) => refusals.push(stderr),
            other => panic!("unexpected exit {other:?}: {stderr}"),
        }
    }
    let distinct: BTreeSet<&String> = aliases.iter().collect();
    assert_eq!(aliases.len(), 16, "refusals: {refusals:?}");
    assert_eq!(distinct.len(), 16, "an alias was given twice: {aliases:?}");
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].contains("every alias of pool 127.0.7.0/28 is taken"),
        "{}",
        refusals[0]
    );
    assert_eq!(
        home.bottles().len(),
        16,
        "the refused launch left no record"
    );

    home.run(&["down", "--all"]).ok();
    home.assert_empty();
}
