//! The plugin registry on one machine: components in the object store
//! (`plugins/{sha256}.wasm`), the index, bindings, their history and the
//! audit log in SQLite, each change one transaction.

use rusqlite::{OptionalExtension, Transaction, params};
use weir_core::backend::{BackendError, ObjectStore};
use weir_core::registry::{
    AuditEntry, BindingKey, BindingLimits, BindingRecord, Change, PluginVersion, Registry,
    RegistryError, ShadowRecord, ShadowTally,
};

use crate::{LocalObjectStore, SqliteState};

mod shadows;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS plugin_versions (
        sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        size INTEGER NOT NULL,
        contract TEXT NOT NULL,
        event_types TEXT NOT NULL,
        uploader TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        notes TEXT NOT NULL,
        tenant TEXT, -- NULL: shared
        UNIQUE (name, version)
    );
    -- Every revision of every binding: the current one is the highest.
    CREATE TABLE IF NOT EXISTS binding_revisions (
        tenant TEXT NOT NULL, -- '' for the default binding
        event_type TEXT NOT NULL,
        revision INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES plugin_versions (sha256),
        config TEXT NOT NULL,
        limits TEXT NOT NULL DEFAULT '{}',
        activated_by TEXT NOT NULL,
        activated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, event_type, revision)
    );
    CREATE TABLE IF NOT EXISTS registry_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    -- A binding's shadow, if any, with its tally as JSON.
    CREATE TABLE IF NOT EXISTS shadows (
        tenant TEXT NOT NULL,
        event_type TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES plugin_versions (sha256),
        config TEXT NOT NULL,
        share_percent INTEGER NOT NULL,
        started_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        tally TEXT NOT NULL,
        PRIMARY KEY (tenant, event_type)
    );
    CREATE TABLE IF NOT EXISTS registry_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO registry_generation (id, generation) VALUES (1, 0);
";

/// The embedded registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedRegistry {
    state: SqliteState,
    objects: LocalObjectStore,
}

fn component_key(sha256: &str) -> String {
    format!("plugins/{sha256}.wasm")
}

fn golden_key(sha256: &str) -> String {
    format!("plugins/{sha256}.golden.json")
}

/// `Err` names what is wrong: keys built from it must stay inside `plugins/`.
fn checked_sha(sha256: &str) -> Result<&str, RegistryError> {
    if weir_core::registry::is_sha256_hex(sha256) {
        Ok(sha256)
    } else {
        Err(RegistryError::NotFound(format!(
            "plugin version {sha256:?}"
        )))
    }
}

pub use weir_core::registry::sha256_hex;

fn tenant_column(key: &BindingKey) -> &str {
    key.tenant.as_deref().unwrap_or("")
}

fn current(tx: &Transaction<'_>, key: &BindingKey) -> rusqlite::Result<Option<BindingRecord>> {
    tx.query_row(
        "SELECT revision, sha256, config, activated_by, activated_at, limits FROM binding_revisions
         WHERE tenant = ?1 AND event_type = ?2 ORDER BY revision DESC LIMIT 1",
        params![tenant_column(key), key.event_type],
        |row| {
            let config: String = row.get(2)?;
            let limits: String = row.get(5)?;
            Ok(BindingRecord {
                key: key.clone(),
                revision: row.get::<_, i64>(0)? as u64,
                sha256: row.get(1)?,
                config: serde_json::from_str(&config).unwrap_or_default(),
                limits: serde_json::from_str(&limits).unwrap_or_default(),
                activated_by: row.get(3)?,
                activated_at: row.get(4)?,
            })
        },
    )
    .optional()
}

fn audit(
    tx: &Transaction<'_>,
    change: (&str, &str),
    action: &str,
    subject: &str,
    before: Option<&str>,
    after: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO registry_audit (at, actor, action, subject, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![change.1, change.0, action, subject, before, after],
    )
    .map(drop)
}

/// Whether version `sha256` is known and handles `key`'s event type:
/// `Ok(Err(e))` says why not.
fn check_handles(
    tx: &Transaction<'_>,
    key: &BindingKey,
    sha256: &str,
) -> rusqlite::Result<Result<(), RegistryError>> {
    let known: Option<String> = tx
        .query_row(
            "SELECT event_types FROM plugin_versions WHERE sha256 = ?1",
            params![sha256],
            |r| r.get(0),
        )
        .optional()?;
    let Some(event_types) = known else {
        return Ok(Err(RegistryError::NotFound(format!(
            "plugin version {sha256}"
        ))));
    };
    let handles: Vec<String> = serde_json::from_str(&event_types).unwrap_or_default();
    if !handles.iter().any(|t| t == &key.event_type) {
        return Ok(Err(RegistryError::Refused(format!(
            "version {sha256} does not handle `{}` (it handles {})",
            key.event_type,
            handles.join(", ")
        ))));
    }
    Ok(Ok(()))
}

fn bump_generation(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE registry_generation SET generation = generation + 1 WHERE id = 1",
        [],
    )
    .map(drop)
}

/// What a binding's next revision points at.
struct Target<'a> {
    sha256: &'a str,
    config: &'a [(String, String)],
    limits: BindingLimits,
}

/// Inside a transaction: the new revision of `key`, audited, the generation
/// moved. `Err(Ok(e))` is a registry refusal, `Err(Err(e))` a database error.
fn set_binding(
    tx: &Transaction<'_>,
    key: &BindingKey,
    target: Target<'_>,
    expected: Option<u64>,
    change: (&str, &str),
    action: &str,
) -> Result<Result<BindingRecord, RegistryError>, rusqlite::Error> {
    let Target {
        sha256,
        config,
        limits,
    } = target;
    let now = current(tx, key)?;
    let actual = now.as_ref().map(|b| b.revision);
    if let Some(expected) = expected
        && actual.unwrap_or(0) != expected
    {
        return Ok(Err(RegistryError::Conflict {
            key: key.to_string(),
            expected: Some(expected),
            actual,
        }));
    }
    if let Err(e) = check_handles(tx, key, sha256)? {
        return Ok(Err(e));
    }
    let record = BindingRecord {
        key: key.clone(),
        sha256: sha256.to_owned(),
        config: config.to_vec(),
        limits,
        revision: actual.unwrap_or(0) + 1,
        activated_by: change.0.to_owned(),
        activated_at: change.1.to_owned(),
    };
    tx.execute(
        "INSERT INTO binding_revisions (tenant, event_type, revision, sha256, config, activated_by, activated_at, limits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant_column(key),
            key.event_type,
            record.revision as i64,
            sha256,
            serde_json::to_string(config).unwrap_or_else(|_| "[]".into()),
            change.0,
            change.1,
            serde_json::to_string(&limits).unwrap_or_else(|_| "{}".into())
        ],
    )?;
    bump_generation(tx)?;
    audit(
        tx,
        change,
        action,
        &key.to_string(),
        now.as_ref().map(|b| b.sha256.as_str()),
        Some(sha256),
    )?;
    Ok(Ok(record))
}

impl EmbeddedRegistry {
    /// The registry in `state`'s database, components in `objects`.
    pub async fn open(state: SqliteState, objects: LocalObjectStore) -> Result<Self, BackendError> {
        state
            .with("preparing the registry", |c| {
                c.execute_batch(SCHEMA)?;
                // Registries made before versions had owners and bindings limits.
                let has_column = |table: &str, column: &str| {
                    c.query_row(
                        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                        params![table, column],
                        |r| r.get::<_, i64>(0).map(|n| n > 0),
                    )
                };
                if !has_column("plugin_versions", "tenant")? {
                    c.execute_batch("ALTER TABLE plugin_versions ADD COLUMN tenant TEXT")?;
                }
                if !has_column("binding_revisions", "limits")? {
                    c.execute_batch(
                        "ALTER TABLE binding_revisions ADD COLUMN limits TEXT NOT NULL DEFAULT '{}'",
                    )?;
                }
                Ok(())
            })
            .await?;
        Ok(Self { state, objects })
    }

    async fn binding_change(
        &self,
        what: &'static str,
        f: impl FnOnce(
            &Transaction<'_>,
        ) -> Result<Result<BindingRecord, RegistryError>, rusqlite::Error>
        + Send
        + 'static,
    ) -> Result<BindingRecord, RegistryError> {
        self.state
            .with(what, move |c| {
                let tx = c.transaction()?;
                let result = f(&tx)?;
                if result.is_ok() {
                    tx.commit()?;
                }
                Ok(result)
            })
            .await?
    }
}

impl Registry for EmbeddedRegistry {
    async fn add_version(
        &self,
        version: PluginVersion,
        component: Vec<u8>,
        golden: Option<String>,
        change: Change<'_>,
    ) -> Result<bool, RegistryError> {
        if sha256_hex(&component) != version.sha256 {
            return Err(RegistryError::Refused(format!(
                "{}@{}: the component's SHA-256 is not {}",
                version.name, version.version, version.sha256
            )));
        }
        // The component first: an index entry never points at nothing.
        self.objects
            .put(&component_key(&version.sha256), component)
            .await?;
        if let Some(golden) = golden {
            self.objects
                .put(&golden_key(&version.sha256), golden.into_bytes())
                .await?;
        }
        let (actor, at) = (change.actor.to_owned(), change.at.to_owned());
        self.state
            .with("adding a plugin version", move |c| {
                let tx = c.transaction()?;
                let taken: Option<String> = tx
                    .query_row(
                        "SELECT sha256 FROM plugin_versions WHERE name = ?1 AND version = ?2",
                        params![version.name, version.version],
                        |r| r.get(0),
                    )
                    .optional()?;
                match taken {
                    Some(sha) if sha == version.sha256 => return Ok(Ok(false)),
                    Some(sha) => {
                        return Ok(Err(RegistryError::Refused(format!(
                            "{}@{} exists with another component ({sha}); versions are immutable: upload it as a new version",
                            version.name, version.version
                        ))));
                    }
                    None => {}
                }
                tx.execute(
                    "INSERT INTO plugin_versions (sha256, name, version, size, contract, event_types, uploader, uploaded_at, notes, tenant)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        version.sha256,
                        version.name,
                        version.version,
                        version.size as i64,
                        version.contract,
                        serde_json::to_string(&version.event_types).unwrap_or_else(|_| "[]".into()),
                        version.uploader,
                        version.uploaded_at,
                        version.notes,
                        version.tenant
                    ],
                )?;
                let subject = format!("{}@{}", version.name, version.version);
                audit(&tx, (&actor, &at), "add-version", &subject, None, Some(&version.sha256))?;
                tx.commit()?;
                Ok(Ok(true))
            })
            .await?
    }

    async fn versions(&self, name: Option<&str>) -> Result<Vec<PluginVersion>, RegistryError> {
        let name = name.map(str::to_owned);
        Ok(self
            .state
            .with("listing plugin versions", move |c| {
                let mut statement = c.prepare(
                    "SELECT sha256, name, version, size, contract, event_types, uploader, uploaded_at, notes, tenant
                     FROM plugin_versions WHERE (?1 IS NULL OR name = ?1) ORDER BY uploaded_at DESC, rowid DESC",
                )?;
                let rows = statement.query_map(params![name], |row| {
                    let event_types: String = row.get(5)?;
                    Ok(PluginVersion {
                        sha256: row.get(0)?,
                        name: row.get(1)?,
                        version: row.get(2)?,
                        size: row.get::<_, i64>(3)? as u64,
                        contract: row.get(4)?,
                        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
                        uploader: row.get(6)?,
                        uploaded_at: row.get(7)?,
                        notes: row.get(8)?,
                        tenant: row.get(9)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let sha256 = checked_sha(sha256)?;
        Ok(self.objects.get(&component_key(sha256)).await?)
    }

    async fn golden(&self, sha256: &str) -> Result<Option<String>, RegistryError> {
        let sha256 = checked_sha(sha256)?;
        let Some(bytes) = self.objects.get(&golden_key(sha256)).await? else {
            return Ok(None);
        };
        String::from_utf8(bytes).map(Some).map_err(|_| {
            RegistryError::Refused(format!("the golden cases of {sha256} are not UTF-8"))
        })
    }

    async fn generation(&self) -> Result<u64, RegistryError> {
        Ok(self
            .state
            .with("reading the registry generation", |c| {
                c.query_row(
                    "SELECT generation FROM registry_generation WHERE id = 1",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await? as u64)
    }

    async fn bindings(&self) -> Result<(u64, Vec<BindingRecord>), RegistryError> {
        Ok(self
            .state
            .with("reading bindings", |c| {
                let tx = c.transaction()?;
                let generation: i64 = tx.query_row(
                    "SELECT generation FROM registry_generation WHERE id = 1",
                    [],
                    |r| r.get(0),
                )?;
                let mut statement = tx.prepare(
                    "SELECT tenant, event_type, revision, sha256, config, activated_by, activated_at, limits
                     FROM binding_revisions b
                     WHERE revision = (SELECT MAX(revision) FROM binding_revisions
                                       WHERE tenant = b.tenant AND event_type = b.event_type)
                     ORDER BY tenant, event_type",
                )?;
                let rows = statement.query_map([], |row| {
                    let tenant: String = row.get(0)?;
                    let config: String = row.get(4)?;
                    let limits: String = row.get(7)?;
                    Ok(BindingRecord {
                        limits: serde_json::from_str(&limits).unwrap_or_default(),
                        key: BindingKey {
                            tenant: (!tenant.is_empty()).then_some(tenant),
                            event_type: row.get(1)?,
                        },
                        revision: row.get::<_, i64>(2)? as u64,
                        sha256: row.get(3)?,
                        config: serde_json::from_str(&config).unwrap_or_default(),
                        activated_by: row.get(5)?,
                        activated_at: row.get(6)?,
                    })
                })?;
                let bindings = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((generation as u64, bindings))
            })
            .await?)
    }

    async fn activate_with(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        limits: BindingLimits,
        expected_revision: Option<u64>,
        change: Change<'_>,
    ) -> Result<BindingRecord, RegistryError> {
        limits.check()?;
        let (key, sha256) = (key.clone(), sha256.to_owned());
        let (actor, at) = (change.actor.to_owned(), change.at.to_owned());
        self.binding_change("activating a binding", move |tx| {
            let target = Target {
                sha256: &sha256,
                config: &config,
                limits,
            };
            set_binding(
                tx,
                &key,
                target,
                expected_revision,
                (&actor, &at),
                "activate",
            )
        })
        .await
    }

    async fn rollback(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<BindingRecord, RegistryError> {
        let key = key.clone();
        let (actor, at) = (change.actor.to_owned(), change.at.to_owned());
        self.binding_change("rolling a binding back", move |tx| {
            let Some(now) = current(tx, &key)? else {
                return Ok(Err(RegistryError::NotFound(format!("binding {key}"))));
            };
            // The newest earlier revision on another version.
            let previous: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT sha256, config, limits FROM binding_revisions
                     WHERE tenant = ?1 AND event_type = ?2 AND revision < ?3 AND sha256 != ?4
                     ORDER BY revision DESC LIMIT 1",
                    params![
                        tenant_column(&key),
                        key.event_type,
                        now.revision as i64,
                        now.sha256
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((sha256, config, limits)) = previous else {
                return Ok(Err(RegistryError::NotFound(format!(
                    "an earlier version of binding {key}"
                ))));
            };
            let config: Vec<(String, String)> = serde_json::from_str(&config).unwrap_or_default();
            let limits: BindingLimits = serde_json::from_str(&limits).unwrap_or_default();
            let target = Target {
                sha256: &sha256,
                config: &config,
                limits,
            };
            set_binding(
                tx,
                &key,
                target,
                Some(now.revision),
                (&actor, &at),
                "rollback",
            )
        })
        .await
    }

    async fn start_shadow(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        share_percent: u8,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        self.start_shadow_in_db(key, sha256, config, share_percent, change)
            .await
    }

    async fn stop_shadow(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        self.stop_shadow_in_db(key, change).await
    }

    async fn shadows(&self) -> Result<Vec<(ShadowRecord, ShadowTally)>, RegistryError> {
        self.shadows_in_db().await
    }

    async fn add_shadow_tally(
        &self,
        key: &BindingKey,
        sha256: &str,
        tally: ShadowTally,
    ) -> Result<(), RegistryError> {
        self.add_shadow_tally_in_db(key, sha256, tally).await
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .state
            .with("reading the audit log", move |c| {
                let mut statement = c.prepare(
                    "SELECT id, at, actor, action, subject, before, after FROM registry_audit ORDER BY id DESC LIMIT ?1",
                )?;
                let rows = statement.query_map(params![limit], |row| {
                    Ok(AuditEntry {
                        id: row.get(0)?,
                        at: row.get(1)?,
                        actor: row.get(2)?,
                        action: row.get(3)?,
                        subject: row.get(4)?,
                        before: row.get(5)?,
                        after: row.get(6)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }
}
