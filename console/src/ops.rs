//! What the console does, once, for the API and the pages alike: each
//! operation checks the caller's rights (logging refusals) before touching
//! the registry.

use std::collections::BTreeMap;

use axum::extract::Multipart;
use axum::http::StatusCode;
use serde::Serialize;
use weir_core::registry::{
    AuditEntry, BindingKey, BindingLimits, BindingRecord, Change, PluginVersion, Registry,
    ShadowRecord, ShadowTally,
};

use crate::checks::{
    self, CaseSummary, DeclaredSchemas, TestRun, TestRunReport, UploadContext, UploadRefusal,
};
use crate::{ApiError, Console, Principal, now};

/// An upload as sent: multipart fields `component` (the .wasm), and
/// optionally `golden` (a case file), `notes`, `tenant`, and for the pages
/// `csrf`.
#[derive(Debug, Default)]
pub struct UploadForm {
    pub component: Option<Vec<u8>>,
    pub golden: Option<String>,
    pub notes: String,
    pub tenant: Option<String>,
    pub csrf: Option<String>,
}

impl UploadForm {
    pub async fn read(mut multipart: Multipart) -> Result<Self, ApiError> {
        let mut form = Self::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e)),
            };
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            let text = || {
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request(format!("the upload's `{name}` field is not UTF-8 text"))
                })
            };
            match name.as_str() {
                "component" => form.component = Some(bytes.to_vec()),
                // A browser sends an empty file field when no file was chosen.
                "golden" if bytes.is_empty() => {}
                "golden" => form.golden = Some(text()?),
                "notes" => form.notes = text()?,
                "tenant" => form.tenant = Some(text()?).filter(|t| !t.trim().is_empty()),
                "csrf" => form.csrf = Some(text()?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown upload field `{other}`: send component, golden, notes, tenant"
                    )));
                }
            }
        }
        Ok(form)
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the upload is larger than the console takes (its --max-upload-mib); strip the component \
         (`cargo build --release`, no debug info) or raise the limit"
            .to_owned()
    } else {
        format!(
            "the upload is not valid multipart form data: {}",
            e.body_text()
        )
    };
    ApiError::new(status, message)
}

/// The result of an accepted upload.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub version: PluginVersion,
    /// `false`: this very component was already there.
    pub added: bool,
    pub golden: Vec<CaseSummary>,
}

/// One plugin's versions, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub versions: Vec<PluginVersion>,
}

/// A shadow as listed: the candidate, how it compares so far.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowView {
    #[serde(flatten)]
    pub record: ShadowRecord,
    /// `name@version` of the candidate.
    pub candidate: String,
    pub tally: ShadowTally,
}

/// A binding's tenant from a path segment or form field: `*` (or nothing)
/// is the default binding.
pub fn parse_tenant(segment: &str) -> Option<String> {
    let segment = segment.trim();
    (segment != "*" && !segment.is_empty()).then(|| segment.to_owned())
}

impl<R: Registry + 'static> Console<R> {
    pub async fn upload(&self, caller: &Principal, form: UploadForm) -> Result<Uploaded, ApiError> {
        let tenant = match (&form.tenant, caller.tenant()) {
            (None, own) => own.map(str::to_owned),
            (Some(asked), _) => Some(asked.clone()),
        };
        let allowed = caller.is_admin() || tenant.as_deref() == caller.tenant();
        self.require(
            caller,
            allowed,
            format!("upload for tenant {}", tenant.as_deref().unwrap_or("*")),
            "a tenant token uploads only for its own tenant",
        )
        .await?;
        let component = form.component.ok_or_else(|| {
            ApiError::bad_request("the upload has no `component` field: attach the plugin's .wasm")
        })?;
        let (runtime, golden, at) = (self.runtime.clone(), form.golden.clone(), now());
        let (uploader, notes) = (caller.name.clone(), form.notes.clone());
        let tenant_for_check = tenant.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let context = UploadContext {
                uploader: &uploader,
                tenant: tenant_for_check.as_deref(),
                notes: &notes,
                at: &at,
            };
            checks::check_upload(&runtime, &component, golden.as_deref(), &context)
                .map(|(version, cases)| (version, cases, component))
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("checking the upload: {e}"),
            )
        })?;
        let (version, golden_results, component) = checked.map_err(|refusal| {
            let status = match refusal {
                UploadRefusal::BadGoldenFile(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, format!("refused: {refusal}"))
        })?;
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let added = self
            .registry
            .add_version(version.clone(), component, form.golden, change)
            .await?;
        tracing::info!(plugin = %version.label(), sha256 = %version.sha256, by = %caller.name, added, "plugin version uploaded");
        Ok(Uploaded {
            version,
            added,
            golden: golden_results,
        })
    }

    /// The versions the caller may see, newest first.
    pub async fn visible_versions(
        &self,
        caller: &Principal,
        name: Option<&str>,
    ) -> Result<Vec<PluginVersion>, ApiError> {
        let mut versions = self.registry.versions(name).await?;
        versions.retain(|v| caller.may_see_version(v));
        Ok(versions)
    }

    /// The visible versions grouped by plugin, plugins by name.
    pub async fn plugins(&self, caller: &Principal) -> Result<Vec<PluginSummary>, ApiError> {
        let mut by_name: BTreeMap<String, Vec<PluginVersion>> = BTreeMap::new();
        for version in self.visible_versions(caller, None).await? {
            by_name
                .entry(version.name.clone())
                .or_default()
                .push(version);
        }
        Ok(by_name
            .into_iter()
            .map(|(name, versions)| PluginSummary { name, versions })
            .collect())
    }

    /// A version by SHA-256 or `name@version`, if the caller may see it. One
    /// it may not see is "not found", and the attempt is logged.
    pub async fn version(
        &self,
        caller: &Principal,
        reference: &str,
    ) -> Result<PluginVersion, ApiError> {
        let all = match reference.split_once('@') {
            Some((name, _)) => self.registry.versions(Some(name)).await?,
            None => self.registry.versions(None).await?,
        };
        let found = all
            .into_iter()
            .find(|v| v.sha256 == reference || v.label() == reference);
        let not_found = || {
            ApiError::not_found(format!(
                "no plugin version {reference}: give a SHA-256 or name@version from GET /api/v1/versions"
            ))
        };
        match found {
            Some(v) if caller.may_see_version(&v) => Ok(v),
            Some(v) => {
                self.deny(
                    &caller.name,
                    format!("use version {}", v.label()),
                    StatusCode::NOT_FOUND,
                    "another tenant's version",
                )
                .await;
                Err(not_found())
            }
            None => Err(not_found()),
        }
    }

    pub async fn component(
        &self,
        caller: &Principal,
        reference: &str,
    ) -> Result<(PluginVersion, Vec<u8>), ApiError> {
        let version = self.version(caller, reference).await?;
        let bytes = self.component_of(&version).await?;
        Ok((version, bytes))
    }

    /// The component of a version the caller was shown.
    async fn component_of(&self, version: &PluginVersion) -> Result<Vec<u8>, ApiError> {
        self.registry
            .component(&version.sha256)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "the component of {} is missing from the object store",
                        version.label()
                    ),
                )
            })
    }

    /// What a version declares about its payloads and configuration, read
    /// from the component as a host loads it.
    pub async fn schemas(
        &self,
        caller: &Principal,
        reference: &str,
    ) -> Result<DeclaredSchemas, ApiError> {
        let version = self.version(caller, reference).await?;
        self.schemas_of(version).await
    }

    /// What a version the caller was shown declares.
    pub async fn schemas_of(&self, version: PluginVersion) -> Result<DeclaredSchemas, ApiError> {
        let component = self.component_of(&version).await?;
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            runtime
                .load(&component)
                .map(|plugin| DeclaredSchemas::of(&plugin))
                .map_err(|e| format!("{}: {e}", version.label()))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("loading: {e}")))?
        .map_err(|why| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why))
    }

    /// Runs events through a version, as the host would.
    pub async fn test_run(
        &self,
        caller: &Principal,
        reference: &str,
        run: TestRun,
    ) -> Result<TestRunReport, ApiError> {
        if run.events.len() > self.settings.max_test_events {
            return Err(ApiError::bad_request(format!(
                "{} events; a test run takes at most {}",
                run.events.len(),
                self.settings.max_test_events
            )));
        }
        self.require(
            caller,
            caller.is_admin() || caller.tenant() == Some(run.tenant.as_str()),
            format!("test run as tenant {}", run.tenant),
            "a tenant token tests only as its own tenant",
        )
        .await?;
        let (_, component) = self.component(caller, reference).await?;
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.load(&component).map_err(|e| e.to_string())?;
            checks::test_run(&plugin, &run)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("test run: {e}")))?
        .map_err(ApiError::bad_request)
    }

    /// Runs the golden cases uploaded with a version.
    pub async fn run_golden(
        &self,
        caller: &Principal,
        reference: &str,
    ) -> Result<Vec<CaseSummary>, ApiError> {
        let (version, component) = self.component(caller, reference).await?;
        let cases = self
            .registry
            .golden(&version.sha256)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "{} was uploaded without golden cases",
                    version.label()
                ))
            })?;
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.load(&component).map_err(|e| e.to_string())?;
            checks::run_golden(&plugin, &cases, "the stored golden cases")
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("golden run: {e}"),
            )
        })?
        .map_err(ApiError::bad_request)
    }

    /// The generation and the bindings the caller may see.
    pub async fn visible_bindings(
        &self,
        caller: &Principal,
    ) -> Result<(u64, Vec<BindingRecord>), ApiError> {
        let (generation, mut bindings) = self.registry.bindings().await?;
        bindings.retain(|b| caller.may_see_binding(&b.key));
        Ok((generation, bindings))
    }

    pub async fn activate(
        &self,
        caller: &Principal,
        key: &BindingKey,
        reference: &str,
        config: Vec<(String, String)>,
        limits: BindingLimits,
        expected_revision: Option<u64>,
    ) -> Result<BindingRecord, ApiError> {
        self.require_binding_change(caller, key, format!("activate {key}"))
            .await?;
        let version = self.configurable(caller, reference, key, &config).await?;
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let record = self
            .registry
            .activate_with(
                key,
                &version.sha256,
                config,
                limits,
                expected_revision,
                change,
            )
            .await?;
        tracing::info!(binding = %key, plugin = %version.label(), revision = record.revision, by = %caller.name, "binding activated");
        Ok(record)
    }

    /// The version, once the configuration passed its checks for the
    /// binding ([`checks::check_config`]): a configuration it cannot take is
    /// refused here (422), not found out by every batch after the change.
    async fn configurable(
        &self,
        caller: &Principal,
        reference: &str,
        key: &BindingKey,
        config: &[(String, String)],
    ) -> Result<PluginVersion, ApiError> {
        let (version, component) = self.component(caller, reference).await?;
        let runtime = self.runtime.clone();
        let (key, config) = (key.clone(), config.to_vec());
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.load(&component).map_err(|e| e.to_string())?;
            checks::check_config(&plugin, &key, &config)
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("checking the configuration: {e}"),
            )
        })?
        .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why))?;
        Ok(version)
    }

    pub async fn rollback(
        &self,
        caller: &Principal,
        key: &BindingKey,
    ) -> Result<BindingRecord, ApiError> {
        self.require_binding_change(caller, key, format!("roll back {key}"))
            .await?;
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let record = self.registry.rollback(key, change).await?;
        tracing::info!(binding = %key, sha256 = %record.sha256, revision = record.revision, by = %caller.name, "binding rolled back");
        Ok(record)
    }

    /// Refuses (and logs) a change of a binding the caller may not change.
    async fn require_binding_change(
        &self,
        caller: &Principal,
        key: &BindingKey,
        action: String,
    ) -> Result<(), ApiError> {
        let reason = "a tenant token changes only its own tenant's bindings";
        self.require(caller, caller.may_change_binding(key), action, reason)
            .await
    }

    /// The shadows of the bindings the caller may see, with their tallies.
    pub async fn visible_shadows(&self, caller: &Principal) -> Result<Vec<ShadowView>, ApiError> {
        let versions = self.registry.versions(None).await?;
        let mut shadows = self.registry.shadows().await?;
        shadows.retain(|(record, _)| caller.may_see_binding(&record.key));
        Ok(shadows
            .into_iter()
            .map(|(record, tally)| ShadowView {
                candidate: versions
                    .iter()
                    .find(|v| v.sha256 == record.sha256)
                    .map_or_else(|| record.sha256.clone(), PluginVersion::label),
                record,
                tally,
            })
            .collect())
    }

    /// Starts a candidate in the shadow of a binding, on `share_percent` of
    /// its records.
    pub async fn start_shadow(
        &self,
        caller: &Principal,
        key: &BindingKey,
        reference: &str,
        config: Vec<(String, String)>,
        share_percent: u8,
    ) -> Result<ShadowRecord, ApiError> {
        self.require_binding_change(caller, key, format!("start a shadow of {key}"))
            .await?;
        if !(1..=100).contains(&share_percent) {
            return Err(ApiError::bad_request(format!(
                "share_percent {share_percent}: give 1 to 100"
            )));
        }
        let version = self.configurable(caller, reference, key, &config).await?;
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let record = self
            .registry
            .start_shadow(key, &version.sha256, config, share_percent, change)
            .await?;
        tracing::info!(binding = %key, candidate = %version.label(), share_percent, by = %caller.name, "shadow started");
        Ok(record)
    }

    /// Makes a binding's candidate its active version (with the candidate's
    /// config) and ends the shadow.
    pub async fn promote_shadow(
        &self,
        caller: &Principal,
        key: &BindingKey,
    ) -> Result<BindingRecord, ApiError> {
        self.require_binding_change(caller, key, format!("promote the shadow of {key}"))
            .await?;
        let shadows = self.registry.shadows().await?;
        let (record, _) = shadows
            .into_iter()
            .find(|(r, _)| &r.key == key)
            .ok_or_else(|| ApiError::not_found(format!("binding {key} has no shadow")))?;
        // The binding keeps its limits, and the promotion applies only to the
        // revision it was decided on.
        let (_, bindings) = self.registry.bindings().await?;
        let current = bindings.into_iter().find(|b| &b.key == key);
        let (limits, expected_revision) =
            current.map_or((BindingLimits::default(), 0), |b| (b.limits, b.revision));
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let active = self
            .registry
            .activate_with(
                key,
                &record.sha256,
                record.config,
                limits,
                Some(expected_revision),
                change,
            )
            .await?;
        self.registry.stop_shadow(key, change).await?;
        tracing::info!(binding = %key, sha256 = %active.sha256, by = %caller.name, "shadow promoted");
        Ok(active)
    }

    /// Ends a binding's shadow without promoting it.
    pub async fn discard_shadow(
        &self,
        caller: &Principal,
        key: &BindingKey,
    ) -> Result<ShadowRecord, ApiError> {
        self.require_binding_change(caller, key, format!("discard the shadow of {key}"))
            .await?;
        let at = now();
        let change = Change {
            actor: &caller.name,
            at: &at,
        };
        let record = self.registry.stop_shadow(key, change).await?;
        tracing::info!(binding = %key, by = %caller.name, "shadow discarded");
        Ok(record)
    }

    /// A binding's recent records and dead letters. A tenant sees only its
    /// own, the default binding's included.
    pub async fn recent(
        &self,
        caller: &Principal,
        key: &BindingKey,
        limit: usize,
    ) -> Result<crate::tail::Recent, ApiError> {
        self.require(
            caller,
            caller.may_see_binding(key),
            format!("tail {key}"),
            "a tenant token sees only its own tenant's records",
        )
        .await?;
        let tail = self.tail.as_ref().ok_or_else(|| {
            ApiError::not_found("this console has no live tail (`weir console serve` gives it one)")
        })?;
        let tenant = key.tenant.as_deref().or(caller.tenant());
        Ok(tail.recent(&key.event_type, tenant, limit.min(200)).await?)
    }

    /// The audit entries the caller may see, newest first.
    pub async fn visible_audit(
        &self,
        caller: &Principal,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        let mut entries = self.registry.audit(limit).await?;
        if !caller.is_admin() {
            let own: Vec<String> = self
                .visible_versions(caller, None)
                .await?
                .into_iter()
                .filter(|v| v.tenant.is_some())
                .map(|v| v.label())
                .collect();
            entries.retain(|e| caller.may_see_subject(&e.subject, &own));
        }
        Ok(entries)
    }
}
