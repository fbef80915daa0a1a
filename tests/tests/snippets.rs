//! Every YAML snippet in every README loads in Envoy as pasted: each is completed into a
//! bootstrap where its README says it belongs (a list of HTTP filters goes into a connection
//! manager, a connection manager into a listener), with clusters for the names the snippets route
//! to and the built `.wasm` files in place of `/etc/envoy/wasm/`, then `envoy --mode validate`
//! runs it. Envoy runs the filters' configuration parsing at validate time, so a bad filter JSON
//! fails here too. A snippet that starts with `domains:` is an `edge-ratelimit` limits file: it
//! is checked by the service's own parser instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_tests::harness::{envoy_binary, workspace_root};

/// Cluster names the snippets route to.
const CLUSTERS: [&str; 5] = ["origin", "prod", "canary", "next", "stage_control"];

fn readmes() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut out = vec![root.join("README.md"), root.join("ratelimit/README.md")];
    if let Ok(dir) = std::fs::read_dir(root.join("filters")) {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path().join("README.md")))
            .filter(|p| p.is_file())
            .collect();
        more.sort();
        out.extend(more);
    }
    out
}

fn yaml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let Some(end) = body.find("```") else { break };
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The snippet as a whole bootstrap, or why it cannot be placed.
fn complete(snippet: &str) -> Result<String, String> {
    let wasm_dir = edge_tests::wasm_path("x");
    let wasm_dir = wasm_dir
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let snippet = snippet.replace("/etc/envoy/wasm", &wasm_dir);
    let first = snippet.lines().next().unwrap_or("").trim();
    let network_filters = if first == "- name: envoy.filters.network.http_connection_manager" {
        snippet.clone()
    } else if first == "http_filters:" || first == "- name: envoy.filters.http.wasm" {
        let filters = snippet.strip_prefix("http_filters:\n").unwrap_or(&snippet);
        format!(
            "- name: envoy.filters.network.http_connection_manager\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n    stat_prefix: edge\n    route_config: {{ virtual_hosts: [{{ name: all, domains: [\"*\"], routes: [{{ match: {{ prefix: \"/\" }}, route: {{ cluster: origin }} }}] }}] }}\n    http_filters:\n{}",
            indent(filters, 4)
        )
    } else if first.starts_with("admin:") || first.starts_with("static_resources:") {
        return Ok(snippet);
    } else if first == "stats_config:" {
        return Ok(snippet.clone());
    } else if first == "clusters:" {
        return Ok(format!("static_resources:\n{}", indent(&snippet, 2)));
    } else {
        return Err(format!(
            "a snippet starting with {first:?} has no place to go"
        ));
    };
    let clusters: String = CLUSTERS
        .iter()
        .map(|c| {
            format!(
                "  - name: {c}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment: {{ cluster_name: {c}, endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9 }} }} }} }}] }}] }}\n"
            )
        })
        .collect();
    Ok(format!(
        "static_resources:\n  listeners:\n  - name: l\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}\n    filter_chains:\n    - filters:\n{}\n  clusters:\n{clusters}",
        indent(&network_filters, 6)
    ))
}

#[test]
fn every_readme_yaml_snippet_loads_in_envoy() {
    let envoy = envoy_binary().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for readme in readmes() {
        let text = std::fs::read_to_string(&readme).unwrap();
        for (i, block) in yaml_blocks(&text).iter().enumerate() {
            let what = format!("{} snippet {}", readme.display(), i + 1);
            if block.starts_with("domains:") {
                if let Err(e) = edge_ratelimit::config::Limits::parse(block) {
                    panic!("{what}: the limits file is refused: {e}");
                }
                continue;
            }
            let bootstrap = complete(block).unwrap_or_else(|e| panic!("{what}: {e}"));
            let file = dir.path().join(format!("snippet-{checked}.yaml"));
            std::fs::write(&file, &bootstrap).unwrap();
            let out = Command::new(&envoy)
                .args([
                    "--mode",
                    "validate",
                    "--disable-hot-restart",
                    "-l",
                    "error",
                    "-c",
                ])
                .arg(&file)
                .output()
                .unwrap();
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && log.contains("OK"),
                "{what} does not load in Envoy:\n{log}\n--- completed as ---\n{bootstrap}"
            );
            checked += 1;
        }
    }
    // The top-level README and one per module at least.
    assert!(checked >= 7, "only {checked} snippets found");
}
