//! The pages in a real browser: Debian's `chromium`, driven over WebDriver (`chromedriver`,
//! `fantoccini`) against the real binary. One browser test runs at a time (the machine has two
//! cores, and a browser is heavy), on SQLite only: the API tests already cover both databases.
//! A missing browser fails the test, never skips it: `.ci/run` installs both packages.
//!
//! Each test writes screenshots of the pages it passes through into `target/screenshots/`.

mod flows;
mod stock;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::{unused_port, TestApp};

/// Browser tests wait for each other: a lock held for a whole test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with its own profile, and the driver that drives it.
pub struct Browser {
    pub c: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
    base: String,
}

impl Browser {
    /// Opens a browser as wide as a desktop screen, once no other browser test runs.
    pub async fn open(app: &TestApp) -> Browser {
        let turn = ONE_AT_A_TIME.lock().await;
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (.ci/run does); browser tests never skip"
            );
        }
        let port = unused_port();
        // A process group of its own, so the browsers it starts end with it (see Drop).
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        let mut client = None;
        // The driver needs a moment to listen.
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let c = client.unwrap_or_else(|| panic!("chromium did not start through chromedriver: {last}"));
        Browser {
            c,
            driver,
            _profile: profile,
            _turn: turn,
            base: app.base.clone(),
        }
    }

    pub async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The path (and query) the browser is at.
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    pub async fn text(&self) -> String {
        self.c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
    }

    /// Types into the input labelled by `name`.
    pub async fn fill(&self, name: &str, value: &str) {
        let e = self
            .c
            .find(Locator::Css(&format!("[name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("a field {name}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Chooses `value` in the select named `name`.
    pub async fn choose(&self, name: &str, value: &str) {
        self.c
            .find(Locator::Css(&format!("select[name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("a select {name}: {e}"))
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// Presses the button that reads `label` and waits for the page it leads to.
    pub async fn press(&self, label: &str) {
        let buttons = self.c.find_all(Locator::Css("button")).await.unwrap();
        for b in buttons {
            if b.text().await.unwrap().trim() == label {
                let before = self.c.find(Locator::Css("html")).await.unwrap();
                b.click().await.unwrap();
                self.c
                    .wait()
                    .at_most(Duration::from_secs(20))
                    .for_element(Locator::Css("main"))
                    .await
                    .unwrap();
                // The old page is gone once its root is stale.
                for _ in 0..200 {
                    if before.tag_name().await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            }
        }
        panic!("no button {label:?} on {}: {}", self.path().await, self.text().await);
    }

    /// Follows the link that reads `text`.
    pub async fn follow(&self, text: &str) {
        let link = self
            .c
            .find(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("a link {text:?}: {e}"));
        link.click().await.unwrap();
        self.c.wait().for_element(Locator::Css("main")).await.unwrap();
    }

    /// How far the page scrolls sideways (0 when it fits the window).
    pub async fn sideways_scroll(&self) -> i64 {
        self.c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap()
            .as_i64()
            .unwrap()
    }

    /// The elements that reach past the window's right edge (for a failure's message).
    pub async fn too_wide(&self) -> String {
        self.c
            .execute(
                "const w = document.documentElement.clientWidth; return [...document.querySelectorAll('body *')] \
                   .filter(e => e.getBoundingClientRect().right > w + 1) \
                   .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + '(' + Math.round(e.getBoundingClientRect().right) + ')') \
                   .slice(0, 12).join(' ');",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Writes a screenshot of the page as `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn window(&self, width: u32, height: u32) {
        self.c.set_window_size(width, height).await.unwrap();
    }
}

impl Drop for Browser {
    /// Ends the driver and every browser process it started (its whole process group): a
    /// browser left behind would outlive the test run.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots")
}

impl Browser {
    /// Sets a field's value as a picker would (a date input's typed format depends on the
    /// browser's locale; its value never does).
    pub async fn set_value(&self, name: &str, value: &str) {
        let e = self
            .c
            .find(Locator::Css(&format!("[name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("a field {name}: {e}"));
        let arg = serde_json::to_value(&e).unwrap();
        self.c
            .execute("arguments[0].value = arguments[1];", vec![arg, json!(value)])
            .await
            .unwrap();
    }
}
