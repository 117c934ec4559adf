//! The plugin side of the boundary: adapters that turn a core implementation into an FFI
//! object, the root module built from a plugin's description, and
//! [`export_plugin!`](crate::export_plugin).
//!
//! Every call that enters the plugin goes through [`guard`], which catches panics, so that
//! a panic never unwinds into the host (it would abort it) and comes back as an error of
//! kind [`ErrorKind::Panicked`].

use std::any::Any;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString};
use bottle_core::{
    AgentSpec, AliasPool, BackendError, BundleLaunchSpec, BundleRuntime, EgressPolicy, ErrorKind,
    ExecStdio, Machine, NetScoper, ServiceName, Slug, VmmBackend,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::ffi::{
    FfiBundleRuntime, FfiBundleRuntimeBox, FfiBundleRuntime_TO, FfiError, FfiManifest,
    FfiNetScoper, FfiNetScoperBox, FfiNetScoper_TO, FfiResult, FfiVmmBackend, FfiVmmBackendBox,
    FfiVmmBackend_TO, HostLog, PluginMod, PluginModRef,
};
use crate::{plugin_log, PluginKind, PLUGIN_API_VERSION};

/// Exports a plugin from a `cdylib` crate: its root module, its manifest and the plugin API
/// version it was built against.
///
/// ```ignore
/// bottle_plugin_api::export_plugin!(
///     net: name = "net-linux", os = ["linux"], new = LinuxNetScoper::from_settings
/// );
/// ```
///
/// The kind is `net`, `vmm` or `runtime`; `new` is a function
/// `fn(&serde_json::Value) -> Result<T, BackendError>` where `T` implements the kind's trait.
/// `os` lists the systems the plugin supports (`"linux"`, `"macos"`). Use it once per crate,
/// at module level.
#[macro_export]
macro_rules! export_plugin {
    ($kind:ident: name = $name:literal, os = [$($os:literal),+ $(,)?], new = $new:expr $(,)?) => {
        $crate::export_plugin!(
            @api_version = $crate::PLUGIN_API_VERSION,
            $kind: name = $name, os = [$($os),+], new = $new
        );
    };
    // Exports a manifest claiming another plugin API version; only for the loader's tests.
    (@api_version = $api:expr,
     $kind:ident: name = $name:literal, os = [$($os:literal),+], new = $new:expr) => {
        const _: () = {
            const _: () = $crate::export::check_manifest($name, &[$($os),+]);

            pub struct BottlePlugin;

            impl $crate::export::Export for BottlePlugin {
                const NAME: &'static str = $name;
                const OS: &'static [&'static str] = &[$($os),+];
                const VERSION: &'static str = env!("CARGO_PKG_VERSION");
                const API_VERSION: u32 = $api;
                $crate::export_plugin!(@constructor $kind, $new);
            }

            // The symbol abi_stable's loader looks up; `export::tests` checks the name.
            // SAFETY: the name is abi_stable's own for a library's root module header; a
            // library exports it once, from this macro.
            #[unsafe(no_mangle)]
            #[allow(non_upper_case_globals)]
            pub static _1as_0lib_1header_0root_bmodule_bloader:
                $crate::abi_stable::library::LibHeader =
                $crate::export::lib_header::<BottlePlugin>();

            // SAFETY: a name of bottle's own, exported once per library, by this macro.
            #[unsafe(no_mangle)]
            pub static BOTTLE_PLUGIN_API_VERSION: u32 =
                <BottlePlugin as $crate::export::Export>::API_VERSION;
        };
    };
    (@constructor net, $new:expr) => {
        const KIND: $crate::PluginKind = $crate::PluginKind::Net;
        fn new_net(
            settings: &$crate::serde_json::Value,
        ) -> ::std::result::Result<
            ::std::boxed::Box<dyn $crate::bottle_core::NetScoper>,
            $crate::bottle_core::BackendError,
        > {
            $crate::export::boxed_net($new(settings))
        }
    };
    (@constructor vmm, $new:expr) => {
        const KIND: $crate::PluginKind = $crate::PluginKind::Vmm;
        fn new_vmm(
            settings: &$crate::serde_json::Value,
        ) -> ::std::result::Result<
            ::std::boxed::Box<dyn $crate::bottle_core::VmmBackend>,
            $crate::bottle_core::BackendError,
        > {
            $crate::export::boxed_vmm($new(settings))
        }
    };
    (@constructor runtime, $new:expr) => {
        const KIND: $crate::PluginKind = $crate::PluginKind::Runtime;
        fn new_runtime(
            settings: &$crate::serde_json::Value,
        ) -> ::std::result::Result<
            ::std::boxed::Box<dyn $crate::bottle_core::BundleRuntime>,
            $crate::bottle_core::BackendError,
        > {
            $crate::export::boxed_runtime($new(settings))
        }
    };
}

/// A plugin as [`export_plugin!`](crate::export_plugin) describes it; only the macro
/// implements it.
pub trait Export: 'static {
    const NAME: &'static str;
    const KIND: PluginKind;
    const OS: &'static [&'static str];
    const VERSION: &'static str;
    const API_VERSION: u32 = PLUGIN_API_VERSION;

    fn new_net(_settings: &Value) -> Result<Box<dyn NetScoper>, BackendError> {
        Err(wrong_kind(Self::NAME, Self::KIND, PluginKind::Net))
    }

    fn new_vmm(_settings: &Value) -> Result<Box<dyn VmmBackend>, BackendError> {
        Err(wrong_kind(Self::NAME, Self::KIND, PluginKind::Vmm))
    }

    fn new_runtime(_settings: &Value) -> Result<Box<dyn BundleRuntime>, BackendError> {
        Err(wrong_kind(Self::NAME, Self::KIND, PluginKind::Runtime))
    }
}

fn wrong_kind(name: &str, is: PluginKind, asked: PluginKind) -> BackendError {
    BackendError::new(
        ErrorKind::NotSupported,
        format!("plugin `{name}` is a {is} plugin, not a {asked} plugin"),
    )
}

/// Boxes what a net plugin's `new` built; a compile error here names the missing trait.
pub fn boxed_net<T: NetScoper + 'static>(
    built: Result<T, BackendError>,
) -> Result<Box<dyn NetScoper>, BackendError> {
    built.map(|t| Box::new(t) as Box<dyn NetScoper>)
}

/// Boxes what a VMM plugin's `new` built.
pub fn boxed_vmm<T: VmmBackend + 'static>(
    built: Result<T, BackendError>,
) -> Result<Box<dyn VmmBackend>, BackendError> {
    built.map(|t| Box::new(t) as Box<dyn VmmBackend>)
}

/// Boxes what a runtime plugin's `new` built.
pub fn boxed_runtime<T: BundleRuntime + 'static>(
    built: Result<T, BackendError>,
) -> Result<Box<dyn BundleRuntime>, BackendError> {
    built.map(|t| Box::new(t) as Box<dyn BundleRuntime>)
}

/// Refuses, at compile time, a plugin name or OS list that the host could not match.
pub const fn check_manifest(name: &str, os: &[&str]) {
    let bytes = name.as_bytes();
    assert!(!bytes.is_empty(), "a plugin name must not be empty");
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        assert!(
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-',
            "a plugin name is made of a-z, 0-9 and '-'"
        );
        i += 1;
    }
    let mut j = 0;
    while j < os.len() {
        assert!(
            const_eq(os[j], "linux") || const_eq(os[j], "macos"),
            "os must list \"linux\" or \"macos\", as std::env::consts::OS names them"
        );
        j += 1;
    }
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The header abi_stable's loader reads first, pointing at the root module's constructor.
pub const fn lib_header<P: Export>() -> LibHeader {
    // SAFETY: `erased_root` returns what `__call_root_module_loader` makes of a
    // `PluginModRef`: that module's prefix reference, erased, as `from_constructor` requires
    // for `M = PluginModRef`.
    unsafe { LibHeader::from_constructor::<PluginModRef>(erased_root::<P>, CheckTypeLayout::Yes) }
}

extern "C" fn erased_root<P: Export>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<P>)
}

fn root_module<P: Export>() -> PluginModRef {
    PluginMod {
        manifest: manifest::<P>,
        init_logging: init_logging::<P>,
        new_net: new_net::<P>,
        new_vmm: new_vmm::<P>,
        new_runtime: new_runtime::<P>,
    }
    .leak_into_prefix()
}

extern "C" fn manifest<P: Export>() -> FfiManifest {
    FfiManifest {
        name: P::NAME.into(),
        kind: P::KIND.as_str().into(),
        version: P::VERSION.into(),
        api_version: P::API_VERSION,
        os: P::OS.iter().map(|os| RString::from(*os)).collect(),
    }
}

extern "C" fn init_logging<P: Export>(log: HostLog) {
    // Installing a subscriber cannot panic in practice; a panic here must still not unwind
    // into the host.
    let _ = catch_unwind(|| plugin_log::install(P::NAME, log));
}

extern "C" fn new_net<P: Export>(settings: RStr<'_>) -> RResult<FfiNetScoperBox, FfiError> {
    construct(P::NAME, settings, P::new_net)
        .map(|inner| FfiNetScoper_TO::from_value(Exported::new(P::NAME, inner), TD_Opaque))
}

extern "C" fn new_vmm<P: Export>(settings: RStr<'_>) -> RResult<FfiVmmBackendBox, FfiError> {
    construct(P::NAME, settings, P::new_vmm)
        .map(|inner| FfiVmmBackend_TO::from_value(Exported::new(P::NAME, inner), TD_Opaque))
}

extern "C" fn new_runtime<P: Export>(settings: RStr<'_>) -> RResult<FfiBundleRuntimeBox, FfiError> {
    construct(P::NAME, settings, P::new_runtime)
        .map(|inner| FfiBundleRuntime_TO::from_value(Exported::new(P::NAME, inner), TD_Opaque))
}

fn construct<T>(
    plugin: &str,
    settings: RStr<'_>,
    new: fn(&Value) -> Result<T, BackendError>,
) -> RResult<T, FfiError> {
    let built = catch_unwind(AssertUnwindSafe(|| {
        let settings: Value = arg(settings, "settings")?;
        new(&settings)
    }));
    match built {
        Ok(Ok(inner)) => ROk(inner),
        Ok(Err(err)) => RErr(err.into()),
        Err(payload) => RErr(panicked(plugin, "new", payload).into()),
    }
}

/// Runs one call into the plugin: decodes nothing itself, encodes the result as JSON, and
/// turns a panic into an error.
pub fn guard<T: Serialize>(
    plugin: &str,
    call: &str,
    f: impl FnOnce() -> Result<T, BackendError>,
) -> FfiResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| f().and_then(|value| to_json(&value))));
    match outcome {
        Ok(Ok(json)) => ROk(json.into()),
        Ok(Err(err)) => RErr(err.into()),
        Err(payload) => RErr(panicked(plugin, call, payload).into()),
    }
}

fn panicked(plugin: &str, call: &str, payload: Box<dyn Any + Send>) -> BackendError {
    let what = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    };
    let mut message = format!("plugin `{plugin}` panicked in `{call}`: {what}");
    if let Some(location) = plugin_log::take_panic_location() {
        message.push_str(&format!(" (at {location})"));
    }
    BackendError::new(ErrorKind::Panicked, message)
}

fn to_json<T: Serialize>(value: &T) -> Result<String, BackendError> {
    serde_json::to_string(value).map_err(|e| {
        BackendError::new(ErrorKind::Other, "cannot encode a result for the host").with_cause(&e)
    })
}

/// Decodes one JSON argument the host sent.
fn arg<T: DeserializeOwned>(json: RStr<'_>, what: &str) -> Result<T, BackendError> {
    serde_json::from_str(json.as_str()).map_err(|e| {
        BackendError::new(
            ErrorKind::InvalidInput,
            format!("cannot decode the {what} from the host"),
        )
        .with_cause(&e)
    })
}

/// A core implementation behind an FFI mirror. Its drop is guarded too: the host drops it
/// through an `extern "C"` function, where a panic would abort.
struct Exported<B: ?Sized> {
    plugin: &'static str,
    inner: ManuallyDrop<Box<B>>,
}

impl<B: ?Sized> Exported<B> {
    fn new(plugin: &'static str, inner: Box<B>) -> Self {
        Exported {
            plugin,
            inner: ManuallyDrop::new(inner),
        }
    }

    fn call<T: Serialize>(
        &self,
        call: &str,
        f: impl FnOnce(&B) -> Result<T, BackendError>,
    ) -> FfiResult {
        guard(self.plugin, call, || f(&self.inner))
    }
}

impl<B: ?Sized> Drop for Exported<B> {
    fn drop(&mut self) {
        let inner = &mut self.inner;
        // SAFETY: `inner` is dropped here once and never used again: this is `Exported`'s
        // own drop, and nothing else drops the field.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(inner) }));
        if dropped.is_err() {
            tracing::error!(
                plugin = self.plugin,
                "a plugin object panicked while dropped"
            );
        }
    }
}

impl FfiNetScoper for Exported<dyn NetScoper> {
    fn name(&self) -> FfiResult {
        self.call("name", |b| Ok(b.name()))
    }

    fn describe(&self) -> FfiResult {
        self.call("describe", |b| b.describe())
    }

    fn ensure_pool(&self, pool: RStr<'_>) -> FfiResult {
        self.call("ensure_pool", |b| {
            b.ensure_pool(&arg::<AliasPool>(pool, "pool")?)
        })
    }

    fn pool_status(&self, pool: RStr<'_>) -> FfiResult {
        self.call("pool_status", |b| {
            b.pool_status(&arg::<AliasPool>(pool, "pool")?)
        })
    }

    fn listeners_on(&self, pool: RStr<'_>) -> FfiResult {
        self.call("listeners_on", |b| {
            b.listeners_on(&arg::<AliasPool>(pool, "pool")?)
        })
    }

    fn persist_plan(&self, pool: RStr<'_>) -> FfiResult {
        self.call("persist_plan", |b| {
            b.persist_plan(&arg::<AliasPool>(pool, "pool")?)
        })
    }

    fn persist(&self, pool: RStr<'_>) -> FfiResult {
        self.call("persist", |b| b.persist(&arg::<AliasPool>(pool, "pool")?))
    }
}

impl FfiVmmBackend for Exported<dyn VmmBackend> {
    fn name(&self) -> FfiResult {
        self.call("name", |b| Ok(b.name()))
    }

    fn describe(&self) -> FfiResult {
        self.call("describe", |b| b.describe())
    }

    fn probe(&self) -> FfiResult {
        self.call("probe", |b| b.probe())
    }

    fn create(&self, agent: RStr<'_>, policy: RStr<'_>) -> FfiResult {
        self.call("create", |b| {
            let agent: AgentSpec = arg(agent, "agent spec")?;
            let policy: EgressPolicy = arg(policy, "egress policy")?;
            b.create(&agent, &policy)
        })
    }

    fn effective_policy(&self, machine: RStr<'_>) -> FfiResult {
        self.call("effective_policy", |b| {
            b.effective_policy(&machine_arg(machine)?)
        })
    }

    fn start(&self, machine: RStr<'_>) -> FfiResult {
        self.call("start", |b| b.start(&machine_arg(machine)?))
    }

    fn stop(&self, machine: RStr<'_>) -> FfiResult {
        self.call("stop", |b| b.stop(&machine_arg(machine)?))
    }

    fn remove(&self, machine: RStr<'_>) -> FfiResult {
        self.call("remove", |b| b.remove(&machine_arg(machine)?))
    }

    fn status(&self, machine: RStr<'_>) -> FfiResult {
        self.call("status", |b| b.status(&machine_arg(machine)?))
    }

    fn exec(&self, machine: RStr<'_>, command: RStr<'_>, stdio: RStr<'_>) -> FfiResult {
        self.call("exec", |b| {
            let command: Vec<String> = arg(command, "command")?;
            let stdio: ExecStdio = arg(stdio, "stdio")?;
            b.exec(&machine_arg(machine)?, &command, stdio)
        })
    }

    fn list_machines(&self) -> FfiResult {
        self.call("list_machines", |b| b.list_machines())
    }
}

fn machine_arg(json: RStr<'_>) -> Result<Machine, BackendError> {
    arg(json, "machine")
}

impl FfiBundleRuntime for Exported<dyn BundleRuntime> {
    fn name(&self) -> FfiResult {
        self.call("name", |b| Ok(b.name()))
    }

    fn describe(&self) -> FfiResult {
        self.call("describe", |b| b.describe())
    }

    fn start_bundle(&self, spec: RStr<'_>) -> FfiResult {
        self.call("start_bundle", |b| {
            b.start_bundle(&arg::<BundleLaunchSpec>(spec, "spec")?)
        })
    }

    fn host_port(&self, slug: RStr<'_>, service: RStr<'_>, container_port: u16) -> FfiResult {
        self.call("host_port", |b| {
            let slug: Slug = arg(slug, "slug")?;
            let service: ServiceName = arg(service, "service name")?;
            b.host_port(&slug, &service, container_port)
        })
    }

    fn stop_bundle(&self, slug: RStr<'_>) -> FfiResult {
        self.call("stop_bundle", |b| {
            b.stop_bundle(&arg::<Slug>(slug, "slug")?)
        })
    }

    fn list_owned(&self) -> FfiResult {
        self.call("list_owned", |b| b.list_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn a_panic_becomes_an_error_of_kind_panicked() {
        let result = guard::<()>("test-plugin", "describe", || panic!("boom"));
        let err = BackendError::from(result.into_result().unwrap_err());
        assert_eq!(err.kind, ErrorKind::Panicked);
        assert!(err
            .message
            .starts_with("plugin `test-plugin` panicked in `describe`: boom"));
    }

    #[test]
    fn results_cross_as_json_and_errors_as_parts() {
        let ok = guard("p", "describe", || Ok(vec!["a".to_owned()]));
        assert_eq!(ok.into_result().unwrap().as_str(), r#"["a"]"#);
        let err = guard::<()>("p", "stop", || {
            Err(BackendError::new(ErrorKind::NotFound, "no such machine").with_cause_text("gone"))
        });
        let back = BackendError::from(err.into_result().unwrap_err());
        assert_eq!(
            (back.kind, back.causes),
            (ErrorKind::NotFound, vec!["gone".to_owned()])
        );
    }

    #[test]
    fn a_malformed_argument_is_invalid_input() {
        let err = arg::<AliasPool>(RStr::from_str("\"10.0.0.0/8\""), "pool").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "cannot decode the pool from the host");
        assert!(
            err.causes[0].contains("outside 127.0.0.0/8"),
            "{:?}",
            err.causes
        );
    }

    #[test]
    fn valid_manifests_pass_the_compile_time_check() {
        check_manifest("runtime-process", &["linux", "macos"]);
    }

    #[test]
    #[should_panic(expected = "os must list")]
    fn darwin_is_not_an_os_name() {
        check_manifest("net-macos", &["darwin"]);
    }
}
