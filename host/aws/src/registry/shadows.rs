//! Shadows in the registry table: a binding's candidate, and its tally
//! which hosts add to with DynamoDB's own arithmetic.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use weir_core::registry::{
    BindingKey, Change, RegistryError, SHADOW_SAMPLES, ShadowRecord, ShadowTally,
};

use super::DynamoRegistry;
use super::items::{binding_sk, checked_sha, condition_failed, key_of, shadow_of};
use crate::dynamodb::{n, s};
use crate::error::{backend_error, build_error};

impl DynamoRegistry {
    pub(super) async fn start_shadow_in_table(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        share_percent: u8,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        let sha256 = checked_sha(sha256)?;
        self.check_handles(key, sha256).await?;
        let record = ShadowRecord {
            key: key.clone(),
            sha256: sha256.to_owned(),
            config,
            share_percent: share_percent.min(100),
            started_by: change.actor.to_owned(),
            started_at: change.at.to_owned(),
        };
        let mut item = key_of("shadows", &binding_sk(key));
        item.extend([
            ("event_type".to_owned(), s(&key.event_type)),
            ("sha256".to_owned(), s(sha256)),
            (
                "config".to_owned(),
                s(serde_json::to_string(&record.config).unwrap_or_else(|_| "[]".into())),
            ),
            ("share_percent".to_owned(), n(record.share_percent)),
            ("started_by".to_owned(), s(change.actor)),
            ("started_at".to_owned(), s(change.at)),
        ]);
        if let Some(tenant) = &key.tenant {
            item.insert("tenant".to_owned(), s(tenant));
        }
        let after = format!("{sha256} ({}%)", record.share_percent);
        let items = vec![
            self.put(item, None)?,
            self.generation_bump()?,
            self.audit_put(change, "shadow-start", &key.to_string(), None, Some(&after))?,
        ];
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| {
                backend_error(
                    format!(
                        "starting a shadow of {key} in registry table {}",
                        self.table
                    ),
                    e,
                )
            })?;
        Ok(record)
    }

    pub(super) async fn stop_shadow_in_table(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> Result<ShadowRecord, RegistryError> {
        let Some(item) = self.get("shadows", &binding_sk(key)).await? else {
            return Err(RegistryError::NotFound(format!(
                "a shadow of binding {key}"
            )));
        };
        let (record, _) = shadow_of(&item);
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_of("shadows", &binding_sk(key))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| build_error("a registry delete", e))?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.generation_bump()?,
            self.audit_put(
                change,
                "shadow-stop",
                &key.to_string(),
                Some(&record.sha256),
                None,
            )?,
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(record),
            Err(e) if condition_failed(&e) => Err(RegistryError::NotFound(format!(
                "a shadow of binding {key}"
            ))),
            Err(e) => Err(backend_error(
                format!(
                    "stopping the shadow of {key} in registry table {}",
                    self.table
                ),
                e,
            )
            .into()),
        }
    }

    pub(super) async fn shadows_in_table(
        &self,
    ) -> Result<Vec<(ShadowRecord, ShadowTally)>, RegistryError> {
        Ok(self
            .query("shadows", false, None)
            .await?
            .iter()
            .map(shadow_of)
            .collect())
    }

    pub(super) async fn add_shadow_tally_in_table(
        &self,
        key: &BindingKey,
        sha256: &str,
        tally: ShadowTally,
    ) -> Result<(), RegistryError> {
        let samples: Vec<aws_sdk_dynamodb::types::AttributeValue> = tally
            .samples
            .iter()
            .filter_map(|sample| serde_json::to_string(sample).ok())
            .map(s)
            .collect();
        // Counts are added by DynamoDB itself, so hosts never overwrite each
        // other's; samples only while there is room.
        let counts = "ADD compared :c, identical :i, differing :d, candidate_rejected :r";
        let mut with_samples = !samples.is_empty();
        loop {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_of("shadows", &binding_sk(key))))
                .expression_attribute_values(":c", n(tally.compared))
                .expression_attribute_values(":i", n(tally.identical))
                .expression_attribute_values(":d", n(tally.differing))
                .expression_attribute_values(":r", n(tally.candidate_rejected))
                .expression_attribute_values(":sha", s(sha256));
            update = if with_samples {
                update
                    .update_expression(format!("{counts} SET samples = list_append(if_not_exists(samples, :none), :new)"))
                    .condition_expression("sha256 = :sha AND (attribute_not_exists(samples) OR size(samples) < :room)")
                    .expression_attribute_values(":none", aws_sdk_dynamodb::types::AttributeValue::L(Vec::new()))
                    .expression_attribute_values(":new", aws_sdk_dynamodb::types::AttributeValue::L(samples.clone()))
                    .expression_attribute_values(":room", n(SHADOW_SAMPLES))
            } else {
                update
                    .update_expression(counts)
                    .condition_expression("sha256 = :sha")
            };
            match update.send().await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    if with_samples {
                        // Full of samples, or not this shadow: counts alone.
                        with_samples = false;
                        continue;
                    }
                    // Stopped or restarted meanwhile: nothing to add to.
                    return Ok(());
                }
                Err(e) => {
                    return Err(backend_error(
                        format!(
                            "adding to the shadow tally of {key} in registry table {}",
                            self.table
                        ),
                        e,
                    )
                    .into());
                }
            }
        }
    }
}
