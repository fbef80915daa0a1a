//! The JSON Schemas of the configurations (`schemas/*.schema.json`), generated from the Rust
//! config types the filters parse: editors and CI can check a configuration against them. This
//! test fails when a type changed and the committed schema did not; regenerate with
//! `UPDATE_SCHEMAS=1 cargo test -p edge --test schemas`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use schemars::{schema_for, JsonSchema};

/// edge.wasm's configuration: each section exactly that feature's.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct EdgeConfig {
    cdn_signing: Option<cdn_signing::config::RawConfig>,
    bot_detection: Option<bot_detection::config::RawConfig>,
    rate_limit: Option<rate_limit::config::RawConfig>,
    stage_routing: Option<stage_routing::config::RawConfig>,
}

#[test]
fn committed_schemas_match_the_config_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let schemas = [
        ("rate_limit", schema_for!(rate_limit::config::RawConfig)),
        (
            "bot_detection",
            schema_for!(bot_detection::config::RawConfig),
        ),
        ("cdn_signing", schema_for!(cdn_signing::config::RawConfig)),
        (
            "stage_routing",
            schema_for!(stage_routing::config::RawConfig),
        ),
        (
            "stage_routing_data",
            schema_for!(stage_routing::config::RawStageData),
        ),
        ("edge", schema_for!(EdgeConfig)),
    ];
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = vec![];
    for (name, schema) in schemas {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(format!("{name}.schema.json"));
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "schemas out of date with the config types: {stale:?}; run `UPDATE_SCHEMAS=1 cargo test -p edge --test schemas`"
    );
}

/// The schemas refuse what the filters refuse for shape: unknown fields
/// (`additionalProperties: false`) and a missing required field.
#[test]
fn schemas_refuse_unknown_fields() {
    let s = serde_json::to_value(schema_for!(rate_limit::config::RawConfig)).unwrap();
    assert_eq!(s["additionalProperties"], serde_json::json!(false));
    assert_eq!(s["required"], serde_json::json!(["rules"]));
    let e = serde_json::to_value(schema_for!(EdgeConfig)).unwrap();
    assert_eq!(e["additionalProperties"], serde_json::json!(false));
}
