//! The README's commands: every `deskpilot` command in its shell blocks names a subcommand and
//! flags the CLI has, and those that need nothing but the sandbox run here as written and succeed
//! (against a sandbox of the test's own, through `--config`; the demo with `--once`, since it
//! otherwise runs until Ctrl-C). Commands that need a broker, a model server or run until stopped
//! (`worker`, `ingest`, `bus`, `publish`, `dead`, `backfill`, `sandbox`, a demo pointed at Ollama)
//! are checked against `--help` only.

use std::{path::Path, process::Command};

use deskpilot::sandbox::{self, SandboxOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One command of a shell block: its environment assignments and the deskpilot arguments.
#[derive(Debug, Clone)]
struct Example {
    env: Vec<(String, String)>,
    args: Vec<String>,
}

/// Every deskpilot command in the README's ```sh blocks.
fn examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_block = fence == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.split(" #").next().unwrap().trim_end();
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            continue;
        }
        let full = format!("{pending}{line}");
        pending.clear();
        let mut words: Vec<String> = full.split_whitespace().map(str::to_owned).collect();
        if words.last().is_some_and(|w| w == "&") {
            words.pop();
        }
        let mut env = Vec::new();
        while let Some((k, v)) =
            words.first().and_then(|w| w.split_once('=')).filter(|(k, _)| k.starts_with("DESKPILOT"))
        {
            env.push((k.to_owned(), v.to_owned()));
            words.remove(0);
        }
        let args = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["cargo", "run", "--release", "--", rest @ ..] => rest.iter().map(|s| s.to_string()).collect(),
            ["deskpilot", rest @ ..] => rest.iter().map(|s| s.to_string()).collect(),
            _ => continue,
        };
        out.push(Example { env, args });
    }
    out
}

fn deskpilot(args: &[String], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deskpilot"))
        .env_clear()
        .env("DESKPILOT_LOG", "warn")
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// The subcommand words of `args` (before the first flag or value the CLI does not list).
fn help_of(args: &[String], cwd: &Path) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut help = String::from_utf8(deskpilot(&["--help".into()], cwd).stdout).unwrap();
    for a in args.iter().take_while(|a| !a.starts_with('-')) {
        let mut next = words.clone();
        next.push(a.clone());
        next.push("--help".into());
        let o = deskpilot(&next, cwd);
        if !o.status.success() {
            break;
        }
        words.push(a.clone());
        help = String::from_utf8(o.stdout).unwrap();
    }
    help
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_in_the_readme_exists_and_those_that_can_run_here_succeed() {
    let examples = examples();
    assert!(examples.len() >= 15, "the README's commands were not found: {examples:?}");
    assert!(examples.iter().any(|e| e.args[0] == "webhooks"), "indented blocks are read too");
    let dir = tempfile::tempdir().unwrap();
    // Relative paths in the README are relative to the repository.
    std::os::unix::fs::symlink(Path::new(ROOT).join("data"), dir.path().join("data")).unwrap();
    for e in &examples {
        let help = help_of(&e.args, dir.path());
        for flag in e.args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(flag.as_str()),
                "`deskpilot {}`: no {flag} in its --help",
                e.args.join(" ")
            );
        }
    }

    let sb = sandbox::spawn(SandboxOptions { api_key: "sandbox".into(), ..SandboxOptions::default() })
        .await
        .unwrap();
    let config = dir.path().join("readme.toml");
    std::fs::write(
        &config,
        format!(
            "[[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{}\"\napi_key = \"sandbox\"\n\n\
             [store]\nurl = \"sqlite://{}\"\n",
            sb.base_url,
            dir.path().join("readme.db").display()
        ),
    )
    .unwrap();
    let runnable = ["check", "tickets", "triage", "eval", "backtest", "demo"];
    let mut ran = Vec::new();
    for e in examples.iter().filter(|e| runnable.contains(&e.args[0].as_str()) && e.env.is_empty()) {
        let mut args: Vec<String> = vec!["--config".into(), config.display().to_string()];
        args.extend(e.args.iter().cloned());
        if e.args[0] == "demo" {
            args.push("--once".into());
        }
        let cwd = dir.path().to_owned();
        let o = tokio::task::spawn_blocking(move || deskpilot(&args, &cwd)).await.unwrap();
        assert!(
            o.status.success(),
            "`deskpilot {}` failed:\n{}",
            e.args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        ran.push(e.args.join(" "));
    }
    for must in
        ["check", "triage --connection demo --ticket 1064", "eval --dataset data/eval/demo.jsonl", "demo"]
    {
        assert!(ran.iter().any(|r| r.starts_with(must)), "`{must}` was not run: {ran:?}");
    }
}
