//! A headless Chromium driven through ChromeDriver's W3C WebDriver protocol, for tests of the
//! review page as a person uses it. The protocol is a handful of JSON calls, spoken here over the
//! HTTP client the project already has: the Rust WebDriver crates pull in a C-built TLS library
//! and a second Unicode stack, for nothing a test on loopback needs.
//!
//! Chromium and ChromeDriver come from Debian (`apt-get install chromium chromium-driver`), or
//! from `CHROME_BIN` and `CHROMEDRIVER`. Without them the browser tests are skipped with a notice,
//! except under CI (`CI` set), where they fail: `.ci/run` installs them.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// A browser session; the driver is stopped when it is dropped.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group, and Chromium is in it: stop them all.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium; `None` (with a notice) when they are not
    /// installed outside CI.
    pub async fn start() -> Option<Browser> {
        let chromium = find_binary("CHROME_BIN", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let driver = find_binary("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let how = "install Chromium and ChromeDriver (apt-get install chromium chromium-driver) \
                       or set CHROME_BIN and CHROMEDRIVER";
            assert!(std::env::var_os("CI").is_none(), "the browser tests need a browser: {how}");
            eprintln!("SKIPPED: the browser test needs a browser; {how}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", driver.display()));
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver: child, http, session: String::new() };
        for _ in 0..100 {
            if browser.http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-proxy-server"],
            },
        }}});
        let created = browser.call("POST", &format!("{base}/session"), Some(capabilities)).await;
        let id = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        browser.session = format!("{base}/session/{id}");
        Some(browser)
    }

    async fn call(&self, verb: &str, url: &str, body: Option<Value>) -> Value {
        self.try_call(verb, url, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_call(&self, verb: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
        let request = match verb {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{verb} {url}: {e}"));
        let status = response.status();
        let value: Value = response.json().await.unwrap_or_else(|e| panic!("{verb} {url}: {e}"));
        if !status.is_success() {
            return Err(format!("{verb} {url}: {status} {}", value["value"]["message"]));
        }
        Ok(value.get("value").cloned().unwrap_or(value))
    }

    async fn session_call(&self, verb: &str, path: &str, body: Option<Value>) -> Value {
        self.call(verb, &format!("{}{path}", self.session), body).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The address of the page shown now.
    pub async fn url(&self) -> String {
        self.session_call("GET", "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        self.session_call("GET", "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The element `css` selects (the first one); panics when there is none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let query = json!({ "using": "css selector", "value": css });
        match self.try_call("POST", &format!("{}/element", self.session), Some(query)).await {
            Ok(found) if found[ELEMENT].is_string() => {
                Element { browser: self, id: found[ELEMENT].as_str().unwrap_or_default().to_owned() }
            }
            _ => panic!("no element `{css}` on {}:\n{}", self.url().await, self.source().await),
        }
    }

    /// The element `css` selects once it is there: after a click that submits a form, the next
    /// page may not have loaded yet. Panics after 15 s.
    pub async fn wait_for(&self, css: &str) -> Element<'_> {
        for _ in 0..150 {
            if self.count(css).await > 0 {
                return self.find(css).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.find(css).await
    }

    /// Waits until the address of the page contains `part`; panics after 15 s.
    pub async fn wait_url(&self, part: &str) {
        for _ in 0..150 {
            if self.url().await.contains(part) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the browser never reached `{part}`; it shows {}:\n{}", self.url().await, self.source().await);
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        let found = self
            .session_call("POST", "/elements", Some(json!({ "using": "css selector", "value": css })))
            .await;
        found.as_array().map_or(0, Vec::len)
    }

    /// Saves a screenshot of the page as a PNG at `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.session_call("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// An element of the page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    async fn call(&self, verb: &str, what: &str, body: Option<Value>) -> Value {
        self.browser.session_call(verb, &format!("/element/{}{what}", self.id), body).await
    }

    /// Clicks it.
    pub async fn click(&self) {
        self.call("POST", "/click", None).await;
    }

    /// Empties a field.
    pub async fn clear(&self) {
        self.call("POST", "/clear", None).await;
    }

    /// Types `text` into it.
    pub async fn type_text(&self, text: &str) {
        self.call("POST", "/value", Some(json!({ "text": text }))).await;
    }

    /// Its rendered text.
    pub async fn text(&self) -> String {
        self.call("GET", "/text", None).await.as_str().unwrap_or_default().to_owned()
    }
}
