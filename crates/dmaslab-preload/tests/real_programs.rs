//! Real programs under `LD_PRELOAD=libdmaslab.so` with each policy, compared byte for byte with
//! the same run on the system allocator.

mod common;
use common::*;
use std::process::Command;

/// The fixed python workload (also used by `dmaslab report`): dicts, lists, strings, json and
/// sqlite3.
const PY_WORKLOAD: &str = r#"
import json, sqlite3, hashlib
d = {}
for i in range(50000):
    d["k%d" % i] = [i, str(i) * (i % 7), {"n": i}]
lst = sorted(d.keys(), key=lambda k: (len(k), k[::-1]))
s = "".join(lst[:2000])
js = json.dumps(d, sort_keys=True)
back = json.loads(js)
assert back == d
db = sqlite3.connect(":memory:")
db.execute("create table t (k text primary key, v integer, s text)")
db.executemany("insert into t values (?, ?, ?)", ((k, v[0], v[1]) for k, v in d.items()))
rows = db.execute("select count(*), sum(v), max(length(s)) from t").fetchone()
grouped = db.execute("select v % 7, count(*) from t group by 1 order by 1").fetchall()
print(len(d), len(lst), len(s), len(js), rows, grouped)
print(hashlib.sha256(js.encode()).hexdigest())
"#;

#[test]
fn python_workload_matches_system_allocator() {
    require("python3");
    compare_with_system("python3", || {
        let mut c = Command::new("python3");
        c.arg("-c").arg(PY_WORKLOAD);
        c
    });
}

#[test]
fn perl_hash_loop_matches_system_allocator() {
    require("perl");
    compare_with_system("perl", || {
        let mut c = Command::new("perl");
        c.arg("-e").arg(
            r#"my %h; for my $i (1..200000) { $h{"key$i"} = "v" x ($i % 50); }
               my $n = 0; for my $k (sort keys %h) { $n += length($h{$k}); delete $h{$k} if $n % 3 == 0; }
               my @a = map { [$_, $_ * 2] } 1..50000;
               print scalar(keys %h), " $n ", scalar(@a), "\n";"#,
        );
        c
    });
}

#[test]
fn sort_of_a_large_file_matches_system_allocator() {
    require("sort");
    let dir = Scratch::new("sort");
    let input = dir.path().join("input.txt");
    let mut s = String::new();
    let mut x: u64 = 88172645463325252;
    for i in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!(
            "{:016x} line {i} {}\n",
            x,
            "z".repeat((x % 40) as usize)
        ));
    }
    std::fs::write(&input, s).unwrap();
    compare_with_system("sort", || {
        let mut c = Command::new("sort");
        c.arg("-S").arg("16M").arg("--parallel=2").arg(&input);
        c
    });
}

#[test]
fn git_on_a_throwaway_repository_matches_system_allocator() {
    require("git");
    let script = r#"
set -e
cd "$1"
rm -rf repo && mkdir repo && cd repo
git init -q -b main .
git config user.name dmaslab && git config user.email dmaslab@example.invalid
for i in 1 2 3 4 5; do
  seq 1 $((i * 1000)) > file$i.txt
  git add file$i.txt
  git commit -q -m "commit $i"
done
git log --format='%H %s'
git log -p --stat | sha256sum
git gc -q
git count-objects -v | grep -v size
"#;
    let dir = Scratch::new("git");
    compare_with_system("git", || {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir.path())
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path());
        c
    });
}
