#!/usr/bin/env python3
"""Writes the labelled user-agent corpora for the bot-detection evaluation, from PyPI packages that
`make bot-corpora` installs into .venv (or, for device-detector, downloads as a source archive):

  crawler-user-agents (MIT)           bots: every `instances` entry of every pattern, split by a
                                      hash of the pattern entry (one crawler, one side).
  fake-useragent (Apache-2.0)         non-bots: current desktop and mobile browsers.
  apify-fingerprint-datapoints        non-bots: browser `userAgent` values; held out entirely (a
    (Apache-2.0)                      second, independent source of current browsers).
  uap-core (Apache-2.0), through the    tune only: the PGTS browser list (12,500 user-agents of the
    `uaparser` crate's copy               2000s: old IE with `.NET CLR` tokens, old Firefox, Opera,
                                          Netscape, text and Amiga browsers, and the crawlers of
                                          the time), labelled by uap-core's browser family: a
                                          browser family is a non-bot, a crawler, tool or library
                                          family a bot; `Other`, the ambiguous families and feed
                                          readers are left out.
                                          Everything of it was looked at, so all of it is `tune`.
                                        Also tune only: uap-core's device test cases (16,000
                                          feature phones, TVs, set-top boxes and tablets, many
                                          as bare model strings), device family `Spider` a bot,
                                          a named device a non-bot, `Other` left out.
  device-detector (Matomo fixtures,   bots: entries with a `bot` section, and HTTP libraries;
    LGPL-3.0; evaluation only)        non-bots: every other entry (old and odd browsers, feature
                                      phones, in-app browsers, TVs, consoles, cars, desktop apps,
                                      media players, mobile apps); feed readers are left out, as
                                      they are bots to some and apps to others. This data is read
                                      at test time only; nothing of it enters data/user-agents.tsv.

Every sample is split `tune` / `holdout` by sha256 (even / odd): tune sets were looked at while
curating the pattern data, holdout sets never were (only aggregate figures are printed for them).

Output: OUT/{bots,browsers}_{tune,holdout}.tsv, one `source<TAB>user-agent` per line.
"""
import hashlib, importlib.resources as res, json, os, subprocess, sys, tarfile, urllib.request, zipfile

import yaml

out = sys.argv[1] if len(sys.argv) > 1 else "target/bot-corpora"
os.makedirs(out, exist_ok=True)

DEVICE_DETECTOR = "device_detector==6.5.1"
UAPARSER_CRATE = ("https://static.crates.io/crates/uaparser/uaparser-0.6.4.crate",
                  "a4c9e1c3f893758f154004195fc2d2c52fbda462df725220ceaef830ac29affa")


def held(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 == 1


def clean(ua) -> str:
    if not isinstance(ua, str):
        return ""
    return ua.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()


sets = {k: {} for k in ("bots_tune", "bots_holdout", "browsers_tune", "browsers_holdout")}


def add(kind: str, source: str, ua: str, key: str = None):
    ua = clean(ua)
    if ua:
        side = "holdout" if held(key if key is not None else ua) else "tune"
        sets[f"{kind}_{side}"].setdefault(ua, source)


crawlers = json.loads(res.files("crawleruseragents").joinpath("crawler-user-agents.json").read_text())
for entry in crawlers:
    for ua in entry.get("instances", []):
        add("bots", "crawler-user-agents", ua, key=entry["pattern"])

with res.files("fake_useragent").joinpath("data/browsers.jsonl").open() as f:
    for line in f:
        add("browsers", "fake-useragent", json.loads(line)["useragent"])

with res.as_file(res.files("apify_fingerprint_datapoints").joinpath("data/fingerprint-network-definition.zip")) as p:
    network = json.loads(zipfile.ZipFile(p).read("network.json"))
for node in network["nodes"]:
    if node["name"] == "userAgent":
        for ua in node["possibleValues"]:
            if isinstance(ua, str) and ua.startswith("Mozilla/"):
                sets["browsers_holdout"].setdefault(clean(ua), "apify")

# Matomo device-detector's fixtures, from its source archive (evaluation only).
pkgs = os.path.join(out, "pkgs")
os.makedirs(pkgs, exist_ok=True)
archive = [f for f in os.listdir(pkgs) if f.startswith("device_detector") and f.endswith(".tar.gz")]
if not archive:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--no-binary", ":all:", "-d", pkgs, DEVICE_DETECTOR], check=True)
    archive = [f for f in os.listdir(pkgs) if f.startswith("device_detector") and f.endswith(".tar.gz")]
with tarfile.open(os.path.join(pkgs, sorted(archive)[-1])) as tar:
    for member in tar.getmembers():
        if "/tests/fixtures/upstream/" not in member.name or not member.name.endswith(".yml"):
            continue
        family = os.path.basename(member.name).rsplit(".", 1)[0].rstrip("-0123456789")
        for entry in yaml.safe_load(tar.extractfile(member)) or []:
            if not isinstance(entry, dict):
                continue
            client = entry.get("client") or {}
            kind = client.get("type") if isinstance(client, dict) else None
            if entry.get("bot"):
                add("bots", "device-detector bots", entry.get("user_agent"))
            elif kind == "library":
                add("bots", "device-detector libraries", entry.get("user_agent"))
            elif kind == "feed reader":
                continue
            else:
                label = kind if kind and kind != "browser" else family
                add("browsers", f"device-detector {label}", entry.get("user_agent"))

# uap-core's PGTS browser list, from the `uaparser` crate (tune only: all of it was looked at).
PGTS_BROWSERS = {
    "IE", "Firefox", "Opera", "Netscape", "Safari", "MyIE2", "Konqueror", "Galeon", "Maxthon",
    "Links", "Epiphany", "Crazy Browser", "Lynx", "Camino", "Nokia Services (WAP) Browser", "Avant",
    "UP.Browser", "ELinks", "K-Meleon", "Bon Echo", "NetFront", "iCab", "Dillo", "Opera Mobile",
    "IBrowse", "Shiira", "OmniWeb", "NCSA Mosaic", "Lunascape", "Phoenix", "iRider", "Chimera",
    "SEMC-Browser", "Nutscrape", "iTunes", "Lotus Notes", "Apple Mail", "SkipStone", "Planetweb",
    "Nokia OSS Browser", "ICE Browser", "BrowseX", "BlackBerry", "Mobile Safari UI/WKWebView",
}
# Left out: no family, a feed reader, offline sync, a privacy proxy, a system library, a
# download manager (a person's tool to some, a bot to others).
PGTS_UNLABELLED = {"Other", "NetNewsWire", "AvantGo", "Space Bison", "CFNetwork", "Download Master"}
crate = os.path.join(pkgs, os.path.basename(UAPARSER_CRATE[0]))
if not os.path.exists(crate):
    with urllib.request.urlopen(UAPARSER_CRATE[0], timeout=120) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != UAPARSER_CRATE[1]:
        sys.exit(f"{UAPARSER_CRATE[0]}: unexpected sha256")
    with open(crate, "wb") as f:
        f.write(data)
seen = set().union(*sets.values())
with tarfile.open(crate) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("test_resources/pgts_browser_list.yaml"))
    for entry in yaml.safe_load(tar.extractfile(member))["test_cases"]:
        ua, family = clean(entry.get("user_agent_string")), entry.get("family")
        # Feed readers are left out, as in device-detector's (uap-core files some under IE).
        if not ua or ua in seen or family in PGTS_UNLABELLED or "feed" in ua.lower():
            continue
        kind = "browsers" if family in PGTS_BROWSERS else "bots"
        sets[f"{kind}_tune"].setdefault(ua, "uap-core pgts")
    # uap-core's device test cases: device family `Spider` is a bot, a named device a non-bot
    # (feature phones, TVs, set-top boxes, tablets, often as bare model strings); no family
    # (`Other`) is left out. Tune only, like the PGTS list.
    member = next(m for m in tar.getmembers() if m.name.endswith("tests/test_device.yaml"))
    for entry in yaml.safe_load(tar.extractfile(member))["test_cases"]:
        ua, family = clean(entry.get("user_agent_string")), entry.get("family")
        if not ua or ua in seen or not family or family == "Other":
            continue
        kind = "bots" if family == "Spider" else "browsers"
        sets[f"{kind}_tune"].setdefault(ua, "uap-core devices")

# A UA listed as a bot anywhere is not also a non-bot sample.
bots = set(sets["bots_tune"]) | set(sets["bots_holdout"])
for k in ("browsers_tune", "browsers_holdout"):
    for ua in bots & set(sets[k]):
        del sets[k][ua]
for name, uas in sets.items():
    with open(os.path.join(out, name + ".tsv"), "w") as f:
        f.write("".join(f"{src}\t{ua}\n" for ua, src in sorted(uas.items())))
    print(f"{name}: {len(uas)}")
