import sys

loc, *tops = sys.argv[1:]
f, n = loc.split(":")
n = int(n)
lines = open(f, encoding="utf-8").read().split("\n")
rec = 0
for j, line in enumerate(lines):
    if line.startswith("@@"):
        rec += 1
    if rec == n and line.startswith("topics:"):
        print("old", line)
        lines[j] = "topics: " + " ".join(tops)
        print("new", lines[j])
        break
open(f, "w", encoding="utf-8").write("\n".join(lines))
