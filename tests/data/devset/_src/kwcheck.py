import json, re

recs = [json.loads(l) for l in open("../devset.jsonl")]
meta = {m["id"]: m for m in json.load(open("meta.json"))}
kw = {
    "arrest": r"arrest|detain|detention|custody|captured",
    "abduction": r"kidnap|abduct|hostage|seized by|captive",
    "agreement": r"ceasefire|truce|peace deal|peace agreement|accord|treaty|agreement|deal\b",
    "sanctions": r"sanction",
    "election": r"election|vote|ballot|polls?\b|campaign",
    "protest": r"protest|demonstrat|rall(y|ied)|march(ed|es)|strike|walkout|chant",
    "airstrike": r"air ?strike|drone|warplane|missile|fighter jet|bombard|glide bomb|aircraft",
    "bombing": r"bomb|explosi|blast|IED|detonat",
    "armed_clash": r"clash|fighting|gunfight|gun battle|shell(ing|ed)|artillery|exchange of fire|opened fire|rocket|fought|assault|attack",
    "troop_deployment": r"deploy|sent .* troops|send .* (troops|soldiers)|reinforce",
    "troop_withdrawal": r"withdraw|pull(ed|ing)? out|pullout|drawdown|leave|expulsion|redeploy|exit|depart",
    "coup": r"coup|seized power|seize power|junta|takeover",
    "assassination": r"assassinat|shot dead|killed .* (leader|commander|general)",
    "nuclear_program": r"nuclear|enrich|uranium",
    "terrorism": r"terror|jihad|Islamic State|al-Qaida|al-Shabaab|Boko Haram",
    "natural_disaster": r"earthquake|flood|cyclone|typhoon|wildfire|bushfire|drought|volcan|tsunami|hurricane|tornado|quake|landslide|mudslide",
    "diplomacy": r"talks|summon|ambassador|diplomat|envoy|foreign minister|expel|recall|visit|summit",
}
import sys

sel = sys.argv[1:] or list(kw)
for t in sel:
    print("=====", t)
    for r in recs:
        if t in r["gold"]["topics"]:
            continue
        full = r["title"] + " " + r["text"]
        ms = [m for m in re.finditer(kw[t], full, re.I)]
        if ms:
            ctx = ["…" + full[max(0, m.start() - 50) : m.end() + 40].replace("\n", " ") + "…" for m in ms[:2]]
            print(r["id"], r["gold"]["topics"], "|", " || ".join(ctx))
