//! A console on a fresh embedded registry with the real compiled plugins, and
//! helpers to call it through its router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;
use weir_console::tail::{DeadLetterSource, ObjectTail};
use weir_console::{AccessStore, Console, ConsoleSettings, Role};
use weir_core::registry::Registry;
use weir_embedded::{EmbeddedRegistry, LocalObjectStore, SqliteState};
use weir_runtime::{Runtime, RuntimeSettings};
use weir_testkit::build::{repo_plugin, repo_root, shared_cache_dir};

pub struct Fixture<R = EmbeddedRegistry> {
    pub dir: tempfile::TempDir,
    pub console: Arc<Console<R>>,
    pub admin: String,
    /// Tenant `acme`.
    pub tenant_a: String,
    /// Tenant `globex`.
    pub tenant_b: String,
}

pub async fn fixture() -> Fixture {
    fixture_with(ConsoleSettings::default()).await
}

pub async fn fixture_with(settings: ConsoleSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let registry = EmbeddedRegistry::open(state.clone(), objects.clone())
        .await
        .unwrap();
    let mut f = fixture_on(dir, registry, settings).await;
    // The live tail reads what a pipeline on the same backends writes.
    let console = Arc::into_inner(f.console).expect("the only handle");
    f.console = Arc::new(console.with_tail(ObjectTail {
        objects,
        dead_letters: DeadLetterSource::Embedded(state),
    }));
    f
}

/// A console on `registry`, its tokens under `dir`.
pub async fn fixture_on<R: Registry + 'static>(
    dir: tempfile::TempDir,
    registry: R,
    settings: ConsoleSettings,
) -> Fixture<R> {
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(shared_cache_dir()),
        ..Default::default()
    })
    .unwrap();
    let access = AccessStore::open(dir.path().join("state/console.db")).unwrap();
    let at = "2024-01-15T10:00:00Z";
    let admin = access.create_token("root", Role::Admin, at).await.unwrap();
    let tenant_a = access
        .create_token("acme-ci", Role::Tenant("acme".into()), at)
        .await
        .unwrap();
    let tenant_b = access
        .create_token("globex-ci", Role::Tenant("globex".into()), at)
        .await
        .unwrap();
    let console = Arc::new(Console::new(registry, runtime, access, settings));
    Fixture {
        dir,
        console,
        admin,
        tenant_a,
        tenant_b,
    }
}

/// A compiled plugin's component bytes.
pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(repo_plugin(name)).unwrap()
}

/// A plugin's golden case file: the examples' own, or the tagger's.
pub fn golden(name: &str) -> String {
    let examples = repo_root()
        .join("plugins/examples")
        .join(name)
        .join("golden.json");
    let path = if examples.exists() {
        examples
    } else {
        repo_root().join("plugins").join(name).join("golden.json")
    };
    std::fs::read_to_string(path).unwrap()
}

pub const BOUNDARY: &str = "weir-test-boundary-7d1f";

/// A multipart/form-data body of text fields and one file field per
/// `(name, bytes)` in `files`.
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl<R: Registry + 'static> Fixture<R> {
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = weir_console::router(self.console.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// An API call with `token` (none: anonymous) and a JSON body.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    /// `POST /api/v1/versions` with a component and optional golden cases and tenant.
    pub async fn upload(
        &self,
        token: &str,
        component: &[u8],
        golden: Option<&str>,
        tenant: Option<&str>,
    ) -> Answer {
        let mut fields = vec![("notes", "uploaded by a test")];
        if let Some(tenant) = tenant {
            fields.push(("tenant", tenant));
        }
        let mut files: Vec<(&str, &[u8])> = vec![("component", component)];
        if let Some(golden) = golden {
            files.push(("golden", golden.as_bytes()));
        }
        let request = Request::post("/api/v1/versions")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(multipart(&fields, &files)))
            .unwrap();
        self.send(request).await
    }
}
