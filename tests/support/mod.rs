//! Shared test support: the built binary in an isolated environment, the harness
//! tools (kubectl, aws, faketime) and the loopback fakes in `tests/fakes`.
//!
//! A missing harness tool skips the test with a message, except under `CI=true`,
//! where it fails: CI must never pass by skipping.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetctx");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The harness venv: `FLEETCTX_VENV`, else `.venv` in the repository.
pub fn venv() -> PathBuf {
    std::env::var_os("FLEETCTX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".venv"))
}

/// A harness tool, from the venv or PATH. `None` means skip (never under CI).
pub fn tool(name: &str) -> Option<PathBuf> {
    let in_venv = venv().join("bin").join(name);
    if in_venv.exists() {
        return Some(in_venv);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    missing(name);
    None
}

fn missing(name: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("harness tool {name} is missing; run tests/harness/install.sh");
    }
    eprintln!("SKIP: harness tool {name} is missing; run tests/harness/install.sh");
}

/// Runs a test body only when every named harness tool is present.
#[macro_export]
macro_rules! needs {
    ($($tool:expr),+) => {
        $( if $crate::support::tool($tool).is_none() { return; } )+
    };
}

/// An isolated world for one test: its own HOME, cache and config directories.
pub struct World {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("fleetctx-test-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            venv().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = vec![
            ("PATH".to_string(), path),
            ("HOME".to_string(), home.display().to_string()),
            (
                "XDG_CACHE_HOME".to_string(),
                dir.path().join("cache").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".to_string(),
                dir.path().join("config").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
            (
                "AWS_CONFIG_FILE".to_string(),
                dir.path().join("aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                dir.path().join("aws-credentials").display().to_string(),
            ),
            // No metadata server, no gcloud: the GKE chain ends quickly.
            ("GCE_METADATA_HOST".to_string(), "127.0.0.1:9".to_string()),
            ("GCE_METADATA_ROOT".to_string(), "127.0.0.1:9".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
        ];
        World { dir, env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn set(&mut self, key: &str, value: impl AsRef<str>) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.as_ref().to_string()));
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path("cache").join("fleetctx")
    }

    /// A command with exactly this world's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    pub fn fleetctx(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(BIN);
        cmd.args(args);
        cmd
    }

    /// Static AWS keys in the environment.
    pub fn aws_keys(&mut self, id: &str, secret: &str, session: Option<&str>) -> &mut Self {
        self.set("AWS_ACCESS_KEY_ID", id)
            .set("AWS_SECRET_ACCESS_KEY", secret);
        match session {
            Some(s) => self.set("AWS_SESSION_TOKEN", s),
            None => self.unset("AWS_SESSION_TOKEN"),
        }
    }
}

/// A world whose Google identity is the fakes' first service-account key.
pub fn gke_world(fakes: &Fakes) -> World {
    let mut world = World::new();
    world.set("GOOGLE_APPLICATION_CREDENTIALS", fakes.field("sa_key"));
    world
}

/// What a finished command did, with readable failure messages.
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn");
    Ran {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Ran {
    pub fn ok(self) -> Ran {
        assert_eq!(
            self.status, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn failed(self) -> Ran {
        assert_ne!(
            self.status, 0,
            "command unexpectedly succeeded\nstdout:\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The ExecCredential's token.
    pub fn token(&self) -> String {
        self.json()["status"]["token"]
            .as_str()
            .expect("status.token")
            .to_string()
    }
}

/// The loopback fakes (`tests/fakes/fakes.py`), stopped when dropped.
pub struct Fakes {
    child: Child,
    _stdin: ChildStdin,
    pub info: Value,
    pub dir: tempfile::TempDir,
}

impl Fakes {
    /// Starts the fakes; `None` when the harness is missing (skip).
    pub fn start(args: &[&str]) -> Option<Fakes> {
        let python = tool("python")?;
        let dir = tempfile::Builder::new()
            .prefix("fleetctx-fakes-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(python)
            .arg(Path::new(REPO).join("tests/fakes/fakes.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fakes");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fakes did not start ({e}): {line:?}"));
        Some(Fakes {
            child,
            _stdin: stdin,
            info,
            dir,
        })
    }

    pub fn url(&self, which: &str) -> String {
        self.info[which]
            .as_str()
            .unwrap_or_else(|| panic!("no {which} in {}", self.info))
            .to_string()
    }

    pub fn field(&self, name: &str) -> String {
        self.url(name)
    }

    pub fn stats(&self) -> Value {
        http_json("GET", &self.url("google"), "/_stats", None)
    }

    pub fn config(&self, body: Value) {
        http_json("POST", &self.url("google"), "/_config", Some(body));
    }

    pub fn reset(&self) {
        http_json("POST", &self.url("google"), "/_reset", Some(Value::Null));
    }

    pub fn count(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// Container API calls for one project.
    pub fn count_container(&self, project: &str) -> u64 {
        self.stats()["container"][project].as_u64().unwrap_or(0)
    }

    pub fn sts_count(&self, action: &str) -> u64 {
        self.stats()["sts"][action].as_u64().unwrap_or(0)
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 JSON client for the fakes' control routes.
pub fn http_json(method: &str, base: &str, path: &str, body: Option<Value>) -> Value {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).expect("connect to fake");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap_or(("", ""));
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Decodes an EKS token into its presigned URL.
pub fn eks_url(token: &str) -> String {
    use base64::Engine;
    let payload = token
        .strip_prefix("k8s-aws-v1.")
        .expect("k8s-aws-v1. prefix");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("unpadded base64url");
    String::from_utf8(bytes).unwrap()
}

/// The presigned URL's host and sorted query parameters.
pub fn url_parts(url: &str) -> (String, String, Vec<(String, String)>) {
    let rest = url.strip_prefix("https://").expect("https");
    let (authority, path_query) = rest.split_at(rest.find('/').unwrap());
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    params.sort();
    (authority.to_string(), path.to_string(), params)
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Writes a kubeconfig with one context per (name, server, exec args) user.
pub fn exec_kubeconfig(path: &Path, ca_b64: &str, entries: &[(&str, &str, Vec<String>)]) {
    let mut clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    for (name, server, args) in entries {
        clusters.push(serde_json::json!({"name": name, "cluster": {"server": server, "certificate-authority-data": ca_b64}}));
        users.push(serde_json::json!({"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": BIN,
            "args": args,
            "interactiveMode": "Never",
        }}}));
        contexts
            .push(serde_json::json!({"name": name, "context": {"cluster": name, "user": name}}));
    }
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": clusters, "users": users, "contexts": contexts,
        "current-context": entries[0].0,
    });
    // JSON is YAML: kubectl reads it as a kubeconfig.
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// A fleet on loopback for `sync`: GKE projects behind the Container API and
/// Resource Manager fakes, EKS clusters in moto in two regions, seen through two
/// profiles (`dev`: static keys; `on`: a role assumed from `dev`, and a name YAML 1.1
/// reads as a boolean).
pub struct Fleet {
    pub fakes: Fakes,
    pub world: World,
    pub kubeconfig: PathBuf,
}

pub const DEV_KEY: &str = "AKIAFLEETCTXSYNCDEV1";
pub const DEV_SECRET: &str = "sync/dev/secret";

impl Fleet {
    pub fn start() -> Option<Fleet> {
        let key = format!("{DEV_KEY}:{DEV_SECRET}");
        let fakes = Fakes::start(&["--aws-key", &key])?;
        let mut world = World::new();
        let google = fakes.url("google");
        world
            .set("GOOGLE_APPLICATION_CREDENTIALS", fakes.field("sa_key"))
            .set("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER", &google)
            .set(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER",
                &google,
            )
            .set("AWS_ENDPOINT_URL", fakes.url("moto"));
        std::fs::write(
            world.path("aws-credentials"),
            format!("[dev]\naws_access_key_id = {DEV_KEY}\naws_secret_access_key = {DEV_SECRET}\n"),
        )
        .unwrap();
        std::fs::write(
            world.path("aws-config"),
            "[profile dev]\nregion = us-east-1\n\n[profile on]\nrole_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = dev\nregion = us-east-1\n",
        )
        .unwrap();
        let kubeconfig = world.path("kubeconfig");
        let fleet = Fleet {
            fakes,
            world,
            kubeconfig,
        };
        fleet.gke(serde_json::json!({
            "p-alpha": {"clusters": [{"name": "a"}, {"name": "on", "location": "us-east1"}]},
            "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
            "p-disabled": {"error": "SERVICE_DISABLED"},
        }));
        fleet.eks(&[("us-east-1", "c1"), ("eu-west-1", "yes")]);
        Some(fleet)
    }

    /// Replaces the GKE fleet (projects listed across several Resource Manager pages).
    pub fn gke(&self, projects: Value) {
        let answer = http_json(
            "POST",
            &self.fakes.url("google"),
            "/_gke/fleet",
            Some(serde_json::json!({"rm_page_size": 2, "projects": projects})),
        );
        assert!(
            answer.get("projects").is_some(),
            "fleet not accepted: {answer}"
        );
    }

    pub fn eks(&self, clusters: &[(&str, &str)]) {
        let clusters: Vec<Value> = clusters
            .iter()
            .map(|(region, name)| serde_json::json!({"account": "123456789012", "region": region, "name": name}))
            .collect();
        http_json(
            "POST",
            &self.fakes.url("google"),
            "/_eks/create",
            Some(serde_json::json!({"clusters": clusters})),
        );
    }

    pub fn delete_eks(&self, region: &str, name: &str) {
        http_json(
            "POST",
            &self.fakes.url("google"),
            "/_eks/delete",
            Some(serde_json::json!({"account": "123456789012", "region": region, "name": name})),
        );
    }

    /// `fleetctx sync` over the whole fleet into `self.kubeconfig`, plus `extra` flags.
    pub fn sync(&self, extra: &[&str]) -> Ran {
        let kubeconfig = self.kubeconfig.display().to_string();
        let mut args = vec![
            "sync",
            "--gke-all-projects",
            "--eks-profile",
            "dev",
            "--eks-profile",
            "on",
            "--eks-region",
            "us-east-1",
            "--eks-region",
            "eu-west-1",
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend_from_slice(extra);
        run(&mut self.world.fleetctx(&args))
    }

    pub fn kubectl(&self, args: &[&str]) -> Ran {
        let kubectl = tool("kubectl").expect("kubectl");
        run(self
            .world
            .command(kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    pub fn contexts(&self) -> Vec<String> {
        let ran = self.kubectl(&["config", "get-contexts", "-o", "name"]).ok();
        let mut names: Vec<String> = ran.stdout.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig).unwrap_or_default()
    }
}

pub const SYNCED: [&str; 7] = [
    "eks_dev_eu-west-1_yes",
    "eks_dev_us-east-1_c1",
    "eks_on_eu-west-1_yes",
    "eks_on_us-east-1_c1",
    "gke_p-alpha_europe-west1-b_a",
    "gke_p-alpha_us-east1_on",
    "gke_p-beta_asia-east1-a_b",
];

/// A tmux server of the test's own, driven like a person at a terminal.
pub struct Tmux {
    pub socket: String,
    pub tmux: std::path::PathBuf,
}

impl Tmux {
    /// A bare `bash` (no rc files, prompt `$ `) in a 200x40 terminal, with
    /// exactly `env` (plus `TERM`, `PS1`) as its environment.
    pub fn bash(name: &str, env: &[(String, String)]) -> Tmux {
        let tmux = Tmux {
            socket: format!("fleetctx-{name}-{}", std::process::id()),
            tmux: tool("tmux").expect("tmux"),
        };
        let mut vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vars.push("TERM=xterm".into());
        vars.push("PS1=$ ".into());
        let started = Command::new(&tmux.tmux)
            .args([
                "-L",
                &tmux.socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "200",
                "-y",
                "40",
            ])
            .args(["env", "-i"])
            .args(&vars)
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .unwrap();
        assert!(started.success(), "tmux did not start");
        tmux
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut cmd = std::process::Command::new(&self.tmux);
        cmd.args(["-L", &self.socket, "send-keys", "-t", "t"])
            .args(keys);
        assert!(cmd.status().unwrap().success());
    }

    pub fn screen(&self) -> String {
        let out = std::process::Command::new(&self.tmux)
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`.
    pub fn expect(&self, text: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "never saw {text:?} on screen:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.tmux)
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// A world pointed at the fakes' Entra ID and ARM, trusting their CA, with an
/// Azure CLI configuration directory of its own. No identity yet.
pub fn azure_world(fakes: &Fakes) -> World {
    let mut world = World::new();
    let ca = fakes.field("ca_file");
    let config = world.path("azure").display().to_string();
    world
        .set("SSL_CERT_FILE", &ca)
        .set("REQUESTS_CA_BUNDLE", &ca)
        .set("AZURE_AUTHORITY_HOST", fakes.url("entra"))
        .set("FLEETCTX_ARM_ENDPOINT", fakes.url("arm"))
        .set("AZURE_CONFIG_DIR", config)
        .set("AZURE_CORE_COLLECT_TELEMETRY", "false")
        .set("AZURE_CORE_INSTANCE_DISCOVERY", "false");
    world
}

/// The fakes' service principal (client secret) in the environment.
pub fn azure_sp(world: &mut World, fakes: &Fakes) {
    world
        .set("AZURE_TENANT_ID", fakes.field("azure_tenant"))
        .set("AZURE_CLIENT_ID", fakes.field("azure_client_id"))
        .set("AZURE_CLIENT_SECRET", fakes.field("azure_client_secret"));
}

/// Replaces the fakes' Azure fleet (subscriptions and their AKS clusters).
pub fn azure_fleet(fakes: &Fakes, subscriptions: Value) {
    let answer = http_json(
        "POST",
        &fakes.url("google"),
        "/_azure/fleet",
        Some(
            serde_json::json!({"page_size": 2, "subscription_page_size": 2, "subscriptions": subscriptions}),
        ),
    );
    assert!(
        answer.get("subscriptions").is_some(),
        "Azure fleet not accepted: {answer}"
    );
}

/// The claims of a JWT (no verification: the fake API server verifies).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
