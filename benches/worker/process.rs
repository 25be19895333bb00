//! The worker as operators run it: `deskpilot worker --config FILE` in a process of its own, so
//! its CPU time and peak memory are its alone; and a RabbitMQ virtual host per run.

use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A running `deskpilot worker`.
pub struct WorkerProcess {
    child: Child,
    _config: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl WorkerProcess {
    /// Starts the worker on `config` (TOML, whose `[server] addr` is `addr`) and waits until its
    /// `/readyz` answers 200.
    pub async fn start(config: &str, addr: &str) -> anyhow::Result<Self> {
        Self::start_command("worker", config, addr).await
    }

    /// Starts `deskpilot <command>` (`worker`, `ingest`, `serve`) likewise.
    pub async fn start_command(command: &str, config: &str, addr: &str) -> anyhow::Result<Self> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
        file.write_all(config.as_bytes())?;
        let stderr = tempfile::NamedTempFile::new()?;
        let child = Command::new(env!("CARGO_BIN_EXE_deskpilot"))
            .args([command, "--config"])
            .arg(file.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DESKPILOT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr.reopen()?)
            .spawn()
            .with_context(|| format!("could not start deskpilot {command}"))?;
        let mut worker = WorkerProcess { child, _config: file, stderr };
        if let Err(e) = worker.wait_ready(addr).await {
            // Not left running behind a failed run.
            let _ = worker.child.kill();
            let _ = worker.child.wait();
            return Err(e);
        }
        Ok(worker)
    }

    async fn wait_ready(&mut self, addr: &str) -> anyhow::Result<()> {
        let url = format!("http://{addr}/readyz");
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("deskpilot worker exited ({status}):\n{}", self.logs());
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("deskpilot worker was not ready within 60 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The worker's Prometheus exposition.
    pub async fn metrics(&self, addr: &str) -> anyhow::Result<String> {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
        Ok(client.get(format!("http://{addr}/metrics")).send().await?.error_for_status()?.text().await?)
    }

    /// The process id.
    #[allow(dead_code, reason = "read by benches/webhook.rs, which shares this file")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds so far, from /proc/<pid>/stat.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after_name = stat.rsplit_once(')').context("unexpected /proc stat")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        // SAFETY: sysconf has no preconditions.
        Ok(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
    }

    /// Peak resident memory so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc status")?;
        Ok(kb / 1024.0)
    }

    /// Stops the worker as an orchestrator would (SIGTERM) and waits for it; fails when it does
    /// not exit cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait();
            (status, self.stderr)
        })
        .await?;
        match status {
            (Ok(s), _) if s.success() => Ok(()),
            (s, stderr) => bail!(
                "deskpilot worker did not stop cleanly ({s:?}):\n{}",
                std::fs::read_to_string(stderr.path()).unwrap_or_default()
            ),
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

/// A RabbitMQ virtual host of its own, deleted with everything in it when dropped.
pub struct VirtualHost {
    name: String,
}

impl VirtualHost {
    /// Creates `name` and lets `guest` use it.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        rabbitmqctl(&["add_vhost", name])?;
        rabbitmqctl(&["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])?;
        Ok(VirtualHost { name: name.to_owned() })
    }

    /// The guest URL of this virtual host on the local broker.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for VirtualHost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("warning: {e:#}");
        }
    }
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("rabbitmqctl cannot run (it comes with rabbitmq-server)")?;
    if !out.status.success() {
        bail!("rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
