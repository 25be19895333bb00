//! The Dockerfile and compose.yaml, checked by reading them (no container engine here): every path
//! they copy exists, every target the manifest names has its stub in the dependency layer, every
//! file the code embeds is in the image's build, every command and flag they run is one the CLI
//! has, every variable they set is one deskpilot reads, and every service started after another
//! waits for a health check the other has.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use deskpilot::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `deskpilot <args>` with a clean environment; its stdout, asserting success.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_deskpilot")).env_clear().args(args).output().unwrap();
    assert!(out.status.success(), "deskpilot {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sources of the Dockerfile's `COPY` instructions that copy from the build context.
fn copied(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].iter().map(|w| w.to_string()).collect::<Vec<_>>()
        })
        .collect()
}

/// Every file the code embeds with `include_str!`/`include_bytes!`, relative to the repository.
fn embedded() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in text.split("include_").skip(1) {
                let Some(rest) = piece.strip_prefix("str!(\"").or_else(|| piece.strip_prefix("bytes!(\""))
                else {
                    continue;
                };
                let relative = rest.split('"').next().unwrap();
                let file = path.parent().unwrap().join(relative);
                let file = file.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                out.insert(
                    file.strip_prefix(Path::new(ROOT).canonicalize().unwrap()).unwrap().display().to_string(),
                );
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(ROOT).join("src"), &mut out);
    out
}

#[test]
fn the_dockerfile_copies_what_exists_and_builds_what_the_code_embeds() {
    let dockerfile = read("Dockerfile");
    let copies = copied(&dockerfile);
    for source in &copies {
        assert!(
            Path::new(ROOT).join(source).exists(),
            "the Dockerfile copies `{source}`, which does not exist"
        );
    }
    // The dependency layer stubs every target the manifest names.
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    for bench in manifest["bench"].as_array().unwrap() {
        let name = bench["name"].as_str().unwrap();
        let path =
            bench.get("path").and_then(|p| p.as_str()).map_or(format!("benches/{name}.rs"), str::to_owned);
        assert!(dockerfile.contains(&path), "the dependency layer has no stub for bench `{name}` ({path})");
    }
    // Everything the code embeds is in the build context of the final build.
    for file in embedded() {
        assert!(
            copies.iter().any(|c| file == *c || file.starts_with(&format!("{c}/"))),
            "the code embeds `{file}`, which the Dockerfile does not copy"
        );
    }
    assert!(dockerfile.contains("cargo build --release --locked --bin deskpilot"));
    // The image runs the binary, as a user, listening where it exposes and is health-checked.
    assert!(dockerfile.contains("ENTRYPOINT [\"deskpilot\"]") && dockerfile.contains("CMD [\"serve\"]"));
    help(&["serve", "--help"]);
    assert!(dockerfile.contains("USER deskpilot") && dockerfile.contains("VOLUME [\"/app/data\"]"));
    let addr = dockerfile.lines().find_map(|l| l.strip_prefix("ENV DESKPILOT__SERVER__ADDR=")).unwrap();
    let port = addr.rsplit(':').next().unwrap();
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(
        dockerfile.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && dockerfile.contains("GET /healthz")
    );
    let config = Config::load_from(None, [("DESKPILOT__SERVER__ADDR", addr)]).unwrap();
    assert_eq!(config.server.addr(), Some(addr));
    // The default store is relative to the working directory: inside the volume.
    assert!(config.store.url.expose().starts_with("sqlite://data/"), "{}", config.store.url.expose());
    assert!(dockerfile.contains("WORKDIR /app"));
}

/// compose.yaml's services: name → the lines of its block.
fn services(compose: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    let mut inside = false;
    for line in compose.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line == "services:";
            current = None;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(name) =
            line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix(':'))
        {
            current = Some(name.to_owned());
            out.insert(name.to_owned(), Vec::new());
        } else if let Some(name) = &current {
            out.get_mut(name).unwrap().push(line.trim().to_owned());
        }
    }
    out
}

#[test]
fn compose_runs_commands_the_cli_has_with_variables_deskpilot_reads() {
    let compose = read("compose.yaml");
    let services = services(&compose);
    for name in ["rabbitmq", "postgres", "sandbox", "ingest", "worker"] {
        assert!(services.contains_key(name), "compose.yaml has no `{name}` service");
    }
    // Every command is a deskpilot command, with flags it has.
    let commands: Vec<Vec<String>> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("command: "))
        .map(|c| serde_json::from_str(c).unwrap_or_else(|e| panic!("`{c}` is not a JSON array: {e}")))
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");
    for command in &commands {
        let text = help(&[&command[0], "--help"]);
        for flag in command.iter().filter(|a| a.starts_with("--")) {
            assert!(text.contains(flag.as_str()), "`deskpilot {}` has no {flag}", command[0]);
        }
    }
    // Every variable set for deskpilot is one it reads.
    let env: Vec<(String, String)> = compose
        .lines()
        .map(str::trim)
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with("DESKPILOT") || k.starts_with("SANDBOX_") || *k == "OPENAI_API_KEY")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let value = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let config_file = value("DESKPILOT_CONFIG").expect("compose names the config file");
    let config_file = config_file.strip_prefix("/app/").expect("inside the image's /app");
    let overrides: Vec<(String, String)> =
        env.iter().filter(|(k, _)| k.starts_with("DESKPILOT__")).cloned().collect();
    let config = Config::load_from(Some(&Path::new(ROOT).join(config_file)), overrides).unwrap();
    assert_eq!(Some(config.bus.url.expose().to_owned()), value("DESKPILOT__BUS__URL"));
    assert_eq!(Some(config.store.url.expose().to_owned()), value("DESKPILOT__STORE__URL"));
    assert_eq!(config.server.addr().map(str::to_owned), value("DESKPILOT__SERVER__ADDR"));
    assert!(help(&["--help"]).contains("DESKPILOT_LOG_FORMAT") && value("DESKPILOT_LOG_FORMAT").is_some());
    let sandbox_help = help(&["sandbox", "--help"]);
    for (name, _) in env.iter().filter(|(k, _)| k.starts_with("DESKPILOT_SANDBOX_")) {
        assert!(sandbox_help.contains(name.as_str()), "`deskpilot sandbox` reads no {name}");
    }
    // Every secret the config file takes from the environment is set.
    for line in read(config_file).lines().filter(|l| l.contains("_env = ")) {
        let name = line.split('"').nth(1).unwrap();
        assert!(value(name).is_some(), "{config_file} reads {name}, which compose.yaml does not set");
    }
    // Start order: what a service waits for has a health check.
    let waited: BTreeSet<&str> = ["rabbitmq", "postgres", "sandbox"].into();
    for name in waited {
        assert!(
            services[name].iter().any(|l| l == "healthcheck:"),
            "`{name}` is waited for but has no health check"
        );
    }
    assert!(compose.matches("condition: service_healthy").count() >= 3);
    assert!(services["worker"].iter().any(|l| l == "replicas: 2"), "two workers");
}
