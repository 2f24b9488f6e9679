//! The console in a real headless browser (Debian's chromium, driven over
//! WebDriver by chromedriver; `.ci/run` installs both): a person signs in,
//! uploads a plugin with its golden cases, activates it for a tenant, and sees
//! the active version on the bindings page.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use weir_core::registry::Registry as _;
use weir_testkit::build::{repo_plugin, repo_root};

use crate::common::fixture;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills chromedriver (and its browser) however the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn find(browser: &fantoccini::Client, selector: &str) -> fantoccini::elements::Element {
    match browser.find(Locator::Css(selector)).await {
        Ok(element) => element,
        Err(e) => panic!(
            "no `{selector}` on {}: {e}\n{}",
            browser
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default(),
            browser.source().await.unwrap_or_default()
        ),
    }
}

/// Waits for the navigation a click started to land on a path `matches` accepts.
async fn wait_for_path(browser: &fantoccini::Client, what: &str, matches: impl Fn(&str) -> bool) {
    for _ in 0..100 {
        if matches(browser.current_url().await.unwrap().path()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "never reached {what}; at {}:\n{}",
        browser.current_url().await.unwrap(),
        browser.source().await.unwrap_or_default()
    );
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uploads_a_plugin_activates_it_for_a_tenant_and_sees_it_active() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        // CI installs them (`.ci/run`); elsewhere say how to get them.
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "skipped: no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(weir_console::serve(listener, f.console.clone()));

    let port = free_port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut attempt = 0;
    let browser = loop {
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&webdriver)
            .await;
        match connected {
            Ok(client) => break client,
            Err(e) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                if attempt == 50 {
                    panic!("chromedriver did not start a session: {e}");
                }
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    };

    browser
        .goto(&format!("{console_url}/plugins"))
        .await
        .unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/login"),
        "signed out: sent to sign in"
    );
    find(&browser, "input[name=token]")
        .await
        .send_keys(&f.admin)
        .await
        .unwrap();
    find(&browser, "button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "the bindings page", |p| p == "/bindings").await;

    browser
        .goto(&format!("{console_url}/plugins"))
        .await
        .unwrap();
    let tagger = repo_plugin("tagger");
    let cases = repo_root().join("plugins/tagger/golden.json");
    let upload = "form[action='/plugins'] ";
    find(&browser, &format!("{upload}input[name=component]"))
        .await
        .send_keys(tagger.to_str().unwrap())
        .await
        .unwrap();
    find(&browser, &format!("{upload}input[name=golden]"))
        .await
        .send_keys(cases.to_str().unwrap())
        .await
        .unwrap();
    find(&browser, &format!("{upload}input[name=notes]"))
        .await
        .send_keys("from the browser")
        .await
        .unwrap();
    find(&browser, &format!("{upload}button[type=submit]"))
        .await
        .click()
        .await
        .unwrap();

    // On the new version's page: activate it for tenant acme.
    wait_for_path(&browser, "the new version's page", |p| {
        p.starts_with("/versions/")
    })
    .await;
    let activate = "form[action='/bindings/activate'] ";
    let tenant = find(&browser, &format!("{activate}input[name=tenant]")).await;
    tenant.clear().await.unwrap();
    tenant.send_keys("acme").await.unwrap();
    find(&browser, &format!("{activate}textarea[name=config]"))
        .await
        .send_keys("tag=from-the-browser")
        .await
        .unwrap();
    find(&browser, &format!("{activate}button[type=submit]"))
        .await
        .click()
        .await
        .unwrap();

    wait_for_path(&browser, "the bindings page", |p| p == "/bindings").await;
    let active = find(
        &browser,
        "tr[data-binding='acme/transaction'] td.active-version",
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(active, "tagger@2.0.0");
    browser.close().await.unwrap();

    // And it is what the registry, which the hosts follow, now says.
    let (_, bindings) = f.console.registry.bindings().await.unwrap();
    let acme = bindings
        .iter()
        .find(|b| b.key.tenant.as_deref() == Some("acme"))
        .unwrap();
    assert_eq!(
        acme.config,
        vec![("tag".to_owned(), "from-the-browser".to_owned())]
    );
    assert_eq!(acme.activated_by, "root");
}
