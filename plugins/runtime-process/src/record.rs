//! The record of each running bundle, one JSON file per bottle under the state directory, so
//! that another process (`bottle down`, `bottle gc` after a crash) can stop what this one
//! started.
//!
//! Layout: `<state_dir>/bundles/<slug>.json` for the record, `<state_dir>/logs/<slug>/` for
//! the services' output. A record is rewritten (atomically, by rename) after every service
//! started, so that a crash mid-start leaves a record of what runs.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bottle_plugin_api::bottle_core::{BackendError, ErrorKind, ServiceName, Slug};
use serde::{Deserialize, Serialize};

/// One bottle's running services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    pub slug: Slug,
    /// The bottle home that started the bundle (the host's `instance` setting), if known.
    #[serde(default)]
    pub instance: Option<String>,
    pub alias: Ipv4Addr,
    pub services: Vec<ServiceRecord>,
}

/// One service process and its process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: ServiceName,
    pub pid: u32,
    /// The process group the service runs in; its own, so the same number as `pid`.
    pub pgid: u32,
    /// When the process started, in the kernel's clock ticks since boot (Linux), so that a
    /// pid reused after a reboot is never taken for the service.
    pub start_time: Option<u64>,
    /// The port named in the spec.
    pub port: u16,
    /// The port the service was given on the alias (`$PORT`).
    pub host_port: u16,
    pub log: PathBuf,
}

/// The state directory's files.
pub struct Store {
    dir: PathBuf,
}

fn state_error(what: String, e: &(dyn std::error::Error + 'static)) -> BackendError {
    BackendError::new(ErrorKind::Other, what).with_cause(e)
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Store {
            dir: state_dir.to_path_buf(),
        }
    }

    fn bundles(&self) -> PathBuf {
        self.dir.join("bundles")
    }

    fn record_path(&self, slug: &Slug) -> PathBuf {
        self.bundles().join(format!("{slug}.json"))
    }

    /// The directory of a bottle's service logs.
    pub fn log_dir(&self, slug: &Slug) -> PathBuf {
        self.dir.join("logs").join(slug.as_str())
    }

    pub fn read(&self, slug: &Slug) -> Result<Option<BundleRecord>, BackendError> {
        read_record(&self.record_path(slug))
    }

    /// Every record in the state directory.
    pub fn read_all(&self) -> Result<Vec<BundleRecord>, BackendError> {
        let dir = self.bundles();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_error(format!("cannot list {}", dir.display()), &e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut records = Vec::new();
        for path in paths {
            records.extend(read_record(&path)?);
        }
        Ok(records)
    }

    /// Writes `record` in place of the previous one, atomically.
    pub fn write(&self, record: &BundleRecord) -> Result<(), BackendError> {
        let path = self.record_path(&record.slug);
        let tmp = path.with_extension("json.tmp");
        let write = || -> io::Result<()> {
            fs::create_dir_all(self.bundles())?;
            let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
            fs::write(&tmp, json)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| state_error(format!("cannot write {}", path.display()), &e))
    }

    /// Removes a bottle's record; a record that is already gone is not an error.
    pub fn remove(&self, slug: &Slug) -> Result<(), BackendError> {
        let path = self.record_path(slug);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_error(format!("cannot remove {}", path.display()), &e)),
        }
    }
}

fn read_record(path: &Path) -> Result<Option<BundleRecord>, BackendError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_error(format!("cannot read {}", path.display()), &e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| state_error(format!("{} is not a bundle record", path.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_write_and_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let slug: Slug = "review-bot".parse().unwrap();
        assert_eq!(store.read(&slug).unwrap(), None);
        let record = BundleRecord {
            slug: slug.clone(),
            instance: Some("home-1".to_owned()),
            alias: Ipv4Addr::new(127, 0, 0, 17),
            services: vec![ServiceRecord {
                name: "web".parse().unwrap(),
                pid: 42,
                pgid: 42,
                start_time: Some(1234),
                port: 8080,
                host_port: 41234,
                log: dir.path().join("logs/review-bot/web.log"),
            }],
        };
        store.write(&record).unwrap();
        assert_eq!(store.read(&slug).unwrap(), Some(record.clone()));
        assert_eq!(store.read_all().unwrap(), [record]);
        store.remove(&slug).unwrap();
        store.remove(&slug).unwrap();
        assert!(store.read_all().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_record_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bundles")).unwrap();
        std::fs::write(dir.path().join("bundles/x.json"), "{").unwrap();
        let err = Store::new(dir.path())
            .read(&"x".parse().unwrap())
            .unwrap_err();
        assert!(
            err.message
                .ends_with("bundles/x.json is not a bundle record"),
            "{err}"
        );
    }
}
