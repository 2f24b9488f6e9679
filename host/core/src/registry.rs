//! The plugin registry's seam: immutable, content-addressed plugin versions,
//! and bindings from (tenant or default, event type) to a version, changed
//! only by atomic, audited activations. Hosts poll [`Registry::generation`]
//! and reload the bindings when it moves.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::backend::BackendError;

/// One uploaded plugin version. Never edited once added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the component: its identity.
    pub sha256: String,
    pub size: u64,
    /// The contract it was built against (`0.2.0`, the version of `weir:plugin`).
    pub contract: String,
    pub event_types: Vec<String>,
    pub uploader: String,
    /// RFC 3339 UTC.
    pub uploaded_at: String,
    pub notes: String,
    /// The tenant it was uploaded for, who alone may see and bind it;
    /// `None`: shared, uploaded by an operator, usable by every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Hex SHA-256 of a component: a version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` is a hex SHA-256: what keys built from it may contain.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl PluginVersion {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What a binding binds: a tenant's event type, or the default for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BindingKey {
    /// `None`: the default for tenants without their own binding.
    pub tenant: Option<String>,
    pub event_type: String,
}

impl std::fmt::Display for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.tenant.as_deref().unwrap_or("*"),
            self.event_type
        )
    }
}

/// A binding's own limits over the host's defaults (64 MiB, 1 s a batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingLimits {
    /// Linear memory the plugin may grow to, in MiB (1 to 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// CPU time per batch, in milliseconds (1 to 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
}

impl BindingLimits {
    /// `Err` says which limit is out of range.
    pub fn check(&self) -> Result<(), RegistryError> {
        if self.memory_mib.is_some_and(|m| !(1..=4096).contains(&m)) {
            return Err(RegistryError::Refused(format!(
                "memory_mib {:?}: give 1 to 4096",
                self.memory_mib
            )));
        }
        if self.cpu_ms.is_some_and(|c| !(1..=60_000).contains(&c)) {
            return Err(RegistryError::Refused(format!(
                "cpu_ms {:?}: give 1 to 60000",
                self.cpu_ms
            )));
        }
        Ok(())
    }
}

/// A binding as active now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub key: BindingKey,
    /// The active version's SHA-256.
    pub sha256: String,
    /// Per-binding configuration the plugin sees.
    pub config: Vec<(String, String)>,
    /// Per-binding limits over the host's defaults.
    #[serde(default)]
    pub limits: BindingLimits,
    /// 1 for the first activation, +1 for each change: the value a
    /// conditional activation expects.
    pub revision: u64,
    pub activated_by: String,
    pub activated_at: String,
}

/// A candidate version running in the shadow of a binding: on a share of
/// its live traffic, its outcomes compared with the active version's and
/// never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRecord {
    pub key: BindingKey,
    /// The candidate's SHA-256.
    pub sha256: String,
    pub config: Vec<(String, String)>,
    /// Of the binding's records, how many in a hundred the candidate sees.
    pub share_percent: u8,
    pub started_by: String,
    pub started_at: String,
}

/// How a candidate compared with the active version, so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowTally {
    pub compared: u64,
    /// Same outcome as the active version.
    pub identical: u64,
    /// Another outcome, the candidate not rejecting.
    pub differing: u64,
    /// The candidate rejected a record the active version did not.
    pub candidate_rejected: u64,
    /// A few records whose outcomes differ.
    pub samples: Vec<ShadowSample>,
}

/// How many differing records a tally keeps.
pub const SHADOW_SAMPLES: usize = 10;

impl ShadowTally {
    /// Adds another tally's counts and, up to [`SHADOW_SAMPLES`], samples.
    pub fn add(&mut self, other: ShadowTally) {
        self.compared += other.compared;
        self.identical += other.identical;
        self.differing += other.differing;
        self.candidate_rejected += other.candidate_rejected;
        let room = SHADOW_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// One record the two versions disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowSample {
    pub sequence_number: String,
    /// The outcomes, as the console shows them (`{"outcome": "enrich", …}`).
    pub active: String,
    pub candidate: String,
}

/// One change, for the audit log: who did what, before and after, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// `add-version`, `activate`, `rollback`, `shadow-start`, `shadow-stop`.
    pub action: String,
    /// The binding or version concerned.
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error(
        "{key} changed meanwhile: expected revision {expected:?}, it is at {actual:?}; reload and try again"
    )]
    Conflict {
        key: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Who changes what, and when (RFC 3339 UTC).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub actor: &'a str,
    pub at: &'a str,
}

/// Plugin versions and bindings, behind one small trait with an embedded and
/// an AWS implementation.
pub trait Registry: Send + Sync {
    /// Adds a version, its component and the golden cases it passed (the
    /// JSON case file, kept so they can be run again). `Ok(false)` when this
    /// very component is already there under the same name and version; a
    /// different component under a name and version already taken is
    /// refused: versions are immutable.
    fn add_version(
        &self,
        version: PluginVersion,
        component: Vec<u8>,
        golden: Option<String>,
        change: Change<'_>,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// Versions, newest upload first; of one plugin when `name` is given.
    fn versions(
        &self,
        name: Option<&str>,
    ) -> impl Future<Output = Result<Vec<PluginVersion>, RegistryError>> + Send;

    /// A version's component bytes.
    fn component(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, RegistryError>> + Send;

    /// The golden cases uploaded with a version, if any.
    fn golden(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send;

    /// A number that changes with every activation or rollback: what hosts
    /// poll.
    fn generation(&self) -> impl Future<Output = Result<u64, RegistryError>> + Send;

    /// The generation and every active binding.
    fn bindings(
        &self,
    ) -> impl Future<Output = Result<(u64, Vec<BindingRecord>), RegistryError>> + Send;

    /// Points a binding at a version, atomically, with its configuration
    /// and limits. With `expected_revision: Some(r)`, only if the binding is
    /// still at revision `r` (`Some(0)`: only if it does not exist yet);
    /// `None` applies whatever the binding is at. A mismatch is a
    /// [`RegistryError::Conflict`]. Audited.
    fn activate_with(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        limits: BindingLimits,
        expected_revision: Option<u64>,
        change: Change<'_>,
    ) -> impl Future<Output = Result<BindingRecord, RegistryError>> + Send;

    /// [`Registry::activate_with`] the host's default limits.
    fn activate(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        expected_revision: Option<u64>,
        change: Change<'_>,
    ) -> impl Future<Output = Result<BindingRecord, RegistryError>> + Send {
        self.activate_with(
            key,
            sha256,
            config,
            BindingLimits::default(),
            expected_revision,
            change,
        )
    }

    /// Points a binding back at the version it had before its current one,
    /// with that revision's configuration and limits (a new revision,
    /// audited as `rollback`).
    fn rollback(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> impl Future<Output = Result<BindingRecord, RegistryError>> + Send;

    /// Starts (or restarts, with a fresh tally) a candidate in the shadow of
    /// a binding; the version must handle the event type. Moves the
    /// generation so hosts pick it up. Audited as `shadow-start`.
    fn start_shadow(
        &self,
        key: &BindingKey,
        sha256: &str,
        config: Vec<(String, String)>,
        share_percent: u8,
        change: Change<'_>,
    ) -> impl Future<Output = Result<ShadowRecord, RegistryError>> + Send;

    /// Ends a binding's shadow (after promoting it, or to discard it).
    /// Moves the generation. Audited as `shadow-stop`.
    fn stop_shadow(
        &self,
        key: &BindingKey,
        change: Change<'_>,
    ) -> impl Future<Output = Result<ShadowRecord, RegistryError>> + Send;

    /// Every running shadow with its tally.
    fn shadows(
        &self,
    ) -> impl Future<Output = Result<Vec<(ShadowRecord, ShadowTally)>, RegistryError>> + Send;

    /// Adds what hosts compared to a shadow's tally; ignored when the
    /// binding's shadow is no longer `sha256` (it was stopped or restarted).
    fn add_shadow_tally(
        &self,
        key: &BindingKey,
        sha256: &str,
        tally: ShadowTally,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// The newest audit entries first.
    fn audit(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, RegistryError>> + Send;
}
