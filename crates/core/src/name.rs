//! The names users give to bottles (slugs) and to their services.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest slug: a DNS label, less room for the `bottle-` prefix of derived names.
pub const MAX_SLUG_LEN: usize = 48;

/// Why a slug or a service name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {what}: expected {rule}")]
pub struct NameError {
    pub input: String,
    pub what: &'static str,
    pub rule: &'static str,
}

const LABEL_RULE: &str = "1 to 48 characters of a-z, 0-9 and '-', starting with a letter and not \
                          ending with '-'";

fn check_label(input: &str, what: &'static str) -> Result<(), NameError> {
    let bytes = input.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_SLUG_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            input: input.to_owned(),
            what,
            rule: LABEL_RULE,
        })
    }
}

macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                check_label(s, $what)?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                check_label(&s, $what)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_type!(
    /// A bottle's name, unique on the host; it also names the bottle's network, containers
    /// and machine (`bottle-<slug>`), so it follows the rules of a DNS label.
    Slug,
    "bottle name"
);

label_type!(
    /// A service's name within its bottle, as written under `[services.NAME]` in the spec.
    ServiceName,
    "service name"
);

impl Slug {
    /// The name of what the bottle owns in a container engine: its Docker network and the
    /// prefix of its containers. Engines find them by label, not by this name.
    pub fn resource_name(&self) -> String {
        format!("bottle-{}", self.0)
    }

    /// The name of the bottle's machine: `bottle-<slug>-<home>`, where `<home>` is the start
    /// of the home's instance id, so that two bottle homes sharing one VMM (two users, or a
    /// test suite) never name, and so never remove, each other's machines.
    pub fn machine_name(&self, instance: &str) -> String {
        let home: String = instance.chars().take(8).collect();
        format!("bottle-{}-{home}", self.0)
    }

    /// The slug of a machine named by [`Slug::machine_name`] for this `instance`; `None` for
    /// any other name, another home's machines included.
    pub fn from_machine_name(name: &str, instance: &str) -> Option<Slug> {
        let home: String = instance.chars().take(8).collect();
        let slug = name
            .strip_prefix("bottle-")?
            .strip_suffix(&format!("-{home}"))?;
        slug.parse().ok()
    }
}

impl ServiceName {
    /// The suffix of the agent's environment variable for this service: upper case, with
    /// `_` for `-` (`BOTTLE_SERVICE_<SUFFIX>`).
    pub fn env_suffix(&self) -> String {
        self.0.to_ascii_uppercase().replace('-', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label_like_slugs_are_accepted() {
        for ok in ["a", "review-bot", "agent2", "a-b-c"] {
            assert_eq!(ok.parse::<Slug>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_rule() {
        for bad in [
            "",
            "Review",
            "2bots",
            "bot-",
            "bot_1",
            "bot.x",
            &"a".repeat(49),
        ] {
            let err = bad.parse::<Slug>().unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("starting with a letter"), "{err}");
        }
    }

    #[test]
    fn derived_names() {
        let slug: Slug = "review-bot".parse().unwrap();
        assert_eq!(slug.resource_name(), "bottle-review-bot");
        assert_eq!(
            slug.machine_name("0123456789abcdef"),
            "bottle-review-bot-01234567"
        );
        let svc: ServiceName = "web-ui".parse().unwrap();
        assert_eq!(svc.env_suffix(), "WEB_UI");
    }
}
