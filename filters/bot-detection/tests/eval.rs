//! Evaluation over labelled public corpora (`make bot-corpora` writes them; see eval/corpora.py
//! and eval/README.md): recall on bots, false positives on non-bots, and the share of detected bots
//! that get a named category, with the default configuration.
//!
//! Every sample is split by hash: the `tune` halves were looked at while curating the pattern data;
//! the `holdout` halves were not, and only aggregate figures are printed for them. The test asserts
//! the held-out figures against the targets.
//!
//! A sample counts as flagged when its category is a bot category (not `human`, `app`,
//! `suspicious`). Only the user-agent is given, with `accept` and `accept-language` present, so
//! header anomalies, which need real requests, are not what is measured here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bot_detection::category::Category;
use bot_detection::config::Config;
use bot_detection::detect::{decide, Signals};

/// `(source, user-agent)` pairs of one set.
fn corpus(name: &str) -> Vec<(String, String)> {
    let dir = std::env::var_os("BOT_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bot-corpora")
        });
    let path = dir.join(format!("{name}.tsv"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make bot-corpora`", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(s, u)| (s.to_string(), u.to_string()))
        .collect()
}

fn category(cfg: &Config, ua: &str) -> (Category, String) {
    let s = Signals {
        user_agent: Some(ua.as_bytes()),
        accept: true,
        accept_language: true,
        ..Default::default()
    };
    let v = decide(cfg, &s, &|| None);
    (v.category, v.name.unwrap_or("").to_string())
}

#[derive(Default)]
struct Tally {
    total: usize,
    flagged: usize,
    named: usize,
    by_source: BTreeMap<String, (usize, usize)>,
    by_category: BTreeMap<&'static str, usize>,
    /// Wrong answers (misses for bots, false positives for non-bots), with the verdict.
    wrong: Vec<(String, String)>,
}

fn run(cfg: &Config, name: &str, bots: bool) -> Tally {
    let mut t = Tally::default();
    for (source, ua) in corpus(name) {
        let (c, why) = category(cfg, &ua);
        let flagged = c.is_bot();
        t.total += 1;
        t.flagged += usize::from(flagged);
        if flagged && c != Category::UnknownBot {
            t.named += 1;
        }
        if flagged {
            *t.by_category.entry(c.as_str()).or_default() += 1;
        }
        let e = t.by_source.entry(source).or_default();
        e.0 += 1;
        e.1 += usize::from(flagged);
        if flagged != bots {
            t.wrong.push((ua, format!("{} ({why})", c.as_str())));
        }
    }
    t
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

#[test]
fn recall_false_positives_and_named_categories_on_public_corpora() {
    let t = std::time::Instant::now();
    let cfg = Config::from_json(b"{}").unwrap();
    println!(
        "configure: {:?}, {} needles, automaton {} KiB",
        t.elapsed(),
        cfg.matcher.len(),
        cfg.matcher.memory_usage() / 1024
    );
    let sets = [
        ("bots_tune", true),
        ("bots_holdout", true),
        ("browsers_tune", false),
        ("browsers_holdout", false),
    ];
    let all: Vec<String> = sets
        .iter()
        .flat_map(|(n, _)| corpus(n).into_iter().map(|(_, u)| u))
        .collect();
    let t = std::time::Instant::now();
    let mut bots = 0usize;
    for _ in 0..3 {
        for ua in &all {
            let s = Signals {
                user_agent: Some(ua.as_bytes()),
                accept: true,
                accept_language: true,
                ..Default::default()
            };
            bots += usize::from(decide(&cfg, &s, &|| None).category.is_bot());
        }
    }
    println!(
        "decide: {:.2} µs per user-agent, uncached ({} user-agents, {bots} bot verdicts)",
        t.elapsed().as_secs_f64() * 1e6 / (3 * all.len()).max(1) as f64,
        all.len()
    );
    let t = std::time::Instant::now();
    let tallies: Vec<Tally> = sets.iter().map(|(n, b)| run(&cfg, n, *b)).collect();
    let _ = t;
    println!("| set | samples | flagged as bots | rate | named category |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, bots), t) in sets.iter().zip(&tallies) {
        let rate = if *bots {
            format!("recall {:.2}%", pct(t.flagged, t.total))
        } else {
            format!("false positives {:.2}%", pct(t.flagged, t.total))
        };
        let named = if *bots {
            format!("{:.1}%", pct(t.named, t.flagged))
        } else {
            "".into()
        };
        println!(
            "| {name} | {} | {} | {rate} | {named} |",
            t.total, t.flagged
        );
    }
    for ((name, _), t) in sets.iter().zip(&tallies) {
        println!(
            "\n{name}, by source:\n\n| source | samples | flagged | rate |\n|---|---:|---:|---:|"
        );
        for (s, (n, f)) in &t.by_source {
            println!("| {s} | {n} | {f} | {:.2}% |", pct(*f, *n));
        }
    }
    for ((name, _), t) in sets.iter().zip(&tallies).take(2) {
        println!("\n{name}, flagged by category:\n\n| category | bots |\n|---|---:|");
        for (c, n) in &t.by_category {
            println!("| {c} | {n} |");
        }
    }
    // Tune-set errors are printed on request, for curating; held-out ones never are.
    if std::env::var_os("BOT_EVAL_SHOW_TUNE").is_some() {
        for (ua, v) in tallies[0].wrong.iter().chain(&tallies[2].wrong) {
            println!("tune wrong: {v}\t{ua}");
        }
    }
    let (bh, fh) = (&tallies[1], &tallies[3]);
    // The targets, asserted: recall >= 97.5% and false positives <= 0.30%. This split measures
    // 97.52% (41 of 1,656 bots missed) and 0.27% (52 of 18,941 non-bots flagged, most of them
    // Matomo's "mobile app" fixtures: podcast feed fetchers and one-word app names).
    assert!(
        pct(bh.flagged, bh.total) >= 97.5,
        "held-out recall {:.2}% < 97.5%",
        pct(bh.flagged, bh.total)
    );
    assert!(
        pct(fh.flagged, fh.total) <= 0.30,
        "held-out false positives {:.2}% > 0.30%",
        pct(fh.flagged, fh.total)
    );
    assert!(
        pct(bh.named, bh.flagged) >= 60.0,
        "held-out named-category share {:.1}% < 60%",
        pct(bh.named, bh.flagged)
    );
}
