//! The registry table's items: keys, and records to and from attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use weir_core::registry::{
    BindingKey, BindingRecord, PluginVersion, RegistryError, SHADOW_SAMPLES, ShadowRecord,
    ShadowSample, ShadowTally, is_sha256_hex,
};

use crate::dynamodb::{Item, get_list, get_n, get_s, list, n, s};

pub(super) const SEPARATOR: char = '\u{1f}';

pub(super) fn component_key(sha256: &str) -> String {
    format!("plugins/{sha256}.wasm")
}

pub(super) fn golden_key(sha256: &str) -> String {
    format!("plugins/{sha256}.golden.json")
}

pub(super) fn checked_sha(sha256: &str) -> Result<&str, RegistryError> {
    if is_sha256_hex(sha256) {
        Ok(sha256)
    } else {
        Err(RegistryError::NotFound(format!(
            "plugin version {sha256:?}"
        )))
    }
}

pub(super) fn binding_sk(key: &BindingKey) -> String {
    format!(
        "{}{SEPARATOR}{}",
        key.tenant.as_deref().unwrap_or(""),
        key.event_type
    )
}

pub(super) fn history_pk(key: &BindingKey) -> String {
    format!("history{SEPARATOR}{}", binding_sk(key))
}

pub(super) fn micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(super) fn key_of(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn version_item(pk: &str, sk: &str, v: &PluginVersion) -> Item {
    let mut item = key_of(pk, sk);
    item.extend([
        ("name".to_owned(), s(&v.name)),
        ("version".to_owned(), s(&v.version)),
        ("sha256".to_owned(), s(&v.sha256)),
        ("size".to_owned(), n(v.size)),
        ("contract".to_owned(), s(&v.contract)),
        ("event_types".to_owned(), list(&v.event_types)),
        ("uploader".to_owned(), s(&v.uploader)),
        ("uploaded_at".to_owned(), s(&v.uploaded_at)),
        ("notes".to_owned(), s(&v.notes)),
    ]);
    if let Some(tenant) = &v.tenant {
        item.insert("tenant".to_owned(), s(tenant));
    }
    item
}

pub(super) fn version_of(item: &Item) -> PluginVersion {
    PluginVersion {
        name: get_s(item, "name"),
        version: get_s(item, "version"),
        sha256: get_s(item, "sha256"),
        size: get_n(item, "size"),
        contract: get_s(item, "contract"),
        event_types: get_list(item, "event_types"),
        uploader: get_s(item, "uploader"),
        uploaded_at: get_s(item, "uploaded_at"),
        notes: get_s(item, "notes"),
        tenant: item.get("tenant").and_then(|v| v.as_s().ok()).cloned(),
    }
}

pub(super) fn binding_of(item: &Item) -> BindingRecord {
    BindingRecord {
        key: BindingKey {
            tenant: item.get("tenant").and_then(|v| v.as_s().ok()).cloned(),
            event_type: get_s(item, "event_type"),
        },
        sha256: get_s(item, "sha256"),
        config: serde_json::from_str(&get_s(item, "config")).unwrap_or_default(),
        limits: serde_json::from_str(&get_s(item, "limits")).unwrap_or_default(),
        revision: get_n(item, "revision"),
        activated_by: get_s(item, "activated_by"),
        activated_at: get_s(item, "activated_at"),
    }
}

pub(super) fn binding_fields(record: &BindingRecord) -> Item {
    let mut item = HashMap::from([
        ("event_type".to_owned(), s(&record.key.event_type)),
        ("sha256".to_owned(), s(&record.sha256)),
        (
            "config".to_owned(),
            s(serde_json::to_string(&record.config).unwrap_or_else(|_| "[]".into())),
        ),
        (
            "limits".to_owned(),
            s(serde_json::to_string(&record.limits).unwrap_or_else(|_| "{}".into())),
        ),
        ("revision".to_owned(), n(record.revision)),
        ("activated_by".to_owned(), s(&record.activated_by)),
        ("activated_at".to_owned(), s(&record.activated_at)),
    ]);
    if let Some(tenant) = &record.key.tenant {
        item.insert("tenant".to_owned(), s(tenant));
    }
    item
}

pub(super) fn shadow_of(item: &Item) -> (ShadowRecord, ShadowTally) {
    let record = ShadowRecord {
        key: BindingKey {
            tenant: item.get("tenant").and_then(|v| v.as_s().ok()).cloned(),
            event_type: get_s(item, "event_type"),
        },
        sha256: get_s(item, "sha256"),
        config: serde_json::from_str(&get_s(item, "config")).unwrap_or_default(),
        share_percent: get_n(item, "share_percent"),
        started_by: get_s(item, "started_by"),
        started_at: get_s(item, "started_at"),
    };
    let samples = item
        .get("samples")
        .and_then(|v| v.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_s().ok())
                .filter_map(|text| serde_json::from_str::<ShadowSample>(text).ok())
                .take(SHADOW_SAMPLES)
                .collect()
        })
        .unwrap_or_default();
    let tally = ShadowTally {
        compared: get_n(item, "compared"),
        identical: get_n(item, "identical"),
        differing: get_n(item, "differing"),
        candidate_rejected: get_n(item, "candidate_rejected"),
        samples,
    };
    (record, tally)
}

/// Whether a transaction failed only because a condition did not hold.
pub(super) fn condition_failed(
    e: &SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    e.as_service_error()
        .and_then(|s| match s {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        })
        .is_some_and(|c| {
            c.cancellation_reasons()
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
        })
}
