# The python3 workload whose allocation trace dmaslab-bench records (under libdmaslab.so with
# DMASLAB_TRACE and PYTHONMALLOC=malloc, so every object reaches malloc) and replays under each
# allocator. Deterministic: dicts of lists, strings and dicts, a json round trip, sqlite3.
import json
import sqlite3

d = {}
for i in range(30000):
    d["key%d" % i] = [i, str(i) * 3, {"a": i, "b": [i] * (i % 7)}]
s = json.dumps(d)
e = json.loads(s)
assert len(e) == len(d)
words = sorted(("w%05d" % ((i * 7919) % 20000)) for i in range(20000))
text = " ".join(words)
parts = text.split(" ")
db = sqlite3.connect(":memory:")
db.execute("create table t (k text, v integer)")
db.executemany("insert into t values (?, ?)", ((w, i) for i, w in enumerate(parts)))
n = db.execute("select count(*), sum(v) from t where k like 'w1%'").fetchone()
del d, e, s
print(n, len(parts))
