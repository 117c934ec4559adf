//! The host side of logging: the callbacks handed to every plugin, which re-emit its events
//! on the host's `tracing` subscriber under the target `plugin::<name>`.
//!
//! `tracing` wants a `'static` callsite per target and level, and plugin names are only known
//! at run time, so one callsite is made (and leaked) per plugin name and level, the first
//! time that plugin logs at that level: a handful per process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use abi_stable::std_types::RStr;
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Level, Metadata};

use crate::ffi::{level, HostLog};

/// The callbacks a plugin gets at load time.
pub(crate) fn host_log() -> HostLog {
    HostLog { enabled, emit }
}

/// The fields of every re-emitted event: the plugin's message, and the plugin's own target
/// (its module path), which the host's target replaces.
const FIELDS: &[&str] = &["message", "origin"];

struct PluginCallsite {
    metadata: OnceLock<Metadata<'static>>,
}

impl Callsite for PluginCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata
            .get()
            .expect("the metadata is set before the callsite is registered")
    }
}

/// The callsite for events of `plugin` at `level`, made on first use.
fn callsite(plugin: &str, level: Level) -> &'static Metadata<'static> {
    static CALLSITES: OnceLock<Mutex<HashMap<(String, Level), &'static Metadata<'static>>>> =
        OnceLock::new();
    let mut callsites = match CALLSITES.get_or_init(Default::default).lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(metadata) = callsites.get(&(plugin.to_owned(), level)) {
        return metadata;
    }
    let site: &'static PluginCallsite = Box::leak(Box::new(PluginCallsite {
        metadata: OnceLock::new(),
    }));
    let target: &'static str = Box::leak(format!("plugin::{plugin}").into_boxed_str());
    let metadata = site.metadata.get_or_init(|| {
        Metadata::new(
            "plugin event",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(FIELDS, Identifier(site)),
            Kind::EVENT,
        )
    });
    tracing_core::callsite::register(site);
    callsites.insert((plugin.to_owned(), level), metadata);
    metadata
}

extern "C" fn enabled(plugin: RStr<'_>, level: u8) -> bool {
    let level = level::from_u8(level);
    if level > tracing_core::LevelFilter::current() {
        return false;
    }
    let metadata = callsite(plugin.as_str(), level);
    tracing_core::dispatcher::get_default(|dispatch| dispatch.enabled(metadata))
}

extern "C" fn emit(plugin: RStr<'_>, level: u8, target: RStr<'_>, message: RStr<'_>) {
    let metadata = callsite(plugin.as_str(), level::from_u8(level));
    let fields = metadata.fields();
    let (Some(message_field), Some(origin_field)) =
        (fields.field("message"), fields.field("origin"))
    else {
        return;
    };
    let message = format_args!("{}", message.as_str());
    let origin = target.as_str();
    let values: [(&_, Option<&dyn Value>); 2] = [
        (&message_field, Some(&message)),
        (&origin_field, Some(&origin)),
    ];
    Event::dispatch(metadata, &fields.value_set(&values));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects `target level message` lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl<S: tracing_core::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            struct Message(String);
            impl tracing_core::field::Visit for Message {
                fn record_debug(
                    &mut self,
                    field: &tracing_core::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            let meta = event.metadata();
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}{}", meta.target(), meta.level(), m.0));
        }
    }

    #[test]
    fn events_are_re_emitted_under_the_plugin_target_and_filtered_by_level() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(lines.clone())
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            let log = host_log();
            let plugin = RStr::from_str("net-test");
            assert!((log.enabled)(plugin, level::WARN));
            assert!(!(log.enabled)(plugin, level::DEBUG));
            (log.emit)(
                plugin,
                level::WARN,
                RStr::from_str("net_test::pool"),
                "alias missing".into(),
            );
        });
        assert_eq!(
            *lines.0.lock().unwrap(),
            ["plugin::net-test WARN message=alias missing origin=\"net_test::pool\""]
        );
    }
}
