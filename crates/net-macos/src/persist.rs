//! A launchd job that re-adds the pool's aliases to `lo0` at every boot, for
//! `bottle net persist`: with it installed, no sudo prompt ever comes.

use bottle_core::AliasPool;

use crate::lo0::add_aliases_script;

/// The job's label, which is also the plist's file name.
pub const LAUNCHD_LABEL: &str = "bottle.lo0-aliases";

/// Where the job is installed: a system daemon, because adding an alias needs root, and
/// daemons run at boot without anyone logging in.
pub const LAUNCHD_PLIST_PATH: &str = "/Library/LaunchDaemons/bottle.lo0-aliases.plist";

/// The property list of a launchd job that adds every alias of `pool` to `lo0` at load, with
/// the same shell line that `ensure_pool` runs under sudo.
///
/// Re-adding an alias that exists is harmless, so the job adds the whole pool.
pub fn launchd_plist(pool: &AliasPool) -> String {
    let aliases: Vec<_> = pool.aliases().collect();
    let mut plist = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" ",
        "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
        "<plist version=\"1.0\">\n",
        "<dict>\n",
    ));
    let mut key = |name: &str, value: &str| {
        plist.push_str(&format!("\t<key>{name}</key>\n\t{value}\n"));
    };
    key(
        "Label",
        &format!("<string>{}</string>", xml_escape(LAUNCHD_LABEL)),
    );
    let arguments = ["/bin/sh", "-c", &add_aliases_script(&aliases)]
        .iter()
        .map(|arg| format!("\t\t<string>{}</string>\n", xml_escape(arg)))
        .collect::<String>();
    key(
        "ProgramArguments",
        &format!("<array>\n{arguments}\t</array>"),
    );
    key("RunAtLoad", "<true/>");
    plist.push_str("</dict>\n</plist>\n");
    plist
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_adds_the_whole_pool_at_load() {
        let pool: AliasPool = "127.0.0.16/31".parse().unwrap();
        assert_eq!(
            launchd_plist(&pool),
            include_str!("../tests/fixtures/launchd-lo0-aliases.plist")
        );
    }

    #[test]
    fn the_path_is_named_after_the_label() {
        assert!(LAUNCHD_PLIST_PATH.ends_with(&format!("/{LAUNCHD_LABEL}.plist")));
    }
}
