//! A real browser for the web page's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with fantoccini, behind a blocking facade.
//!
//! `chromedriver` runs in a process group of its own and Chromium with a profile directory
//! of its own; teardown (also on panic) closes the session, SIGKILLs the group, then any
//! process still naming the profile directory (Chromium's helpers), so nothing outlives the
//! test.

use crate::agent_support::wait_for_every;
use crate::fixtures::{free_port, kommit_bin};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the browser tests are skipped: only when `KOMMIT_SKIP_BROWSER=1` says so.
pub fn skip_browser(what: &str) -> bool {
    if std::env::var("KOMMIT_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: KOMMIT_SKIP_BROWSER=1");
        return true;
    }
    false
}

/// Where screenshots go: `<target>/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let bin = kommit_bin();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("kommit binary under target/<profile>");
    target.join("web-screenshots")
}

/// A headless Chromium session.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    profile: tempfile::TempDir,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver (apt-get install chromium chromium-driver)");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut b = Browser {
            rt,
            client: None,
            driver: Some(driver),
            profile,
            log,
        };
        let up = wait_for_every(Duration::from_secs(20), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver listens: {}", b.driver_log());
        let data_dir = b.profile.path().join("chromium");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", data_dir.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            b.rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .unwrap_or_else(|e| panic!("webdriver session: {e}\n{}", b.driver_log()));
        b.client = Some(client);
        b
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    fn driver_log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        crate::agent_support::tail(&text, 30)
    }

    /// Navigates to `url` and waits for the document.
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.c().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The DOM now, serialized (what the page shows after scripts ran).
    pub fn source(&self) -> String {
        self.rt.block_on(self.c().source()).expect("page source")
    }

    /// Runs `js` (a function body) in the page and returns its value.
    pub fn eval(&self, js: &str) -> serde_json::Value {
        self.rt
            .block_on(self.c().execute(js, vec![]))
            .unwrap_or_else(|e| panic!("execute {js}: {e}"))
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        self.rt
            .block_on(self.c().find_all(Locator::Css(css)))
            .map_or(0, |v| v.len())
    }

    /// The text of the first element `css` selects, as rendered (`innerText`). Read in one
    /// script turn: the live pages replace their `<main>` on every cluster event, so an
    /// element found by one WebDriver call can be stale by the next.
    pub fn text(&self, css: &str) -> Option<String> {
        let v = self
            .rt
            .block_on(self.c().execute(
                "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![serde_json::Value::String(css.to_string())],
            ))
            .unwrap_or_else(|e| panic!("reading the text of {css}: {e}"));
        v.as_str().map(str::to_string)
    }

    /// Marks the document; [`Browser::same_document`] is true until a navigation or reload.
    pub fn mark_document(&self) {
        self.eval("window.__kommitTestMark = 'kept'; return true;");
    }

    /// Whether the document marked by [`Browser::mark_document`] is still the one shown.
    pub fn same_document(&self) -> bool {
        self.eval("return window.__kommitTestMark === 'kept';") == serde_json::json!(true)
    }

    /// How many fragments the page's event stream swapped in so far.
    pub fn updates(&self) -> u64 {
        self.eval("return Number(document.body.getAttribute('data-updates') || 0);")
            .as_u64()
            .unwrap_or(0)
    }

    /// Polls `f` every 25 ms until it holds or `timeout` passes; how long it took.
    pub fn wait(&self, timeout: Duration, mut f: impl FnMut(&Browser) -> bool) -> Option<Duration> {
        let start = Instant::now();
        wait_for_every(timeout, Duration::from_millis(25), || f(self)).then(|| start.elapsed())
    }

    /// Opens a new tab and switches to it; returns (old, new) window handles.
    pub fn new_tab(&self) -> (fantoccini::wd::WindowHandle, fantoccini::wd::WindowHandle) {
        self.rt.block_on(async {
            let old = self.c().window().await.expect("window");
            let new = self.c().new_window(true).await.expect("new tab").handle;
            self.c()
                .switch_to_window(new.clone())
                .await
                .expect("switch");
            (old, new)
        })
    }

    /// Switches to the tab `w`.
    pub fn switch(&self, w: &fantoccini::wd::WindowHandle) {
        self.rt
            .block_on(self.c().switch_to_window(w.clone()))
            .expect("switch window");
    }

    /// Saves a PNG of the viewport as `<target>/web-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
        }
        if let Some(mut d) = self.driver.take() {
            if let Ok(pgid) = i32::try_from(d.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = d.wait();
        }
        // Chromium's helpers that left the group (zygotes) still name the profile directory.
        let marker = self.profile.path().to_string_lossy().into_owned();
        for _ in 0..20 {
            let left = processes_naming(&marker);
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Pids whose command line contains `marker` (a path unique to one browser).
fn processes_naming(marker: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        if u32::try_from(pid).ok()? == me {
            return None;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmd)
            .contains(marker)
            .then_some(pid)
    })
    .collect()
}
