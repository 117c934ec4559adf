//! The plugin side of logging: a `tracing` subscriber that forwards every event to the host,
//! and a panic hook that keeps panics off stderr.
//!
//! A plugin library carries its own copy of `tracing` and so its own global dispatcher,
//! which nothing on the host side can see; this subscriber is installed there when the host
//! loads the plugin. Spans are not forwarded: the host sees each event with its fields
//! folded into the message.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::std_types::RStr;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata, Subscriber};

use crate::ffi::{level, HostLog};

thread_local! {
    /// Where the last panic on this thread happened, for the error that reports it.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the forwarding subscriber and the panic hook. A second call (the same library
/// loaded again) changes nothing: the first subscriber already forwards to the same host.
pub(crate) fn install(plugin: &'static str, host: HostLog) {
    let forwarder = Forwarder {
        plugin,
        host,
        next_span: AtomicU64::new(1),
    };
    if tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(forwarder)).is_ok()
    {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| l.to_string());
            tracing::debug!(at = location.as_deref().unwrap_or("unknown"), "{info}");
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
        }));
    }
}

/// The location of the panic this thread last reported, if the hook saw it.
pub(crate) fn take_panic_location() -> Option<String> {
    PANIC_LOCATION.with(|cell| cell.borrow_mut().take())
}

struct Forwarder {
    plugin: &'static str,
    host: HostLog,
    next_span: AtomicU64,
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The host's filter can change after the plugin was loaded (a test installs its own
        // subscriber), so ask it on every event rather than caching one answer per callsite.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && (self.host.enabled)(RStr::from_str(self.plugin), level::to_u8(metadata.level()))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        (self.host.emit)(
            RStr::from_str(self.plugin),
            level::to_u8(meta.level()),
            RStr::from_str(meta.target()),
            RStr::from_str(&text.finish()),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's fields as one line: the message, then ` key=value` for every other field.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        let mut line = self.message;
        line.push_str(&self.fields);
        line
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_message() {
        use tracing_core::field::Value;

        struct Cs;
        impl tracing_core::Callsite for Cs {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        static CS: Cs = Cs;
        static META: Metadata<'static> = tracing_core::metadata! {
            name: "test",
            target: "t",
            level: tracing_core::Level::INFO,
            fields: &["message", "service", "port"],
            callsite: &CS,
            kind: tracing_core::metadata::Kind::EVENT,
        };
        let fields = META.fields();
        let [message, service, port] = ["message", "service", "port"]
            .map(|n| fields.field(n).expect("the field is declared above"));
        let args = format_args!("service started");
        let values: [(&Field, Option<&dyn Value>); 3] = [
            (&message, Some(&args)),
            (&service, Some(&"web")),
            (&port, Some(&8080u16)),
        ];
        let set = fields.value_set(&values);
        let mut text = Text::default();
        set.record(&mut text);
        assert_eq!(text.finish(), "service started service=\"web\" port=8080");
    }
}
