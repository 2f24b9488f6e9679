//! The HTML pages through the router: sign-in sessions, CSRF on every form,
//! escaping, uploads, comparisons, test runs.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use weir_core::registry::Registry as _;

use crate::common::{Answer, BOUNDARY, Fixture, component, fixture, golden, multipart};

/// Signs in with `token`; returns the session cookie.
async fn sign_in(f: &Fixture, token: &str) -> String {
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let answer = f.send(request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    let cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(f: &Fixture, cookie: &str, path: &str) -> Answer {
    let request = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    f.send(request).await
}

async fn post_form(f: &Fixture, cookie: &str, path: &str, form: &str) -> Answer {
    let request = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    f.send(request).await
}

/// The CSRF token the page's forms carry.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[start..start + 64].to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_need_its_csrf_token() {
    let f = fixture().await;
    f.upload(
        &f.admin,
        &component("transaction"),
        Some(&golden("transaction")),
        None,
    )
    .await;

    let anonymous = f
        .send(Request::get("/bindings").body(Body::empty()).unwrap())
        .await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers[header::LOCATION], "/login");
    let wrong = f
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("token=weir_nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let cookie = sign_in(&f, &f.admin).await;
    let bindings = page(&f, &cookie, "/bindings").await;
    assert_eq!(bindings.status, StatusCode::OK);
    let csrf = csrf_of(&bindings.text());

    // Without the token, or with another session's: refused, logged, nothing changed.
    let form = "tenant=acme&event_type=transaction&version=transaction%401.0.0";
    let forged = post_form(&f, &cookie, "/bindings/activate", form).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let other_session = sign_in(&f, &f.admin).await;
    let other_csrf = csrf_of(&page(&f, &other_session, "/bindings").await.text());
    let crossed = post_form(
        &f,
        &cookie,
        "/bindings/activate",
        &format!("csrf={other_csrf}&{form}"),
    )
    .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert!(f.console.registry.bindings().await.unwrap().1.is_empty());
    let denied = f.console.access.denied(10).await.unwrap();
    assert!(
        denied
            .iter()
            .any(|d| d.action == "POST /bindings/activate" && d.who == "root")
    );

    let done = post_form(
        &f,
        &cookie,
        "/bindings/activate",
        &format!("csrf={csrf}&{form}&config=high_value_threshold%3D500"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    let html = page(&f, &cookie, "/bindings").await.text();
    assert!(html.contains("data-binding=\"acme/transaction\""), "{html}");
    assert!(html.contains("transaction@1.0.0") && html.contains("high_value_threshold=500"));

    // Signing out ends the session.
    let out = post_form(&f, &cookie, "/logout", &format!("csrf={csrf}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page(&f, &cookie, "/bindings").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn an_upload_from_the_page_is_checked_escaped_compared_and_test_run() {
    let f = fixture().await;
    f.upload(&f.admin, &component("transaction"), None, None)
        .await;
    let cookie = sign_in(&f, &f.tenant_a).await;
    let plugins = page(&f, &cookie, "/plugins").await.text();
    assert!(
        !plugins.contains("name=\"tenant\""),
        "a tenant uploads only for itself"
    );
    let csrf = csrf_of(&plugins);

    let notes = "<script>alert('owned')</script>";
    let tagger = component("tagger");
    let body = multipart(
        &[("csrf", &csrf), ("notes", notes)],
        &[
            ("component", &tagger),
            ("golden", golden("tagger").as_bytes()),
        ],
    );
    let request = Request::post("/plugins")
        .header(header::COOKIE, &cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    let uploaded = f.send(request).await;
    assert_eq!(
        uploaded.status,
        StatusCode::SEE_OTHER,
        "{}",
        uploaded.text()
    );
    let location = uploaded.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let version = page(&f, &cookie, &location).await.text();
    assert!(
        version.contains("&lt;script&gt;alert('owned')&lt;/script&gt;"),
        "{version}"
    );
    assert!(!version.contains(notes));
    assert!(version.contains("acme"), "owned by the tenant");
    assert!(
        version.contains("none declared: every payload of its event types reaches it")
            && version.contains("none declared: any configuration is bound"),
        "the tagger declares no schemas: {version}"
    );

    // Without the CSRF field the upload is refused.
    let body = multipart(&[], &[("component", &tagger)]);
    let request = Request::post("/plugins")
        .header(header::COOKIE, &cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    assert_eq!(f.send(request).await.status, StatusCode::FORBIDDEN);

    // Two versions compared field by field.
    let tx = f
        .api(
            "GET",
            "/api/v1/versions/transaction@1.0.0",
            Some(&f.admin),
            None,
        )
        .await
        .json();
    let tg = f
        .api("GET", "/api/v1/versions/tagger@2.0.0", Some(&f.admin), None)
        .await
        .json();
    // A version's page shows its schemas, and its test run starts from a
    // sample that gets past the input schema.
    let tx_page = page(
        &f,
        &cookie,
        &format!("/versions/{}", tx["sha256"].as_str().unwrap()),
    )
    .await
    .text();
    assert!(
        tx_page.contains("Input schema") && tx_page.contains("high_value_threshold"),
        "{tx_page}"
    );
    assert!(
        tx_page.contains("&quot;amount&quot;: 1"),
        "the sample has the required amount: {tx_page}"
    );
    assert!(
        tx_page.contains("placeholder=\"currency=…  (an ISO 4217 code; default USD)"),
        "the configuration forms name the keys the schema allows: {tx_page}"
    );
    let diff = page(
        &f,
        &cookie,
        &format!(
            "/plugins/tagger/diff?a={}&b={}",
            tx["sha256"].as_str().unwrap(),
            tg["sha256"].as_str().unwrap()
        ),
    )
    .await
    .text();
    assert!(diff.matches("class=\"differs\"").count() >= 5, "{diff}");

    // A test run from the page: events typed in, or a JSON Lines file.
    let sha = tg["sha256"].as_str().unwrap();
    let run = |fields: Vec<(&'static str, String)>, file: Option<&'static str>| {
        let (f, cookie) = (&f, cookie.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let files: Vec<(&str, &[u8])> = file
                .map(|t| ("events_file", t.as_bytes()))
                .into_iter()
                .collect();
            let request = Request::post(format!("/versions/{sha}/test"))
                .header(header::COOKIE, cookie)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from(multipart(&fields, &files)))
                .unwrap();
            f.send(request).await
        }
    };
    let typed =
        r#"[{"event_type": "transaction", "amount": 3, "timestamp": "2024-01-15T10:30:00Z"}]"#;
    let report = run(
        vec![
            ("csrf", csrf.clone()),
            ("tenant", "acme".into()),
            ("config", "tag=green".into()),
            ("events", typed.into()),
        ],
        None,
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text());
    let html = report.text();
    assert!(html.contains("enrich") && html.contains("green"), "{html}");
    let lines = "{\"event_type\": \"transaction\", \"amount\": 1, \"timestamp\": \"2024-01-15T10:30:00Z\"}\n{\"event_type\": \"transaction\", \"amount\": 2, \"timestamp\": \"2024-01-15T10:30:00Z\"}\n";
    let from_file = run(
        vec![
            ("csrf", csrf.clone()),
            ("tenant", "acme".into()),
            ("events", String::new()),
        ],
        Some(lines),
    )
    .await;
    assert_eq!(from_file.status, StatusCode::OK, "{}", from_file.text());
    assert!(
        from_file.text().contains("2 event(s)"),
        "{}",
        from_file.text()
    );
    let no_csrf = run(
        vec![("tenant", "acme".into()), ("events", typed.into())],
        None,
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // Its golden cases, run again from the page.
    let golden_run = post_form(
        &f,
        &cookie,
        &format!("/versions/{sha}/golden"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(
        golden_run.text().contains("2 of 2 passed"),
        "{}",
        golden_run.text()
    );
}

#[tokio::test]
async fn shadows_are_started_shown_and_discarded_from_the_pages() {
    let f = fixture().await;
    f.upload(&f.admin, &component("transaction"), None, None)
        .await;
    f.upload(&f.admin, &component("tagger"), None, None).await;
    let cookie = sign_in(&f, &f.tenant_a).await;
    let csrf = csrf_of(&page(&f, &cookie, "/bindings").await.text());
    let form = format!(
        "csrf={csrf}&tenant=acme&event_type=transaction&version=tagger%402.0.0&share_percent=20&config=tag%3Dx"
    );
    let started = post_form(&f, &cookie, "/shadows/start", &form).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text());
    let html = page(&f, &cookie, "/bindings").await.text();
    assert!(html.contains("data-shadow=\"acme/transaction\""), "{html}");
    assert!(html.contains("tagger@2.0.0") && html.contains("20%"));
    // Without the CSRF token nothing happens.
    let forged = post_form(
        &f,
        &cookie,
        "/shadows/discard",
        "tenant=acme&event_type=transaction",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let discarded = post_form(
        &f,
        &cookie,
        "/shadows/discard",
        &format!("csrf={csrf}&tenant=acme&event_type=transaction"),
    )
    .await;
    assert_eq!(discarded.status, StatusCode::SEE_OTHER);
    assert!(
        !page(&f, &cookie, "/bindings")
            .await
            .text()
            .contains("data-shadow=")
    );

    // The live tail page reloads itself; another tenant's binding is refused.
    let tail = page(&f, &cookie, "/tail?tenant=acme&event_type=transaction").await;
    assert_eq!(tail.status, StatusCode::OK);
    assert!(tail.text().contains("http-equiv=\"refresh\"") && tail.text().contains("tail-records"));
    let other = page(&f, &cookie, "/tail?tenant=globex&event_type=transaction").await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
}
