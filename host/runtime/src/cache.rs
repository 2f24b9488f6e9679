//! The on-disk cache of compiled plugins.
//!
//! Compiling a plugin takes ~90 ms; loading its precompiled artifact well under a
//! millisecond. Artifacts are keyed by the component's SHA-256 and a hash of the
//! engine's settings, so a wasmtime upgrade or a settings change never loads a
//! stale artifact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::LoadError;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, LoadError> {
        std::fs::create_dir_all(dir).map_err(|source| LoadError::Cache {
            path: dir.to_owned(),
            source,
        })?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached artifact, if there is a usable one. A corrupt or incompatible
    /// file is ignored (and overwritten by the next store).
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below (atomically, by rename)
        // into a directory the operator declares as trusted as the binary;
        // wasmtime checks its header and engine compatibility before use.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached plugin artifact");
                None
            }
        }
    }

    pub(crate) fn store(&self, sha256: &str, component: &Component) -> Result<(), LoadError> {
        let path = self.path(sha256);
        let cache_err = |source| LoadError::Cache {
            path: path.clone(),
            source,
        };
        let bytes = component.serialize().map_err(LoadError::Wasmtime)?;
        // Write beside the final name and rename: readers never see half a file.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(cache_err)?;
        tmp.write_all(&bytes).map_err(cache_err)?;
        tmp.persist(&path).map_err(|e| cache_err(e.error))?;
        Ok(())
    }
}
