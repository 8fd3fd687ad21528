# Each crate's `rust-version` is true: the crates are checked with that toolchain (installed
# here, minimal profile), one `cargo check` per distinct version. A version equal to the default
# toolchain's was checked by 10-build.sh's clippy already. (After 15-packages.sh: needs python3.)
set -uo pipefail
status=0
current=$(rustc -V | awk '{print $2}')
# "name version" of every workspace member that declares one.
members=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("rust_version"):
        print(p["name"], p["rust_version"])
')
for v in $(echo "$members" | awk '{print $2}' | sort -uV); do
  crates=$(echo "$members" | awk -v v="$v" '$2 == v {print $1}')
  # rust-version 1.87 means 1.87.0, the toolchain to check with.
  [[ "$v" =~ ^[0-9]+\.[0-9]+$ ]] && v="$v.0"
  if [ "$v" = "$current" ]; then
    echo "msrv: $v is the default toolchain ($current): checked by clippy in 10-build.sh:" $crates
    continue
  fi
  if ! rustc "+$v" -V >/dev/null 2>&1 &&
    ! rustup toolchain install "$v" --profile minimal >/dev/null 2>&1; then
    echo "SKIPPED: rust-version $v check of" $crates": rustup could not install toolchain $v"
    continue
  fi
  args=()
  for c in $crates; do args+=(-p "$c"); done
  if cargo "+$v" check "${args[@]}"; then
    echo "msrv: $(rustc "+$v" -V) checks" $crates
  else
    echo "msrv: rust-version $v is not enough for" $crates
    status=1
  fi
done
exit $status
