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
        contract: "0.2.0".into(),
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

/// Uploads the compiled `tagger` test plugin to `registry` (as alice) and
/// points acme's transaction binding at it: the change a host following the
/// registry must pick up. Returns the version.
pub async fn bind_tagger_for_acme<R: Registry>(registry: &R) -> PluginVersion {
    let component = std::fs::read(crate::build::repo_plugin("tagger")).expect("the tagger plugin");
    let runtime = weir_runtime::Runtime::new(weir_runtime::RuntimeSettings {
        cache_dir: Some(crate::build::shared_cache_dir()),
        ..Default::default()
    })
    .expect("a plugin runtime");
    let version = version_of_component(&runtime, &component);
    registry
        .add_version(version.clone(), component, None, BY_ALICE)
        .await
        .expect("the tagger uploaded");
    registry
        .activate(&acme(), &version.sha256, vec![], None, BY_ALICE)
        .await
        .expect("acme's transaction binding moved to the tagger");
    version
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

    // Limits travel with a revision; out-of-range ones are refused.
    let tight = weir_core::registry::BindingLimits {
        memory_mib: Some(8),
        cpu_ms: Some(50),
    };
    let limited = r
        .activate_with(&acme(), &v2.sha256, vec![], tight, None, BY_ALICE)
        .await
        .unwrap();
    assert_eq!((limited.revision, limited.limits), (3, tight));
    let huge = weir_core::registry::BindingLimits {
        memory_mib: Some(100_000),
        cpu_ms: None,
    };
    assert!(matches!(
        r.activate_with(&acme(), &v2.sha256, vec![], huge, None, BY_ALICE)
            .await,
        Err(RegistryError::Refused(_))
    ));
    let (_, listed) = r.bindings().await.unwrap();
    assert_eq!(listed[0].limits, tight);

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
        (v1.sha256.as_str(), 4)
    );
    assert_eq!(
        (back.config.clone(), back.limits),
        (
            vec![("threshold".to_owned(), "500".to_owned())],
            Default::default()
        ),
        "with the config and limits it had"
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

fn sample(n: u64) -> weir_core::registry::ShadowSample {
    weir_core::registry::ShadowSample {
        sequence_number: n.to_string(),
        active: r#"{"outcome":"enrich"}"#.into(),
        candidate: r#"{"outcome":"drop"}"#.into(),
    }
}

/// Shadows start (moving the generation), add up hosts' tallies (only for
/// the candidate running), keep a bounded number of samples, restart
/// fresh, stop, and are audited.
pub async fn shadows_start_tally_and_stop<R: Registry>(r: &R) {
    use weir_core::registry::{SHADOW_SAMPLES, ShadowTally};
    let v1 = version("tx", "1.0.0", b"one");
    let v2 = version("tx", "2.0.0", b"two");
    r.add_version(v1.clone(), b"one".to_vec(), None, BY_ALICE)
        .await
        .unwrap();
    r.add_version(v2.clone(), b"two".to_vec(), None, BY_ALICE)
        .await
        .unwrap();
    r.activate(&acme(), &v1.sha256, vec![], None, BY_ALICE)
        .await
        .unwrap();
    let before = r.generation().await.unwrap();
    let config = vec![("tag".to_owned(), "blue".to_owned())];
    let started = r
        .start_shadow(&acme(), &v2.sha256, config.clone(), 25, BY_ALICE)
        .await
        .unwrap();
    assert_eq!(
        (started.share_percent, started.config.clone()),
        (25, config)
    );
    assert!(
        r.generation().await.unwrap() > before,
        "hosts see the shadow"
    );
    assert!(matches!(
        r.start_shadow(&acme(), &"0".repeat(64), vec![], 25, BY_ALICE)
            .await,
        Err(RegistryError::NotFound(_))
    ));
    let metric = BindingKey {
        tenant: None,
        event_type: "metric".into(),
    };
    assert!(matches!(
        r.start_shadow(&metric, &v2.sha256, vec![], 25, BY_ALICE)
            .await,
        Err(RegistryError::Refused(_))
    ));

    let first = ShadowTally {
        compared: 3,
        identical: 1,
        differing: 1,
        candidate_rejected: 1,
        samples: vec![sample(7)],
    };
    let second = ShadowTally {
        compared: 2,
        identical: 2,
        ..Default::default()
    };
    r.add_shadow_tally(&acme(), &v2.sha256, first)
        .await
        .unwrap();
    r.add_shadow_tally(&acme(), &v2.sha256, second)
        .await
        .unwrap();
    // A host still running an older shadow adds nothing.
    let stale = ShadowTally {
        compared: 100,
        ..Default::default()
    };
    r.add_shadow_tally(&acme(), &v1.sha256, stale)
        .await
        .unwrap();
    let shadows = r.shadows().await.unwrap();
    assert_eq!(shadows.len(), 1);
    let (record, tally) = &shadows[0];
    assert_eq!(record, &started);
    assert_eq!(
        (
            tally.compared,
            tally.identical,
            tally.differing,
            tally.candidate_rejected
        ),
        (5, 3, 1, 1)
    );
    assert_eq!(tally.samples, vec![sample(7)]);
    let many = ShadowTally {
        compared: 30,
        differing: 30,
        samples: (0..30).map(sample).collect(),
        ..Default::default()
    };
    r.add_shadow_tally(&acme(), &v2.sha256, many).await.unwrap();
    let (_, tally) = &r.shadows().await.unwrap()[0];
    assert_eq!(tally.compared, 35);
    assert!(tally.samples.len() <= SHADOW_SAMPLES);

    // Restarted: a fresh tally.
    r.start_shadow(&acme(), &v2.sha256, vec![], 50, BY_ALICE)
        .await
        .unwrap();
    let (record, tally) = &r.shadows().await.unwrap()[0];
    assert_eq!((record.share_percent, tally.compared), (50, 0));

    let generation = r.generation().await.unwrap();
    let stopped = r.stop_shadow(&acme(), BY_ALICE).await.unwrap();
    assert_eq!(stopped.sha256, v2.sha256);
    assert!(r.generation().await.unwrap() > generation);
    assert!(r.shadows().await.unwrap().is_empty());
    assert!(matches!(
        r.stop_shadow(&acme(), BY_ALICE).await,
        Err(RegistryError::NotFound(_))
    ));
    let actions: Vec<String> = r
        .audit(3)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["shadow-stop", "shadow-start", "shadow-start"]);
}
