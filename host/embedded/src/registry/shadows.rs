//! Shadows in the embedded registry: a binding's candidate and its tally,
//! one row each, changed in a transaction with the generation and the audit.

use rusqlite::{OptionalExtension, params};
use weir_core::registry::{BindingKey, Change, RegistryError, ShadowRecord, ShadowTally};

use super::{EmbeddedRegistry, audit, bump_generation, check_handles, tenant_column};

fn shadow_of(
    key: &BindingKey,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(ShadowRecord, ShadowTally)> {
    let config: String = row.get(1)?;
    let tally: String = row.get(5)?;
    Ok((
        ShadowRecord {
            key: key.clone(),
            sha256: row.get(0)?,
            config: serde_json::from_str(&config).unwrap_or_default(),
            share_percent: row.get::<_, i64>(2)?.clamp(0, 100) as u8,
            started_by: row.get(3)?,
            started_at: row.get(4)?,
        },
        serde_json::from_str(&tally).unwrap_or_default(),
    ))
}

impl EmbeddedRegistry {
    pub(super) async fn start_shadow_in_db(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        share_percent: u8,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        let record = ShadowRecord {
            key: key.clone(),
            sha256: sha256.to_owned(),
            config,
            share_percent: share_percent.min(100),
            started_by: change.actor.to_owned(),
            started_at: change.at.to_owned(),
        };
        let shadow = record.clone();
        self.state
            .with("starting a shadow", move |c| {
                let tx = c.transaction()?;
                let key = &shadow.key;
                if let Err(e) = check_handles(&tx, key, &shadow.sha256)? {
                    return Ok(Err(e));
                }
                tx.execute(
                    "INSERT OR REPLACE INTO shadows (tenant, event_type, sha256, config, share_percent, started_by, started_at, tally)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '{}')",
                    params![
                        tenant_column(key),
                        key.event_type,
                        shadow.sha256,
                        serde_json::to_string(&shadow.config).unwrap_or_else(|_| "[]".into()),
                        i64::from(shadow.share_percent),
                        shadow.started_by,
                        shadow.started_at
                    ],
                )?;
                bump_generation(&tx)?;
                let after = format!("{} ({}%)", shadow.sha256, shadow.share_percent);
                audit(&tx, (&shadow.started_by, &shadow.started_at), "shadow-start", &key.to_string(), None, Some(&after))?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await??;
        Ok(record)
    }

    pub(super) async fn stop_shadow_in_db(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        let key = key.clone();
        let (actor, at) = (change.actor.to_owned(), change.at.to_owned());
        self.state
            .with("stopping a shadow", move |c| {
                let tx = c.transaction()?;
                let found = tx
                    .query_row(
                        "SELECT sha256, config, share_percent, started_by, started_at, tally FROM shadows
                         WHERE tenant = ?1 AND event_type = ?2",
                        params![tenant_column(&key), key.event_type],
                        |row| shadow_of(&key, row),
                    )
                    .optional()?;
                let Some((record, _)) = found else {
                    return Ok(Err(RegistryError::NotFound(format!("a shadow of binding {key}"))));
                };
                tx.execute(
                    "DELETE FROM shadows WHERE tenant = ?1 AND event_type = ?2",
                    params![tenant_column(&key), key.event_type],
                )?;
                bump_generation(&tx)?;
                audit(&tx, (&actor, &at), "shadow-stop", &key.to_string(), Some(&record.sha256), None)?;
                tx.commit()?;
                Ok(Ok(record))
            })
            .await?
    }

    pub(super) async fn shadows_in_db(
        &self,
    ) -> Result<Vec<(ShadowRecord, ShadowTally)>, RegistryError> {
        Ok(self
            .state
            .with("reading shadows", |c| {
                let mut statement = c.prepare(
                    "SELECT sha256, config, share_percent, started_by, started_at, tally, tenant, event_type
                     FROM shadows ORDER BY tenant, event_type",
                )?;
                let rows = statement.query_map([], |row| {
                    let tenant: String = row.get(6)?;
                    let key = BindingKey {
                        tenant: (!tenant.is_empty()).then_some(tenant),
                        event_type: row.get(7)?,
                    };
                    shadow_of(&key, row)
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    pub(super) async fn add_shadow_tally_in_db(
        &self,
        key: &BindingKey,
        sha256: &str,
        tally: ShadowTally,
    ) -> Result<(), RegistryError> {
        let (key, sha256) = (key.clone(), sha256.to_owned());
        Ok(self
            .state
            .with("adding to a shadow's tally", move |c| {
                let tx = c.transaction()?;
                let current: Option<String> = tx
                    .query_row(
                        "SELECT tally FROM shadows WHERE tenant = ?1 AND event_type = ?2 AND sha256 = ?3",
                        params![tenant_column(&key), key.event_type, sha256],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(current) = current else {
                    return Ok(());
                };
                let mut sum: ShadowTally = serde_json::from_str(&current).unwrap_or_default();
                sum.add(tally);
                tx.execute(
                    "UPDATE shadows SET tally = ?1 WHERE tenant = ?2 AND event_type = ?3",
                    params![
                        serde_json::to_string(&sum).unwrap_or_else(|_| "{}".into()),
                        tenant_column(&key),
                        key.event_type
                    ],
                )?;
                tx.commit()
            })
            .await?)
    }
}
