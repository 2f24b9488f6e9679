//! Who may do what: API tokens (stored as SHA-256 hashes), the two roles,
//! sessions for the HTML pages with their CSRF tokens, and the log of
//! denied actions.
//!
//! Tokens are 256 random bits, so a plain SHA-256 of them cannot be reversed
//! or guessed; a slow password hash would only slow every request down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_core::registry::{BindingKey, PluginVersion};

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", content = "tenant", rename_all = "lowercase")]
pub enum Role {
    /// Everything, for every tenant, and the tokens themselves.
    Admin,
    /// Only its own tenant: its own and the shared versions, its own bindings.
    Tenant(String),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's name: the actor in the audit log.
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The tenant a tenant token is limited to.
    pub fn tenant(&self) -> Option<&str> {
        match &self.role {
            Role::Admin => None,
            Role::Tenant(t) => Some(t),
        }
    }

    /// Shared versions and the caller's own.
    pub fn may_see_version(&self, version: &PluginVersion) -> bool {
        self.is_admin() || version.tenant.is_none() || version.tenant.as_deref() == self.tenant()
    }

    /// Tenants see the defaults that apply to them, and their own bindings.
    pub fn may_see_binding(&self, key: &BindingKey) -> bool {
        self.is_admin() || key.tenant.is_none() || key.tenant.as_deref() == self.tenant()
    }

    /// Tenants change only their own bindings; defaults are the operators'.
    pub fn may_change_binding(&self, key: &BindingKey) -> bool {
        self.is_admin() || (key.tenant.is_some() && key.tenant.as_deref() == self.tenant())
    }

    /// Audit entries about the caller's own bindings and versions.
    pub fn may_see_subject(&self, subject: &str, own_versions: &[String]) -> bool {
        match self.tenant() {
            None => true,
            Some(t) => {
                subject.split_once('/').map(|(tenant, _)| tenant) == Some(t)
                    || own_versions.iter().any(|v| v == subject)
            }
        }
    }
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    pub created_at: String,
}

/// An action refused, for the operators.
#[derive(Debug, Clone, Serialize)]
pub struct Denied {
    pub at: String,
    /// The token's name, or `anonymous`.
    pub who: String,
    /// `METHOD /path`.
    pub action: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("a token named `{0}` exists; revoke it first or choose another name")]
    NameTaken(String),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Interrupted(String),
    #[error("the console's access database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS console_tokens (
        name TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,         -- 'admin' or 'tenant'
        tenant TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS console_denied (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        reason TEXT NOT NULL
    );
";

/// Tokens and denied actions, in the console's own SQLite file.
#[derive(Debug, Clone)]
pub struct AccessStore {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

/// `n` random bytes from the OS, hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

impl AccessStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AccessError> {
        let path = path.as_ref().to_path_buf();
        let database = |source| AccessError::Database {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AccessError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let connection = Connection::open(&path).map_err(database)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
            .and_then(|()| connection.execute_batch(SCHEMA))
            .map_err(database)?;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AccessError> {
        let (connection, path) = (self.connection.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&connection).map_err(|source| AccessError::Database { path, source })
        })
        .await
        .unwrap_or_else(|e| {
            Err(AccessError::Interrupted(format!(
                "the access database task did not finish: {e}"
            )))
        })
    }

    /// Creates a token and returns it: the only time it is ever shown.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        at: &str,
    ) -> Result<String, AccessError> {
        let token = format!("weir_{}", random_hex(32));
        let (hash, name_owned, at) = (token_hash(&token), name.to_owned(), at.to_owned());
        let (kind, tenant) = match role {
            Role::Admin => ("admin", None),
            Role::Tenant(t) => ("tenant", Some(t)),
        };
        let inserted = self
            .with(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO console_tokens (name, token_sha256, role, tenant, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name_owned, hash, kind, tenant, at],
                )
            })
            .await?;
        if inserted == 0 {
            return Err(AccessError::NameTaken(name.to_owned()));
        }
        Ok(token)
    }

    /// The caller a token belongs to, if it is a live token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AccessError> {
        let hash = token_hash(token);
        self.with(move |c| {
            c.query_row(
                "SELECT name, role, tenant FROM console_tokens WHERE token_sha256 = ?1",
                params![hash],
                |row| {
                    let role: String = row.get(1)?;
                    let tenant: Option<String> = row.get(2)?;
                    Ok(Principal {
                        name: row.get(0)?,
                        role: match (role.as_str(), tenant) {
                            ("tenant", Some(t)) => Role::Tenant(t),
                            _ => Role::Admin,
                        },
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Revokes a token; `false` when there was none of that name.
    pub async fn revoke(&self, name: &str) -> Result<bool, AccessError> {
        let name = name.to_owned();
        self.with(move |c| c.execute("DELETE FROM console_tokens WHERE name = ?1", params![name]))
            .await
            .map(|n| n > 0)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT name, role, tenant, created_at FROM console_tokens ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                let role: String = row.get(1)?;
                let tenant: Option<String> = row.get(2)?;
                Ok(TokenInfo {
                    name: row.get(0)?,
                    role: match (role.as_str(), tenant) {
                        ("tenant", Some(t)) => Role::Tenant(t),
                        _ => Role::Admin,
                    },
                    created_at: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Logs a refused action (also to the structured log).
    pub async fn record_denied(&self, denied: Denied) {
        tracing::warn!(who = %denied.who, action = %denied.action, reason = %denied.reason, "console action denied");
        let result = self
            .with(move |c| {
                c.execute(
                    "INSERT INTO console_denied (at, who, action, reason) VALUES (?1, ?2, ?3, ?4)",
                    params![denied.at, denied.who, denied.action, denied.reason],
                )
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record a denied action");
        }
    }

    /// The newest denied actions first.
    pub async fn denied(&self, limit: usize) -> Result<Vec<Denied>, AccessError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT at, who, action, reason FROM console_denied ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit], |row| {
                Ok(Denied {
                    at: row.get(0)?,
                    who: row.get(1)?,
                    action: row.get(2)?,
                    reason: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// Every form posts it back; a request without it is refused.
    pub csrf: String,
    expires: Instant,
}

/// Sessions of the HTML pages, in memory: a restart signs everyone out.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; returns its id (the cookie's value).
    pub fn start(&self, principal: Principal) -> String {
        let id = random_hex(32);
        let session = Session {
            principal,
            csrf: random_hex(32),
            expires: Instant::now() + self.ttl,
        };
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session);
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn end(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
