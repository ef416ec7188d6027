"""Build devset.jsonl from the authoring sources in _src/*.txt (temporary helper)."""

import json, re, glob, sys, random, os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "devset.jsonl")
LABELS = {"PERSON", "ORG", "GPE", "LOC", "NORP"}


def parse(path):
    recs = []
    cur = None
    key = None
    pending_blank = False
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.startswith("@@"):
            if cur:
                recs.append(cur)
            flags = line[2:].split()
            cur = {
                "size": flags[0],
                "flags": flags[1:],
                "src": f"{os.path.basename(path)}:{len(recs) + 1}",
                "title": "",
                "text": "",
                "ents": "",
                "countries": "",
                "topics": "",
            }
            key = None
            pending_blank = False
            continue
        if cur is None:
            continue
        m = re.match(r"^(title|text|ents|countries|topics):\s?(.*)$", line)
        if m:
            key = m.group(1)
            cur[key] = m.group(2).strip()
            pending_blank = False
            continue
        if not line.strip():
            pending_blank = True
            continue
        if key:
            sep = "\n\n" if (key == "text" and pending_blank and cur[key]) else " "
            cur[key] = (cur[key] + sep + line.strip()) if cur[key] else line.strip()
        pending_blank = False
    if cur:
        recs.append(cur)
    return recs


def main():
    recs = []
    for p in sorted(glob.glob(os.path.join(HERE, "b*.txt"))):
        recs.extend(parse(p))
    rnd = random.Random(13)
    rnd.shuffle(recs)
    out = []
    meta = []
    for i, r in enumerate(recs, 1):
        ents = []
        for part in [x for x in r["ents"].split("|") if x.strip()]:
            lab, _, vals = part.partition("=")
            lab = lab.strip()
            assert lab in LABELS, (r["src"], lab)
            for v in vals.split(";"):
                v = v.strip()
                if v:
                    ents.append({"text": v, "label": lab})
        obj = {
            "id": f"dev-{i:03d}",
            "title": r["title"].strip(),
            "text": r["text"].strip(),
            "gold": {"entities": ents, "countries": r["countries"].split(), "topics": r["topics"].split()},
        }
        out.append(obj)
        meta.append({"id": obj["id"], "src": r["src"], "size": r["size"], "flags": r["flags"]})
    with open(OUT, "w", encoding="utf-8") as f:
        for o in out:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    json.dump(meta, open(os.path.join(HERE, "meta.json"), "w"), indent=0)
    print(len(out), "records")


main()
