"""usage: addent.py FILE:N LABEL 'surface' [FILE:N LABEL surface ...] ; or FILE:N -LABEL surface to remove"""

import sys, re

args = sys.argv[1:]
for i in range(0, len(args), 3):
    loc, lab, surf = args[i : i + 3]
    f, n = loc.split(":")
    n = int(n)
    lines = open(f, encoding="utf-8").read().split("\n")
    rec = 0
    idx = None
    for j, line in enumerate(lines):
        if line.startswith("@@"):
            rec += 1
        if rec == n and line.startswith("ents:"):
            idx = j
            break
    assert idx is not None, loc
    body = lines[idx][5:].strip()
    parts = [p.strip() for p in body.split("|") if p.strip()]
    d = {}
    for p in parts:
        k, _, v = p.partition("=")
        d[k.strip()] = [x.strip() for x in v.split(";") if x.strip()]
    if lab.startswith("-"):
        lab = lab[1:]
        assert surf in d.get(lab, []), (loc, lab, surf)
        d[lab].remove(surf)
    else:
        d.setdefault(lab, [])
        assert surf not in d[lab], (loc, lab, surf)
        d[lab].append(surf)
    order = ["PERSON", "ORG", "GPE", "NORP", "LOC"]
    lines[idx] = "ents: " + " | ".join(f"{k}={'; '.join(d[k])}" for k in order if d.get(k))
    open(f, "w", encoding="utf-8").write("\n".join(lines))
    print("ok", loc, lab, surf)
