//! The whole conformance suite against the JSON-file backend.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use example_json_backend::JsonDirStore;
use session_conformance::{StoreFactory, async_trait};
use session_core::{Error, Result, Store};

/// One temporary directory per namespace.
#[derive(Default)]
struct Factory {
    dirs: Mutex<HashMap<String, tempfile::TempDir>>,
}

impl Factory {
    fn path(&self, namespace: &str) -> Result<PathBuf> {
        let dirs = self.dirs.lock().map_err(|_| Error::invalid("poisoned"))?;
        let dir = dirs.get(namespace).ok_or_else(|| Error::NotFound {
            what: format!("namespace {namespace}"),
        })?;
        Ok(dir.path().join("store"))
    }
}

#[async_trait]
impl StoreFactory for Factory {
    async fn create_namespace(&self) -> Result<String> {
        let dir = tempfile::tempdir().map_err(|e| Error::backend("json", e))?;
        let name = dir.path().display().to_string();
        let mut dirs = self.dirs.lock().map_err(|_| Error::invalid("poisoned"))?;
        dirs.insert(name.clone(), dir);
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        Ok(Store::new(JsonDirStore::open(self.path(namespace)?)?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        JsonDirStore::write_schema_version(&self.path(namespace)?, version)
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        let mut dirs = self.dirs.lock().map_err(|_| Error::invalid("poisoned"))?;
        dirs.remove(namespace);
        Ok(())
    }
}

session_conformance::conformance_tests! {
    factory: Factory::default(),
    durable: true,
    shared_between_processes: false,
    leases: true,
    atomic_multi_key_writes: true,
}
