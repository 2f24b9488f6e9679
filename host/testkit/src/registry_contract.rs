//! The behaviour every [`Registry`] implementation must have, as functions
//! each backend's tests call on a fresh registry: the embedded one and the
//! AWS one pass the same checks.

use weir_core::registry::sha256_hex;
use weir_core::registry::{BindingKey, Change, PluginVersion, Registry, RegistryError};

/// The version of a real compiled component, as uploaded by alice.
pub fn version_of_component(runtime: &weir_runtime::Runtime, component: &[u8]) -> PluginVersion {
    let info = runtime
        .load(component)
        .expect("a loadable component")
        .info()
        .clone();
    PluginVersion {
        name: info.name,
        version: info.version,
        sha256: info.sha256,
        size: component.len() as u64,
        contract: info.contract_version,
        event_types: info.event_types,
        uploader: "alice".into(),
        uploaded_at: "2024-01-15T10:00:00Z".into(),
        notes: String::new(),
        tenant: None,
    }
}

/// A version of made-up bytes (the registry does not load components).
pub fn version(name: &str, version: &str, component: &[u8]) -> PluginVersion {
    PluginVersion {
        name: name.into(),
        version: version.into(),
        sha256: sha256_hex(component),
        size: component.len() as u64,
        contract: "weir:plugin@0.1.0".into(),
        event_types: vec!["transaction".into()],
        uploader: "alice".into(),
        uploaded_at: format!("2024-01-15T10:0{}:00Z", version.len()),
        notes: String::new(),
        tenant: None,
    }
}

pub const BY_ALICE: Change<'static> = Change {
    actor: "alice",
    at: "2024-01-15T11:00:00Z",
};

pub fn acme() -> BindingKey {
    BindingKey {
        tenant: Some("acme".into()),
        event_type: "transaction".into(),
    }
}

/// Versions are content-addressed and immutable; owners and golden cases
/// are kept; keys outside the registry are refused.
pub async fn versions_are_content_addressed_and_immutable<R: Registry>(r: &R) {
    let v1 = version("tx", "1.0.0", b"component one");
    assert!(
        r.add_version(v1.clone(), b"component one".to_vec(), None, BY_ALICE)
            .await
            .unwrap()
    );
    assert!(
        !r.add_version(v1.clone(), b"component one".to_vec(), None, BY_ALICE)
            .await
            .unwrap(),
        "the same upload twice"
    );
    let other = version("tx", "1.0.0", b"something else");
    let e = r
        .add_version(other, b"something else".to_vec(), None, BY_ALICE)
        .await
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Refused(ref why) if why.contains("immutable")),
        "{e}"
    );
    let mut lying = version("tx", "2.0.0", b"two");
    lying.sha256 = sha256_hex(b"not two");
    assert!(matches!(
        r.add_version(lying, b"two".to_vec(), None, BY_ALICE).await,
        Err(RegistryError::Refused(_))
    ));

    let mut owned = version("tx", "1.1.0", b"v11");
    owned.tenant = Some("acme".into());
    let cases = r#"{"cases": []}"#.to_owned();
    r.add_version(owned, b"v11".to_vec(), Some(cases.clone()), BY_ALICE)
        .await
        .unwrap();
    let listed: Vec<String> = r
        .versions(Some("tx"))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, ["1.1.0", "1.0.0"], "newest first");
    assert_eq!(
        r.component(&v1.sha256).await.unwrap().unwrap(),
        b"component one"
    );
    assert!(r.component("../../etc/passwd").await.is_err());
    assert!(r.golden("../../etc/passwd").await.is_err());

    // The owner and the golden cases come back with the version.
    let v11 = &r.versions(Some("tx")).await.unwrap()[0];
    assert_eq!(v11.tenant.as_deref(), Some("acme"));
    assert_eq!(r.golden(&v11.sha256).await.unwrap(), Some(cases));
    assert_eq!(r.golden(&v1.sha256).await.unwrap(), None);
    assert_eq!(r.versions(Some("tx")).await.unwrap()[1].tenant, None);
}

/// Activations are conditional on the revision, audited, seen through the
/// generation, and roll back to the previous version with its config.
pub async fn activations_are_atomic_revisioned_audited_and_roll_back<R: Registry>(r: &R) {
    let v1 = version("tx", "1.0.0", b"one");
    let v2 = version("tx", "2.0.0", b"two");
    for v in [&v1, &v2] {
        r.add_version(
            v.clone(),
            if v.version == "1.0.0" {
                b"one".to_vec()
            } else {
                b"two".to_vec()
            },
            None,
            BY_ALICE,
        )
        .await
        .unwrap();
    }
    let g0 = r.generation().await.unwrap();
    let config = vec![("threshold".to_owned(), "500".to_owned())];
    let first = r
        .activate(&acme(), &v1.sha256, config.clone(), Some(0), BY_ALICE)
        .await
        .unwrap();
    assert_eq!((first.revision, first.config.clone()), (1, config));
    assert!(r.generation().await.unwrap() > g0, "hosts see the change");

    // Two admins race from revision 1: one wins, the other is told.
    r.activate(&acme(), &v2.sha256, vec![], Some(1), BY_ALICE)
        .await
        .unwrap();
    let e = r
        .activate(&acme(), &v1.sha256, vec![], Some(1), BY_ALICE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Conflict {
                actual: Some(2),
                ..
            }
        ),
        "{e}"
    );

    let unknown = "0".repeat(64);
    assert!(matches!(
        r.activate(&acme(), &unknown, vec![], None, BY_ALICE).await,
        Err(RegistryError::NotFound(_))
    ));
    let wrong_type = BindingKey {
        tenant: None,
        event_type: "metric".into(),
    };
    assert!(matches!(
        r.activate(&wrong_type, &v1.sha256, vec![], None, BY_ALICE)
            .await,
        Err(RegistryError::Refused(_))
    ));

    let back = r
        .rollback(
            &acme(),
            Change {
                actor: "bob",
                at: "2024-01-15T12:00:00Z",
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (back.sha256.as_str(), back.revision),
        (v1.sha256.as_str(), 3)
    );
    assert_eq!(
        back.config,
        vec![("threshold".to_owned(), "500".to_owned())],
        "with the config it had"
    );
    let (generation, bindings) = r.bindings().await.unwrap();
    assert_eq!(generation, r.generation().await.unwrap());
    assert_eq!(bindings, vec![back.clone()]);

    let audit = r.audit(10).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("rollback", "bob"),
            ("activate", "alice"),
            ("activate", "alice"),
            ("add-version", "alice"),
            ("add-version", "alice")
        ]
    );
    assert_eq!(
        (audit[0].before.as_deref(), audit[0].after.as_deref()),
        (Some(v2.sha256.as_str()), Some(v1.sha256.as_str()))
    );
    assert_eq!(audit[0].subject, "acme/transaction");
    let none = BindingKey {
        tenant: None,
        event_type: "transaction".into(),
    };
    assert!(matches!(
        r.rollback(&none, BY_ALICE).await,
        Err(RegistryError::NotFound(_))
    ));
}
