//! `vfc demo`: one command reaches an excursion and writes its alert email.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `vfc demo` on ports the service picks (port 0), its summary on `out`.
fn demo(data: &std::path::Path, out: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_vfc"))
        .args(["demo", "--timeline", "8"])
        .env("VFC_DATA_DIR", data)
        .env("VFC_HTTP_ADDR", "127.0.0.1:0")
        .env("VFC_MQTT_EMBEDDED_ADDR", "127.0.0.1:0")
        .env_remove("VFC_DATABASE_URL")
        .env_remove("VFC_MQTT_URL")
        .env_remove("VFC_SMTP_URL")
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("log")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reaches_an_excursion_and_writes_its_email() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = dir.path().join("demo.out");
    let mut child = demo(&data, &out);
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let logs = || std::fs::read_to_string(out.with_extension("log")).unwrap_or_default();

    let start = Instant::now();
    while !read().contains("its alert email is") {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("vfc demo exited with {status}:\n{}\n{}", read(), logs());
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no alert email after 90 s:\n{}\n{}",
            read(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    let token = lines
        .iter()
        .position(|l| l.contains("state-coordinator token"))
        .map(|i| lines[i + 1].trim().to_string())
        .expect("the token is printed");
    // The summary names where the service listens, as it bound it (port 0: a free port).
    let ports: Value = serde_json::from_slice(&std::fs::read(data.join("ports.json")).unwrap()).unwrap();
    let (http, mqtt) = (ports["http"].as_str().unwrap(), ports["mqtt"].as_str().unwrap());
    assert!(!http.ends_with(":0") && !mqtt.ends_with(":0"), "{ports}");
    assert!(text.contains(&format!("http://{http}")), "{text}");
    assert!(text.contains(&format!("MQTT broker        mqtt://{mqtt}")), "{text}");

    // The email is the refrigerator's temperature alert, to location A's primary coordinator.
    let emails: Vec<String> = std::fs::read_dir(data.join("outbox"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let alert = emails
        .iter()
        .find(|e| e.contains("Subject: VFC temperature alert"))
        .unwrap_or_else(|| panic!("no temperature alert among {emails:?}"));
    assert!(alert.contains("012345A Vaccine refrigerator"), "{alert}");
    assert!(alert.contains("primary.a@example.org"), "{alert}");
    assert!(
        !emails.iter().any(|e| e.contains("no data")),
        "replayed readings do not make a logger silent: {emails:?}"
    );

    // The API, with the printed token, shows the excursion.
    let list: Value = reqwest::Client::new()
        .get(format!("http://{http}/api/v1/excursions?location=012345A"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found = list["excursions"].as_array().unwrap();
    assert!(
        found
            .iter()
            .any(|e| e["serial"] == "DEMO-012345A-FRIDGE" && e["alerted"] == true),
        "{list}"
    );

    // One order waits for review; another shipped with a tracking number.
    let orders: Value = reqwest::Client::new()
        .get(format!("http://{http}/api/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = |s: &str| {
        orders["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["status"] == s)
            .cloned()
    };
    let in_review = status("in_review").expect("an order in review");
    assert_eq!(in_review["location"], "012345A", "{orders}");
    let shipped = status("shipped").expect("a shipped order");
    let order: Value = reqwest::Client::new()
        .get(format!("http://{http}/api/v1/orders/{}", shipped["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        order["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tracking_number"] == "1Z999AA10123456784"),
        "{order}"
    );

    // The printed people sign in to the pages, second factor included: the state coordinator's
    // home has the excursion and the order in review, the clinic coordinator's the clinic.
    let state_home = page_as(http, &text, "state coordinator", "/").await;
    let excursion = &found.iter().find(|e| e["serial"] == "DEMO-012345A-FRIDGE").unwrap()["id"];
    assert!(
        state_home.contains(&format!("excursions/{excursion}"))
            || state_home.contains(&format!("excursions&#x2f;{excursion}")),
        "the excursion is on its card: {state_home}"
    );
    let id = &in_review["id"];
    assert!(
        state_home.contains(&format!("orders/{id}")) || state_home.contains(&format!("orders&#x2f;{id}")),
        "the order in review is on its card: {state_home}"
    );
    let clinic = page_as(http, &text, "clinic coordinator", "/locations/012345A").await;
    assert!(clinic.contains("Vaccine refrigerator"), "{clinic}");

    // Ctrl-C stops everything cleanly.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running after Ctrl-C:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}:\n{}", logs());
    assert!(read().contains("vfc demo stopped"));

    // A folder with someone else's files is never cleared.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_vfc"))
        .args(["demo"])
        .env("VFC_DATA_DIR", &other)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("fresh data directory"));
    assert!(other.join("notes.txt").exists());
}

/// Signs in as the person the demo printed on the line starting with `who` (email, password,
/// and a code from the printed key) and reads the page at `path`.
async fn page_as(http: &str, printed: &str, who: &str, path: &str) -> String {
    let line = printed
        .lines()
        .find(|l| l.trim_start().starts_with(who))
        .unwrap_or_else(|| panic!("{who} is printed: {printed}"));
    let email = line.split_whitespace().find(|w| w.contains('@')).unwrap();
    let password = line.split('"').nth(1).unwrap();
    let key = line.rsplit("key ").next().unwrap().trim();
    let uri = format!("otpauth://totp/vfc-monitor:{email}?secret={key}&issuer=vfc-monitor");
    let totp = totp_rs::Totp::from_url_unchecked(uri).expect("the printed key");
    // The next code: the demo used the current one to turn the second factor on.
    let code = totp.generate((chrono::Utc::now().timestamp() + 30) as u64).to_string();
    let http_client = reqwest::Client::new();
    let r = http_client
        .post(format!("http://{http}/api/v1/session"))
        .json(&serde_json::json!({"email": email, "password": password, "totp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{who} signs in");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http_client
        .get(format!("http://{http}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{who}: {path}");
    page.text().await.unwrap()
}
