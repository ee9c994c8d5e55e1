//! Headless Chromium, to check pages as a person would see them (rendered, not just fetched).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Chromium(PathBuf);

/// Chromium from the system (Debian's `chromium` package). In CI (`CI` set) its absence is a
/// failure, so the page checks cannot silently stop running; elsewhere the check is skipped
/// with a notice.
pub fn chromium() -> Option<Chromium> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file()));
    match found {
        Some(path) => Some(Chromium(path)),
        None if std::env::var_os("CI").is_some() => panic!("chromium is required in CI (apt-get install chromium)"),
        None => {
            eprintln!("notice: chromium not found; the rendered-page check is skipped (install chromium to run it)");
            None
        }
    }
}

impl Chromium {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.0);
        command.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"]);
        command.env("HOME", std::env::temp_dir());
        command
    }

    /// The DOM after rendering.
    pub fn dump_dom(&self, url: &str) -> Result<String, String> {
        let output = self.command().args(["--dump-dom", url]).output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn screenshot(&self, url: &str, path: &Path) -> Result<(), String> {
        let output = self
            .command()
            .arg(format!("--screenshot={}", path.display()))
            .args(["--window-size=1280,800", url])
            .output()
            .map_err(|e| e.to_string())?;
        if path.is_file() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
    }
}

/// The text of the first table cell whose opening tag contains `marker`.
pub fn cell_text(dom: &str, marker: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = at + dom[at..].find('>')? + 1;
    let end = start + dom[start..].find("</td>")?;
    Some(dom[start..end].trim().to_owned())
}
