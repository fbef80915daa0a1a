//! Envoy bootstrap generation: one listener with the HTTP connection manager, the requested HTTP
//! filters (native ones first, then the Wasm ones, then the router), routes and clusters.
//!
//! The same generator serves both runtimes; only the addresses differ (loopback with port 0 for
//! processes, fixed ports on 0.0.0.0 and Docker DNS names for containers).

use serde_json::{json, Value};

/// One Proxy-Wasm filter in the chain.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// Plugin name (shown in Envoy's logs and stats) and, unless `vm_id` is set, the VM id.
    pub name: String,
    /// `root_id` the module registers (our filters accept any).
    pub root_id: String,
    /// VM id: plugins with the same id and code share one VM per worker, and shared data is
    /// scoped to it.
    pub vm_id: String,
    /// Path of the `.wasm` file on this machine.
    pub wasm: std::path::PathBuf,
    /// The plugin's configuration string (JSON for our filters).
    pub configuration: String,
    /// Envoy's `fail_open`: let traffic through when the VM has crashed.
    pub fail_open: bool,
}

impl WasmFilter {
    /// A filter whose configuration is the given JSON value.
    pub fn new(name: &str, wasm: impl Into<std::path::PathBuf>, configuration: Value) -> Self {
        let configuration = match configuration {
            Value::Null => String::new(),
            v => v.to_string(),
        };
        Self::raw(name, wasm, configuration)
    }

    /// A filter with a configuration string passed as is (to test malformed JSON).
    pub fn raw(
        name: &str,
        wasm: impl Into<std::path::PathBuf>,
        configuration: impl Into<String>,
    ) -> Self {
        Self {
            name: name.to_string(),
            root_id: name.to_string(),
            vm_id: name.to_string(),
            wasm: wasm.into(),
            configuration: configuration.into(),
            fail_open: false,
        }
    }

    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.to_string();
        self
    }
}

/// A route to a cluster, tried in order before the default route.
#[derive(Debug, Clone)]
pub enum Route {
    /// Requests whose header `name` equals `value` go to `cluster`.
    Header {
        name: String,
        value: String,
        cluster: String,
    },
    /// Requests whose path starts with `prefix` go to `cluster`.
    Prefix { prefix: String, cluster: String },
}

/// Where a cluster's single endpoint is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// Everything the generator needs, with addresses already resolved for the runtime.
#[derive(Debug, Clone)]
pub struct Bootstrap<'a> {
    pub listen_address: &'a str,
    pub listen_port: u16,
    pub admin_address: &'a str,
    pub admin_port: u16,
    pub native_filters: &'a [Value],
    pub wasm_filters: &'a [(WasmFilter, String)],
    pub clusters: &'a [(String, Endpoint)],
    /// HTTP/2 clusters for gRPC services (a rate limit service), not routed to.
    pub grpc_clusters: &'a [(String, Endpoint)],
    pub routes: &'a [Route],
    /// With no clusters: answer every request 200 `ok` from the route (benchmarks).
    pub direct_response: bool,
    pub xff_num_trusted_hops: u32,
    /// An access log format, written to Envoy's stderr (its log) when set.
    pub access_log: Option<String>,
    /// The bootstrap's `stats_config` (e.g. `stats_tags`), when set.
    pub stats_config: Option<Value>,
    /// Envoy's path normalisation (`normalize_path`, `merge_slashes`, escaped slashes rejected).
    pub normalize_paths: bool,
}

impl Bootstrap<'_> {
    /// The bootstrap as JSON (Envoy reads a `.json` config file as JSON).
    pub fn to_json(&self) -> Value {
        let mut http_filters: Vec<Value> = self.native_filters.to_vec();
        for (f, path_in_runtime) in self.wasm_filters {
            http_filters.push(wasm_filter_json(f, path_in_runtime));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));

        let mut routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| match r {
                Route::Header { name, value, cluster } => json!({
                    "match": {"prefix": "/", "headers": [{"name": name, "string_match": {"exact": value}}]},
                    "route": {"cluster": cluster}
                }),
                Route::Prefix { prefix, cluster } => json!({
                    "match": {"prefix": prefix},
                    "route": {"cluster": cluster}
                }),
            })
            .collect();
        match self.clusters.first() {
            Some((default, _)) if !self.direct_response => routes.push(json!({
                "match": {"prefix": "/"},
                "route": {"cluster": default}
            })),
            _ => routes.push(json!({
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}
            })),
        }

        let grpc = self.grpc_clusters.iter().map(|(name, ep)| {
            json!({
                "name": name,
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_ONLY",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": ep.host, "port_value": ep.port
                    }}}}]}]
                }
            })
        });
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, ep)| {
                json!({
                    "name": name,
                    "type": "STRICT_DNS",
                    "dns_lookup_family": "V4_ONLY",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                            "address": ep.host, "port_value": ep.port
                        }}}}]}]
                    }
                })
            })
            .chain(grpc)
            .collect();

        let mut bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": self.admin_address, "port_value": self.admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "edge",
                    "address": {"socket_address": {"address": self.listen_address, "port_value": self.listen_port}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "edge",
                            "use_remote_address": true,
                            "xff_num_trusted_hops": self.xff_num_trusted_hops,
                            "access_log": self.access_log.iter().map(|f| json!({
                                "name": "envoy.access_loggers.stderr",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                                    "log_format": {"text_format_source": {"inline_string": f}}
                                }
                            })).collect::<Vec<_>>(),
                            "normalize_path": self.normalize_paths,
                            "merge_slashes": self.normalize_paths,
                            "path_with_escaped_slashes_action":
                                if self.normalize_paths { "REJECT_REQUEST" } else { "KEEP_UNCHANGED" },
                            "route_config": {
                                "name": "edge",
                                "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]
                            },
                            "http_filters": http_filters
                        }
                    }]}]
                }],
                "clusters": clusters
            }
        });
        if let (Some(sc), Some(b)) = (&self.stats_config, bootstrap.as_object_mut()) {
            b.insert("stats_config".into(), sc.clone());
        }
        bootstrap
    }
}

/// The `envoy.filters.http.wasm` entry for one filter, its code at `path` (as the runtime sees it).
pub fn wasm_filter_json(f: &WasmFilter, path: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": f.name,
                "root_id": f.root_id,
                "fail_open": f.fail_open,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": f.configuration
                },
                "vm_config": {
                    "vm_id": f.vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": path}}
                }
            }
        }
    })
}

/// Envoy's native local rate limit filter set never to limit (a benchmark comparison row).
pub fn native_local_ratelimit_unlimited() -> Value {
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {"max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s"},
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}
        }
    })
}

/// Envoy's Lua filter with empty request and response handlers (a benchmark comparison row).
pub fn native_lua_noop() -> Value {
    json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string":
                "function envoy_on_request(request_handle) end\nfunction envoy_on_response(response_handle) end\n"}
        }
    })
}
