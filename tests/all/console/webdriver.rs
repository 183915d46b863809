//! A small W3C WebDriver client on ureq, driving Debian's `chromium`
//! through its `chromedriver`: the few commands the console tests need
//! (navigate, find, click, type, read text, run a script, screenshot).
//!
//! Missing browser packages are installed with apt-get when the tests run
//! as root (as the wasm target is added when missing); otherwise the test
//! fails at once with the command that installs them. A browser test never
//! passes by skipping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::http::support::local_agent;

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `wait_for` looks for something before failing the test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running chromedriver with one headless Chromium session.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// The first of `names` on the PATH.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The command that installs the browser and its driver.
const INSTALL: &str = "sudo apt-get install -y chromium chromium-driver";

/// Chromium and chromedriver, installed first if they are missing and we
/// may (root, with apt-get).
fn browser_programs() -> (PathBuf, PathBuf) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let find = || {
        Some((
            find_program(&["chromium", "chromium-browser"])?,
            find_program(&["chromedriver"])?,
        ))
    };
    if let Some(found) = find() {
        return found;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root && find_program(&["apt-get"]).is_some() {
        eprintln!("installing chromium and chromium-driver for the browser tests (apt-get)");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let packages = ["install", "-y", "-q", "chromium", "chromium-driver"];
        if !apt(&packages) {
            apt(&["update", "-q"]);
            apt(&packages);
        }
    }
    find().unwrap_or_else(|| {
        panic!("the browser tests need Debian's chromium and chromium-driver: run `{INSTALL}`")
    })
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub(crate) fn start() -> Self {
        let (chromium, chromedriver) = browser_programs();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent = local_agent();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = agent
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1000",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let opened = browser.command("POST", "/session", Some(capabilities));
        browser.session = opened["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {opened}"))
            .to_owned();
        browser
    }

    /// Sends a command; the `value` of its answer. A WebDriver error fails
    /// the test with its message.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|message| panic!("{method} {path}: {message}"))
    }

    /// Sends a command; the `value` of its answer, or the WebDriver error's
    /// message.
    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        }
        .expect("chromedriver answers");
        let text = response.body_mut().read_to_string().expect("an answer");
        let answer: Value = serde_json::from_str(&text).expect("a JSON answer");
        let value = answer["value"].clone();
        match value.get("error") {
            None => Ok(value),
            Some(_) => Err(value["message"].as_str().unwrap_or_default().to_owned()),
        }
    }

    fn session_path(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Opens `url`.
    pub(crate) fn goto(&self, url: &str) {
        self.command(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    /// The elements matching a CSS selector now (maybe none).
    pub(crate) fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.command(
            "POST",
            &self.session_path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| Element {
                browser: self,
                id: id.to_owned(),
            })
            .collect()
    }

    /// The first element matching `css`, once there is one (fails the test
    /// after [`PATIENCE`]).
    pub(crate) fn wait_for(&self, css: &str) -> Element<'_> {
        self.wait_until(css, |found| found.into_iter().next())
    }

    /// Waits until `check` finds what it wants among the elements matching
    /// `css`; what it found.
    pub(crate) fn wait_until<'b, T>(
        &'b self,
        css: &str,
        mut check: impl FnMut(Vec<Element<'b>>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = check(self.find_all(css)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "nothing as wanted matched `{css}` within {PATIENCE:?}; the page says: {}",
                self.script("return document.body.innerText;", json!([]))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the first element matching `css`, once there is one.
    /// The console redraws parts of the page as runs change, so an element
    /// found may be gone when its text is read: then it is found again.
    pub(crate) fn text_of(&self, css: &str) -> String {
        self.wait_until(css, |found| found.first()?.try_text())
    }

    /// Clicks the first element matching `css`, once there is one (found
    /// again if the page redrew it meanwhile).
    pub(crate) fn click_on(&self, css: &str) {
        self.wait_until(css, |found| found.first()?.try_click());
    }

    /// Runs `body` (a function body; `arguments` holds `args`) in the page,
    /// awaiting a promise it returns; what it returns.
    pub(crate) fn script(&self, body: &str, args: Value) -> Value {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": body, "args": args})),
        )
    }

    /// Saves a PNG of the window at `path`.
    pub(crate) fn screenshot(&self, path: &Path) {
        let data = self.command("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 text"))
            .expect("valid base64");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page.
pub(crate) struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    fn path(&self, what: &str) -> String {
        self.browser
            .session_path(&format!("/element/{}{what}", self.id))
    }

    pub(crate) fn click(&self) {
        self.browser.command("POST", &self.path("/click"), None);
    }

    /// Clicks it; None once it is no longer in the page.
    pub(crate) fn try_click(&self) -> Option<()> {
        self.browser
            .try_command("POST", &self.path("/click"), None)
            .ok()
            .map(|_| ())
    }

    pub(crate) fn type_text(&self, text: &str) {
        self.browser
            .command("POST", &self.path("/value"), Some(json!({"text": text})));
    }

    /// Its text; None once it is no longer in the page.
    pub(crate) fn try_text(&self) -> Option<String> {
        let text = self
            .browser
            .try_command("GET", &self.path("/text"), None)
            .ok()?;
        Some(text.as_str().unwrap_or_default().to_owned())
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<String> {
        let value = self
            .browser
            .command("GET", &self.path(&format!("/attribute/{name}")), None);
        value.as_str().map(str::to_owned)
    }
}
