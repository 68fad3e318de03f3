//! Runs the real `cubed serve` binary on port 0 and learns its addresses from
//! the `cubed serving` log line. Shared by tests/durability.rs and the benches.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary under test: this build's `cubed`, or the one `CUBED_TEST_BIN`
/// names (to run the same tests against another build, e.g. an older one).
pub fn cubed_bin() -> String {
    std::env::var("CUBED_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cubed").to_owned())
}

pub struct Spawned {
    pub child: Child,
    /// `host:port` of the collector listener.
    pub collector: String,
    /// `host:port` of the evaluator listener.
    pub evaluator: String,
    /// `host:port` of the UDP collector, or `off`.
    pub udp: String,
}

/// Starts `bin serve` on `data_dir` with ephemeral ports, no UDP (unless
/// `extra` names a `--udp-addr`), and `extra` flags.
pub fn spawn(bin: &str, data_dir: &Path, extra: &[&str]) -> Spawned {
    let udp: &[&str] = if extra.contains(&"--udp-addr") {
        &[]
    } else {
        &["--udp-addr", "off"]
    };
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--collector-addr",
            "127.0.0.1:0",
            "--evaluator-addr",
            "127.0.0.1:0",
        ])
        .args(udp)
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("CUBED_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cubed");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("cubed serving") {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
                        .unwrap_or_default()
                };
                let _ = tx.send((field("collector"), field("evaluator"), field("udp")));
            }
        }
    });
    let (collector, evaluator, udp) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server started");
    Spawned {
        child,
        collector,
        evaluator,
        udp,
    }
}

impl Spawned {
    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

/// One figure of a module in a `/1.0/status` answer (`[{module_name,
/// metrics: [{metric, value}]}]`); `None` if it is not there.
pub fn status_figure_in(status: &serde_json::Value, module: &str, name: &str) -> Option<f64> {
    status
        .as_array()?
        .iter()
        .filter(|m| m["module_name"] == module)
        .flat_map(|m| m["metrics"].as_array().into_iter().flatten())
        .find(|m| m["metric"] == name)?["value"]
        .as_f64()
}
