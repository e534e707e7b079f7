//! `openapi.json` against the live server, by schemathesis: every check, the coverage and
//! fuzzing phases, a fixed seed and a time budget. It passes when every failure found is one
//! the checked-in baseline accepts, each with its reason (`tests/schemathesis/README.md`).
//!
//! schemathesis comes from PyPI; `scripts/test.sh` installs it into a venv and names it in
//! `OTP_SCHEMATHESIS` (the default is that venv's path).

use otp_server_blackbox::{scratch_dir, workspace_root, Server};
use std::path::PathBuf;
use std::process::Command;

/// The schemathesis executable.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("OTP_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("otp-server-schemathesis/venv/bin/schemathesis")
}

#[test]
fn the_api_document_holds_against_the_live_server() {
    let binary = schemathesis();
    assert!(
        binary.exists(),
        "{} is missing: run scripts/test.sh (it installs schemathesis) or set OTP_SCHEMATHESIS",
        binary.display()
    );
    let server = Server::builder()
        .default_plugins()
        .env("OTP_TEST_CLOCK", "false")
        .start();
    let root = workspace_root();
    // schemathesis and Hypothesis keep their caches in the working directory.
    let work = scratch_dir("schemathesis");
    let output = Command::new(&binary)
        .current_dir(&work)
        .arg("run")
        .arg(root.join("openapi.json"))
        .args(["--url", &server.base])
        .args(["--phases", "coverage,fuzzing", "--checks", "all"])
        .args([
            "--max-time",
            "60",
            "--seed",
            "20261203",
            "--continue-on-failure",
        ])
        .arg("--baseline")
        .arg(root.join("tests/schemathesis/baseline.json"))
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("running schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures outside the baseline:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The run did test: cases were generated and the baseline's known failures came up.
    assert!(report.contains(" generated"), "{report}");
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
}
