//! A real headless Chromium, driven over W3C WebDriver by the distribution's `chromedriver`
//! on a free loopback port. Only the handful of commands the console tests use, over the
//! HTTP client the tests already have.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long a test waits for the page to show something before it fails.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The key of an element reference in WebDriver's answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process and one browser session on it; both end when dropped.
pub struct Browser {
    driver: Child,
    client: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
}

/// An element on the page, by WebDriver's reference.
#[derive(Debug, Clone)]
struct Element(String);

fn find_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|d| d.join(name).is_file()))
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| {
            panic!("{name} was not found: install chromium and chromium-driver (.ci/run does)")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Chromium's flags for a sandboxless container with no outside network: without the
/// background-networking ones it keeps dialling Google's hosts.
fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session.
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new(find_program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        // A WebDriver command that hangs fails the test rather than stalling it.
        let client = reqwest::Client::builder()
            .timeout(PAGE_TIMEOUT)
            .build()
            .expect("an HTTP client");
        wait_until_ready(&client, &base).await;
        let profile =
            std::env::temp_dir().join(format!("vigil-chromium-{}-{port}", std::process::id()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": find_program("chromium").display().to_string(),
                "args": chromium_args(&profile),
            },
        }}});
        let answer = post(&client, &format!("{base}/session"), &capabilities).await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        Self {
            driver,
            client,
            session,
            base,
            profile,
        }
    }

    fn url(&self, command: &str) -> String {
        format!("{}/session/{}/{command}", self.base, self.session)
    }

    async fn command(&self, command: &str, body: Value) -> Value {
        post(&self.client, &self.url(command), &body).await
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// Runs `script` in the page (its `arguments` are `args`) and answers with its value.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.command("execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> usize {
        self.find_all(css).await.len()
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        let answer = self
            .command("elements", json!({ "using": "css selector", "value": css }))
            .await;
        answer
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_string()))
            .collect()
    }

    /// Polls `probe` until it answers `Some`, failing after [`PAGE_TIMEOUT`] with `what`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            if Instant::now() > deadline {
                let page = self.eval("return document.body.innerText", vec![]).await;
                panic!("waited {PAGE_TIMEOUT:?} for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text `css`'s first element shows, once there is one. Read in one script, so a
    /// page that redraws cannot swap the element between finding and reading it.
    pub async fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e ? e.innerText : null;";
        self.wait_for(&format!("an element '{css}'"), || async {
            let text = self.eval(script, vec![json!(css)]).await;
            text.as_str().map(str::to_string)
        })
        .await
    }

    /// Clicks `css`'s first element, once there is one (found again if the page redrew it
    /// before the click).
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    /// Types `text` into `css`'s first element.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "value", json!({ "text": text })).await;
    }

    /// Empties the input or text area `css` selects.
    pub async fn clear(&self, css: &str) {
        self.on_element(css, "clear", json!({})).await;
    }

    /// Sends `action` to `css`'s first element, finding it again while the page has none
    /// or WebDriver refuses (the element was redrawn); fails with the last refusal.
    async fn on_element(&self, css: &str, action: &str, body: Value) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let mut refused = String::from("no element matches");
        while Instant::now() < deadline {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                let url = self.url(&format!("element/{}/{action}", element.0));
                let response = self.client.post(url).json(&body).send().await;
                match response {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => refused = r.text().await.unwrap_or_default(),
                    Err(e) => refused = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("'{css}' did not take {action} within {PAGE_TIMEOUT:?}: {refused}");
    }

    /// Saves a screenshot of the page to `path` (under `target/`, for a person to look at).
    pub async fn screenshot(&self, path: &Path) {
        let answer = get(&self.client, &self.url("screenshot")).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer.as_str().unwrap_or_default())
            .expect("a screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot's directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium. Drop cannot await, so this one request is
        // written by hand over a blocking socket.
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.session
        );
        let address = self.base.trim_start_matches("http://");
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let ready = client.get(format!("{base}/status")).send().await;
        if let Ok(response) = ready {
            let status: Value = response.json().await.unwrap_or_default();
            if status["value"]["ready"] == json!(true) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// WebDriver's `value`, or a panic naming the error it answered with.
async fn answer_of(response: reqwest::Response, what: &str) -> Value {
    let ok = response.status().is_success();
    let body: Value = response.json().await.expect("WebDriver answers JSON");
    assert!(ok, "WebDriver {what} failed: {body}");
    body["value"].clone()
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("WebDriver answers");
    answer_of(response, url).await
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("WebDriver answers");
    answer_of(response, url).await
}
