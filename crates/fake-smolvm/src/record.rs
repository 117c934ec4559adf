//! Machine records as smolvm writes them: the same keys in the same order, per version.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// A machine record, decoded.
pub type Fields = Map<String, Value>;

/// The record's keys in the order smolvm 1.9.2 writes them.
const KEY_ORDER: [&str; 38] = [
    "name",
    "created_at",
    "state",
    "pid",
    "pid_start_time",
    "cpus",
    "mem",
    "mounts",
    "ports",
    "published_sockets",
    "network",
    "gpu",
    "gpu_vram_mib",
    "rosetta",
    "restart",
    "last_exit_code",
    "init",
    "init_completed",
    "remote_volumes",
    "env",
    "workdir",
    "storage_gb",
    "overlay_gb",
    "allowed_cidrs",
    "image",
    "entrypoint",
    "cmd",
    "health_cmd",
    "health_interval_secs",
    "health_timeout_secs",
    "health_retries",
    "health_startup_grace_secs",
    "ssh_agent",
    "cuda",
    "docker_socket",
    "ephemeral",
    "source_smolmachine",
    "runtime_managed",
];

/// The keys 0.8.0 does not have yet.
pub const ABSENT_BEFORE_1_0: [&str; 6] = [
    "published_sockets",
    "rosetta",
    "remote_volumes",
    "cuda",
    "docker_socket",
    "runtime_managed",
];

/// Compact JSON with the known keys in smolvm's order, then any others (the fake keeps keys
/// it does not know, where real smolvm would drop them on its next write).
pub fn to_bytes(fields: &Map<String, Value>) -> Vec<u8> {
    let known = KEY_ORDER.iter().filter_map(|k| fields.get_key_value(*k));
    let unknown = fields
        .iter()
        .filter(|(k, _)| !KEY_ORDER.contains(&k.as_str()));
    let members: Vec<String> = known
        .chain(unknown)
        .map(|(key, value)| format!("{}:{value}", Value::String(key.clone())))
        .collect();
    format!("{{{}}}", members.join(",")).into_bytes()
}

/// What `machine create` decided, ready to store.
pub struct NewMachine {
    pub name: String,
    pub cpus: u32,
    pub mem: u32,
    pub mounts: Vec<(String, String, bool)>,
    pub ports: Vec<(u16, u16)>,
    pub network: bool,
    pub env: Vec<(String, String)>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub image: Option<String>,
    pub cmd: Vec<String>,
    pub source_smolmachine: Option<String>,
}

/// A new record; `older_keys_only` leaves out the keys smolvm 0.8.0 does not write.
pub fn new_record(machine: NewMachine, older_keys_only: bool) -> Map<String, Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = json!({
        "name": machine.name,
        "created_at": now,
        "state": "created",
        "pid": null,
        "pid_start_time": null,
        "cpus": machine.cpus,
        "mem": machine.mem,
        "mounts": machine.mounts,
        "ports": machine.ports,
        "published_sockets": [],
        "network": machine.network,
        "gpu": null,
        "gpu_vram_mib": null,
        "rosetta": null,
        "restart": {
            "policy": "never",
            "max_retries": 0,
            "max_backoff_secs": 0,
            "restart_count": 0,
            "user_stopped": false
        },
        "last_exit_code": null,
        "init": [],
        "init_completed": false,
        "remote_volumes": [],
        "env": machine.env,
        "workdir": null,
        "storage_gb": null,
        "overlay_gb": null,
        "allowed_cidrs": machine.allowed_cidrs,
        "image": machine.image,
        "entrypoint": [],
        "cmd": machine.cmd,
        "health_cmd": null,
        "health_interval_secs": null,
        "health_timeout_secs": null,
        "health_retries": null,
        "health_startup_grace_secs": null,
        "ssh_agent": false,
        "cuda": false,
        "docker_socket": false,
        "ephemeral": false,
        "source_smolmachine": machine.source_smolmachine,
        "runtime_managed": false
    });
    let Value::Object(mut fields) = record else {
        unreachable!("json! of an object literal")
    };
    if older_keys_only {
        for key in ABSENT_BEFORE_1_0 {
            fields.remove(key);
        }
    }
    fields
}

/// The object `ls --json` lists and `status --json` prints: a subset of smolvm's fields, and
/// never the allow-list.
pub fn status_json(name: &str, fields: &Map<String, Value>) -> Value {
    let count = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    json!({
        "name": name,
        "state": fields.get("state").cloned().unwrap_or(Value::Null),
        "cpus": fields.get("cpus").cloned().unwrap_or(Value::Null),
        "memory_mib": fields.get("mem").cloned().unwrap_or(Value::Null),
        "pid": fields.get("pid").cloned().unwrap_or(Value::Null),
        "mounts": count("mounts"),
        "ports": count("ports"),
        "created_at": fields.get("created_at").cloned().unwrap_or(Value::Null),
        "image": fields.get("image").cloned().unwrap_or(Value::Null),
        "network": fields.get("network").cloned().unwrap_or(Value::Bool(false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> NewMachine {
        NewMachine {
            name: "t2".into(),
            cpus: 1,
            mem: 256,
            mounts: vec![],
            ports: vec![(8080, 80)],
            network: true,
            env: vec![],
            allowed_cidrs: Some(vec!["127.0.0.17/32".into()]),
            image: None,
            cmd: vec![],
            source_smolmachine: Some("/tmp/x.smolmachine".into()),
        }
    }

    #[test]
    fn keys_come_in_smolvm_order_with_unknown_ones_last() {
        let mut fields = new_record(machine(), false);
        fields.insert("zz_unknown".into(), json!(1));
        fields.insert("aa_unknown".into(), json!(2));
        let text = String::from_utf8(to_bytes(&fields)).unwrap();
        assert!(text.starts_with(r#"{"name":"t2","created_at":"#), "{text}");
        assert!(text.contains(r#""ports":[[8080,80]],"published_sockets":[],"network":true,"#));
        assert!(text.ends_with(r#""runtime_managed":false,"aa_unknown":2,"zz_unknown":1}"#));
        let back: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, fields);
    }

    #[test]
    fn version_0_8_lacks_the_newer_keys() {
        let fields = new_record(machine(), true);
        for key in ABSENT_BEFORE_1_0 {
            assert!(!fields.contains_key(key), "{key}");
        }
        assert_eq!(fields.len(), KEY_ORDER.len() - ABSENT_BEFORE_1_0.len());
    }
}
