//! The plugin registry on AWS: components (and their golden cases) in S3
//! under `plugins/` (the raw bucket), the index, bindings, their history, the
//! generation and the audit log in one DynamoDB table (hash `pk`, range
//! `sk`). Every change is one TransactWriteItems: a binding's new revision is
//! written only if the binding is still at the revision it was read at, with
//! its history entry, the generation's increment and its audit entry, or not
//! at all.
//!
//! Items, by partition:
//! - `versions` / `{uploaded_at}#{micros}#{sha256}`: each version, for listing;
//! - `version#{sha256}` / `meta`: the same, by identity;
//! - `name#{name}@{version}` / `claim`: who holds a name and version;
//! - `bindings` / `{tenant}␟{event_type}`: each binding as active now;
//! - `history␟{tenant}␟{event_type}` / `{revision:020}`: every revision;
//! - `shadows` / `{tenant}␟{event_type}`: each binding's shadow and tally;
//! - `generation` / `generation`: what hosts poll;
//! - `audit` / `{micros:020}#{random}`: the audit log.

mod items;
mod shadows;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use weir_core::backend::{BackendError, ObjectStore};
use weir_core::registry::{
    AuditEntry, BindingKey, BindingLimits, BindingRecord, Change, PluginVersion, Registry,
    RegistryError, ShadowRecord, ShadowTally, sha256_hex,
};

use crate::S3ObjectStore;
use crate::dynamodb::{Item, get_list, get_n, get_s, n, s};
use crate::error::{backend_error, build_error};
use items::{
    binding_fields, binding_of, binding_sk, checked_sha, component_key, condition_failed,
    golden_key, history_pk, key_of, micros_now, version_item, version_of,
};

/// The registry's table and the object store its components go to.
#[derive(Debug, Clone)]
pub struct DynamoRegistry {
    client: Client,
    table: String,
    objects: S3ObjectStore,
}

/// What a binding's next revision points at.
struct Target<'a> {
    sha256: &'a str,
    config: Vec<(String, String)>,
    limits: BindingLimits,
}

/// Separates a binding's tenant and event type in keys: no name contains it.
impl DynamoRegistry {
    /// The registry in `table`, components in `objects` (under `plugins/`).
    pub fn new(client: Client, table: impl Into<String>, objects: S3ObjectStore) -> Self {
        Self {
            client,
            table: table.into(),
            objects,
        }
    }

    /// A put, conditional on `condition` with its `:revision` value if given.
    fn put(
        &self,
        item: Item,
        condition: Option<(&str, Option<u64>)>,
    ) -> Result<TransactWriteItem, BackendError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expression, revision)) = condition {
            put = put.condition_expression(expression);
            if let Some(revision) = revision {
                put = put.expression_attribute_values(":revision", n(revision));
            }
        }
        let put = put
            .build()
            .map_err(|e| build_error("a registry write", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn audit_put(
        &self,
        change: Change<'_>,
        action: &str,
        subject: &str,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<TransactWriteItem, BackendError> {
        // Ordered by when it was recorded; the process and a counter keep two
        // entries of one microsecond apart.
        static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let micros = micros_now();
        let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sk = format!("{micros:020}#{:08x}{sequence:08x}", std::process::id());
        let mut item = key_of("audit", &sk);
        item.extend([
            ("id".to_owned(), n(micros)),
            ("at".to_owned(), s(change.at)),
            ("actor".to_owned(), s(change.actor)),
            ("action".to_owned(), s(action)),
            ("subject".to_owned(), s(subject)),
        ]);
        if let Some(before) = before {
            item.insert("before".to_owned(), s(before));
        }
        if let Some(after) = after {
            item.insert("after".to_owned(), s(after));
        }
        self.put(item, None)
    }

    fn generation_bump(&self) -> Result<TransactWriteItem, BackendError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_of("generation", "generation")))
            .update_expression("ADD generation :one")
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(|e| build_error("a registry generation update", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                backend_error(
                    format!("reading {pk} from registry table {}", self.table),
                    e,
                )
            })?;
        Ok(out.item().cloned())
    }

    /// Every item of a partition, in sort key order (newest first with
    /// `newest_first`), at most `limit`.
    async fn query(
        &self,
        pk: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .scan_index_forward(!newest_first)
                .consistent_read(true)
                .set_limit(limit.map(|l| l.min(1000) as i32))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    backend_error(
                        format!("reading {pk} from registry table {}", self.table),
                        e,
                    )
                })?;
            items.extend(out.items().iter().cloned());
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match out.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
    }

    /// Whether version `sha256` is known and handles `key`'s event type.
    async fn check_handles(&self, key: &BindingKey, sha256: &str) -> Result<(), RegistryError> {
        let Some(version) = self.get(&format!("version#{sha256}"), "meta").await? else {
            return Err(RegistryError::NotFound(format!("plugin version {sha256}")));
        };
        let handles = get_list(&version, "event_types");
        if !handles.iter().any(|t| t == &key.event_type) {
            return Err(RegistryError::Refused(format!(
                "version {sha256} does not handle `{}` (it handles {})",
                key.event_type,
                handles.join(", ")
            )));
        }
        Ok(())
    }

    async fn current(&self, key: &BindingKey) -> Result<Option<BindingRecord>, BackendError> {
        Ok(self
            .get("bindings", &binding_sk(key))
            .await?
            .as_ref()
            .map(binding_of))
    }

    /// Writes `key`'s next revision if it is still at `expected` (what the
    /// caller read), with its history, the generation and the audit entry.
    async fn set_binding(
        &self,
        key: &BindingKey,
        target: Target<'_>,
        expected: Option<u64>,
        change: Change<'_>,
        action: &str,
    ) -> Result<BindingRecord, RegistryError> {
        let Target {
            sha256,
            config,
            limits,
        } = target;
        limits.check()?;
        self.check_handles(key, sha256).await?;
        // Without an expected revision, a concurrent change is retried on
        // top of it; with one, it is the caller's conflict.
        for _ in 0..5 {
            let now = self.current(key).await?;
            let actual = now.as_ref().map(|b| b.revision);
            if let Some(expected) = expected
                && actual.unwrap_or(0) != expected
            {
                return Err(RegistryError::Conflict {
                    key: key.to_string(),
                    expected: Some(expected),
                    actual,
                });
            }
            let record = BindingRecord {
                key: key.clone(),
                sha256: sha256.to_owned(),
                config: config.clone(),
                limits,
                revision: actual.unwrap_or(0) + 1,
                activated_by: change.actor.to_owned(),
                activated_at: change.at.to_owned(),
            };
            let mut head = key_of("bindings", &binding_sk(key));
            head.extend(binding_fields(&record));
            let condition = match actual {
                None => ("attribute_not_exists(pk)", None),
                Some(r) => ("revision = :revision", Some(r)),
            };
            let mut history = key_of(&history_pk(key), &format!("{:020}", record.revision));
            history.extend(binding_fields(&record));
            let items = vec![
                self.put(head, Some(condition))?,
                self.put(history, None)?,
                self.generation_bump()?,
                self.audit_put(
                    change,
                    action,
                    &key.to_string(),
                    now.as_ref().map(|b| b.sha256.as_str()),
                    Some(sha256),
                )?,
            ];
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(record),
                Err(e) if condition_failed(&e) => continue,
                Err(e) => {
                    return Err(backend_error(
                        format!("changing binding {key} in registry table {}", self.table),
                        e,
                    )
                    .into());
                }
            }
        }
        Err(RegistryError::Conflict {
            key: key.to_string(),
            expected,
            actual: self.current(key).await?.map(|b| b.revision),
        })
    }
}

impl Registry for DynamoRegistry {
    async fn add_version(
        &self,
        version: PluginVersion,
        component: Vec<u8>,
        golden: Option<String>,
        change: Change<'_>,
    ) -> Result<bool, RegistryError> {
        if sha256_hex(&component) != version.sha256 {
            return Err(RegistryError::Refused(format!(
                "{}: the component's SHA-256 is not {}",
                version.label(),
                version.sha256
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
        let claim_pk = format!("name#{}", version.label());
        let mut claim = key_of(&claim_pk, "claim");
        claim.insert("sha256".to_owned(), s(&version.sha256));
        let listing_sk = format!(
            "{}#{:020}#{}",
            version.uploaded_at,
            micros_now(),
            version.sha256
        );
        let items = vec![
            self.put(claim, Some(("attribute_not_exists(pk)", None)))?,
            self.put(
                version_item(&format!("version#{}", version.sha256), "meta", &version),
                None,
            )?,
            self.put(version_item("versions", &listing_sk, &version), None)?,
            self.audit_put(
                change,
                "add-version",
                &version.label(),
                None,
                Some(&version.sha256),
            )?,
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => {
                let holder = self.get(&claim_pk, "claim").await?;
                let sha = holder
                    .as_ref()
                    .map(|h| get_s(h, "sha256"))
                    .unwrap_or_default();
                if sha == version.sha256 {
                    Ok(false)
                } else {
                    Err(RegistryError::Refused(format!(
                        "{} exists with another component ({sha}); versions are immutable: upload it as a new version",
                        version.label()
                    )))
                }
            }
            Err(e) => Err(backend_error(
                format!(
                    "adding {} to registry table {}",
                    version.label(),
                    self.table
                ),
                e,
            )
            .into()),
        }
    }

    async fn versions(&self, name: Option<&str>) -> Result<Vec<PluginVersion>, RegistryError> {
        let items = self.query("versions", true, None).await?;
        Ok(items
            .iter()
            .map(version_of)
            .filter(|v| name.is_none_or(|n| v.name == n))
            .collect())
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
            .get("generation", "generation")
            .await?
            .map_or(0, |item| get_n(&item, "generation")))
    }

    async fn bindings(&self) -> Result<(u64, Vec<BindingRecord>), RegistryError> {
        // The generation first: a change between the two reads shows as a
        // generation the host has not seen, and it reads again.
        let generation = self.generation().await?;
        let bindings = self.query("bindings", false, None).await?;
        Ok((generation, bindings.iter().map(binding_of).collect()))
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
        let sha256 = checked_sha(sha256)?;
        let target = Target {
            sha256,
            config,
            limits,
        };
        self.set_binding(key, target, expected_revision, change, "activate")
            .await
    }

    async fn rollback(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<BindingRecord, RegistryError> {
        let Some(now) = self.current(key).await? else {
            return Err(RegistryError::NotFound(format!("binding {key}")));
        };
        let history = self.query(&history_pk(key), true, None).await?;
        let previous = history
            .iter()
            .map(binding_of)
            .find(|b| b.revision < now.revision && b.sha256 != now.sha256)
            .ok_or_else(|| {
                RegistryError::NotFound(format!("an earlier version of binding {key}"))
            })?;
        let target = Target {
            sha256: &previous.sha256,
            config: previous.config,
            limits: previous.limits,
        };
        self.set_binding(key, target, Some(now.revision), change, "rollback")
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
        self.start_shadow_in_table(key, sha256, config, share_percent, change)
            .await
    }

    async fn stop_shadow(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        self.stop_shadow_in_table(key, change).await
    }

    async fn shadows(&self) -> Result<Vec<(ShadowRecord, ShadowTally)>, RegistryError> {
        self.shadows_in_table().await
    }

    async fn add_shadow_tally(
        &self,
        key: &BindingKey,
        sha256: &str,
        tally: ShadowTally,
    ) -> Result<(), RegistryError> {
        self.add_shadow_tally_in_table(key, sha256, tally).await
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        let items = self.query("audit", true, Some(limit)).await?;
        Ok(items
            .iter()
            .map(|item| AuditEntry {
                id: get_n(item, "id"),
                at: get_s(item, "at"),
                actor: get_s(item, "actor"),
                action: get_s(item, "action"),
                subject: get_s(item, "subject"),
                before: item.get("before").and_then(|v| v.as_s().ok()).cloned(),
                after: item.get("after").and_then(|v| v.as_s().ok()).cloned(),
            })
            .collect())
    }
}
