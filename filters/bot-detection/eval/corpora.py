#!/usr/bin/env python3
"""Writes the labelled user-agent corpora for the bot-detection evaluation, from PyPI packages that
`make bot-corpora` installs into .venv:

  bots      crawler-user-agents (MIT): every `instances` entry of every pattern. Split by a hash of
            the pattern entry: `tune` (even) was looked at while curating data/user-agents.tsv,
            `holdout` (odd) never was.
  browsers  fake-useragent (Apache-2.0) real-browser user agents, split the same way by a hash of
            the UA; plus, held out entirely (a second, independent source), the `userAgent`
            values of apify-fingerprint-datapoints (Apache-2.0).

Output: OUT/{bots_tune,bots_holdout,browsers_tune,browsers_holdout}.txt, one UA per line.
"""
import hashlib, importlib.resources as res, json, os, sys, zipfile

out = sys.argv[1] if len(sys.argv) > 1 else "target/bot-corpora"
os.makedirs(out, exist_ok=True)

def held(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 == 1

def clean(ua: str) -> str:
    return ua.replace("\r", " ").replace("\n", " ").strip()

sets = {"bots_tune": set(), "bots_holdout": set(), "browsers_tune": set(), "browsers_holdout": set()}

crawlers = json.loads(res.files("crawleruseragents").joinpath("crawler-user-agents.json").read_text())
for entry in crawlers:
    for ua in entry.get("instances", []):
        if clean(ua):
            sets["bots_holdout" if held(entry["pattern"]) else "bots_tune"].add(clean(ua))

with res.files("fake_useragent").joinpath("data/browsers.jsonl").open() as f:
    for line in f:
        ua = clean(json.loads(line)["useragent"])
        if ua:
            sets["browsers_holdout" if held(ua) else "browsers_tune"].add(ua)

with res.as_file(res.files("apify_fingerprint_datapoints").joinpath("data/fingerprint-network-definition.zip")) as p:
    network = json.loads(zipfile.ZipFile(p).read("network.json"))
for node in network["nodes"]:
    if node["name"] == "userAgent":
        for ua in node["possibleValues"]:
            if isinstance(ua, str) and ua.startswith("Mozilla/"):
                sets["browsers_holdout"].add(clean(ua))

# A UA listed as a bot is not also a browser sample.
for k in ("browsers_tune", "browsers_holdout"):
    sets[k] -= sets["bots_tune"] | sets["bots_holdout"]
for name, uas in sets.items():
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write("\n".join(sorted(uas)) + "\n")
    print(f"{name}: {len(uas)}")
