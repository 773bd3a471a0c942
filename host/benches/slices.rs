//! The two feature slices. The feedback desk (examples/feedback-desk) with
//! 1,000 submissions: its main pages (the inbox, signed in as an admin, and
//! the public form) and its main API call (a page of 25 submissions) at a
//! fixed 100 req/s with oha, and the inbox's first paint in headless
//! Chromium (the browser's first contentful paint, and the frame of the
//! first rows, a User Timing mark the page sets). The shared checklist
//! (examples/shared-checklist) with a 50-item checklist: its page and its
//! main API call (the checklist) likewise. Prints tab-separated lines for
//! benches/report.py:
//!   <scenario>  <connections>  <req/s>  <p50 ms>  <p99 ms>  <failed or non-2xx>
//!   inbox_paint  <submissions>  <loads>  <FCP p50 ms>  <rows p50 ms>  <rows slowest ms>

use std::sync::Arc;
use std::time::Duration;

use plinth::storage::Op;
use serde_json::{Value, json};

#[path = "../../tests/integration/chromium.rs"]
mod chromium;
#[path = "../../tests/integration/slice_config.rs"]
mod slice_config;

const SUBMISSIONS: usize = 1_000;
const RATE: u32 = 100;
const LOADS: usize = 7;
const ADMIN: &str = "admin@example.com";
const ITEMS: usize = 50;
const PASSWORD: &str = "velvet lantern orchard";

/// A slice's config (examples/{slice}) with the components built for
/// tests; `own` is its own plugin and component.
fn deployment(dir: &std::path::Path, slice: &str, own: (&str, &str)) -> std::path::PathBuf {
    let config = slice_config::config(slice, own, &slice_config::policies_path(slice));
    // One load generator at 100 req/s is not the abuse the limits are for.
    let config = format!(
        "{config}\n[rate_limits.classes.page]\nper_address = \"100000/min\"\n\n\
         [rate_limits.classes.default]\nper_address = \"100000/min\"\nper_principal = \"100000/min\"\n"
    );
    let path = dir.join("plinth.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn invite(config: &std::path::Path, email: &str, roles: &str) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plinth"));
    command.args(["admin", "invite", "--config", config.to_str().unwrap(), "--email", email]);
    if !roles.is_empty() {
        command.args(["--roles", roles]);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let start = stdout.find("token=").expect("an invitation") + "token=".len();
    stdout[start..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// A slice's server, in this process, with `email` invited (`roles`).
struct Slice {
    base: String,
    app: Arc<plinth::App>,
    /// `name=value` of the session cookie of `email`, signed in.
    cookie: String,
    /// That session's CSRF token.
    csrf: String,
    _dir: tempfile::TempDir,
}

async fn serve(slice: &str, own: (&str, &str), email: &str, roles: &str) -> Slice {
    let dir = tempfile::tempdir().unwrap();
    let config_path = deployment(dir.path(), slice, own);
    let token = invite(&config_path, email, roles);
    let config = plinth::Config::load(&config_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Arc::new(plinth::App::build(config).await.unwrap());
    tokio::spawn(plinth::run(listener, app.clone(), std::future::pending::<()>()));
    let client = reqwest::Client::new();
    let accepted = client
        .post(format!("{base}/v1/accounts/accept-invite"))
        .json(&json!({ "token": token, "password": PASSWORD, "display_name": "Bench" }))
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success());
    let signed_in = client
        .post(format!("{base}/v1/sessions"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = signed_in.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    Slice { base, app, cookie, csrf, _dir: dir }
}

/// Submissions as the forms plugin stores them, oldest first.
async fn seed(app: &plinth::App) {
    let deployment = app.deployment.load();
    let forms = deployment.plugins.iter().find(|p| p.plugin.name() == "forms").unwrap();
    let namespace = forms.plugin.namespace();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let topics = ["problem", "idea", "praise"];
    let ops = (0..SUBMISSIONS)
        .map(|n| {
            let at = now - (SUBMISSIONS - n) as u64;
            let id = format!("{:013}-{n:022}", at * 1000);
            let record = json!({
                "id": id, "form": "feedback", "version": 1, "submitted_at": at, "submitter": null, "locale": "pl",
                "data": { "name": format!("Osoba {n}"), "email": format!("person{n}@example.com"),
                          "topic": topics[n % 3], "message": "Przycisk eksportu nic nie robi, kiedy filtruję listę." },
            });
            Op::Set(format!("sub/feedback/{id}"), serde_json::to_vec(&record).unwrap())
        })
        .collect();
    namespace.batch(ops).await.unwrap();
}

/// One fixed-rate oha run: its figures as a report line.
fn oha(scenario: &str, url: &str, header: &str) -> String {
    let tools =
        std::env::var("PLINTH_BENCH_TOOLS").unwrap_or_else(|_| format!("{}/.cache/plinth-bench-tools", env!("HOME")));
    let output = std::process::Command::new(format!("{tools}/bin/oha"))
        .args(["-z", "10s", "-c", "4", "-q", &RATE.to_string(), "--latency-correction", "--no-tui"])
        .args(["--output-format", "json", "-H", header, url])
        .output()
        .expect("oha (benches/run.sh installs it)");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let bad: u64 = report["statusCodeDistribution"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    let ms = |p: &str| report["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0;
    format!(
        "{scenario}\t4\t{:.2}\t{:.3}\t{:.3}\t{bad}",
        report["summary"]["requestsPerSec"].as_f64().unwrap(),
        ms("p50"),
        ms("p99")
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    checklist().await;
    let desk = serve("feedback-desk", ("desk", plinth_test_guests::DESK), ADMIN, "admin").await;
    seed(&desk.app).await;
    let (base, cookie) = (&desk.base, &desk.cookie);

    println!("{}", oha("slice: desk inbox page (signed in)", &format!("{base}/desk"), &format!("cookie: {cookie}")));
    println!("{}", oha("slice: desk form page", &format!("{base}/forms/feedback"), "accept: text/html"));
    println!(
        "{}",
        oha(
            "slice: desk API, 25 submissions",
            &format!("{base}/v1/forms/feedback/submissions?limit=25"),
            &format!("cookie: {cookie}")
        )
    );

    // The inbox's first paint, each load from a fresh navigation.
    let driver = chromium::Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    browser.goto(&format!("{base}/desk/sign-in")).await.unwrap();
    let field = |css: &'static str| browser.wait().for_element(fantoccini::Locator::Css(css));
    field("#email").await.unwrap().send_keys(ADMIN).await.unwrap();
    field("#password").await.unwrap().send_keys(PASSWORD).await.unwrap();
    field("#sign-in button").await.unwrap().click().await.unwrap();
    field("#inbox").await.unwrap();
    let (mut fcp, mut rows) = (Vec::new(), Vec::new());
    for _ in 0..LOADS {
        browser.goto(&format!("{base}/desk")).await.unwrap();
        let mut timing = Value::Null;
        for _ in 0..400 {
            timing = browser
                .execute(
                    "const rows = performance.getEntriesByName('inbox-rows')[0];
                     const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                     return rows && fcp ? [fcp.startTime, rows.startTime] : null",
                    vec![],
                )
                .await
                .unwrap();
            if !timing.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let timing = timing.as_array().expect("the inbox showed its rows").clone();
        fcp.push(timing[0].as_f64().unwrap());
        rows.push(timing[1].as_f64().unwrap());
    }
    browser.close().await.unwrap();
    let slowest = rows.iter().copied().fold(0.0, f64::max);
    println!("inbox_paint\t{SUBMISSIONS}\t{LOADS}\t{:.1}\t{:.1}\t{slowest:.1}", median(&mut fcp), median(&mut rows));
}

/// The shared checklist: a checklist of [`ITEMS`] items, its page and the
/// checklist itself, read by its owner.
async fn checklist() {
    let list = serve("shared-checklist", ("lists", plinth_test_guests::LISTS), "ada@example.com", "").await;
    let (base, cookie) = (&list.base, &list.cookie);
    let items: serde_json::Map<String, Value> = (0..ITEMS)
        .map(|n| (format!("item{n}"), json!({ "text": format!("Item number {n}"), "done": n % 3 == 0 })))
        .collect();
    let order: Vec<String> = (0..ITEMS).map(|n| format!("item{n}")).collect();
    let made = reqwest::Client::new()
        .put(format!("{base}/v1/state/checklists/groceries"))
        .header("cookie", cookie)
        .header("if-none-match", "*")
        .header("x-csrf-token", &list.csrf)
        .json(&json!({ "title": "Groceries", "items": items, "order": order }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let header = format!("cookie: {cookie}");
    println!("{}", oha("slice: checklist page (signed in)", &format!("{base}/lists/groceries"), &header));
    println!(
        "{}",
        oha("slice: checklist API, the checklist", &format!("{base}/v1/state/checklists/groceries"), &header)
    );
}
