# Debian packages the preload tests run real programs with (crates/dmaslab-preload/tests):
# python3 (with its sqlite3 module), git, perl, coreutils' sort, and a C and a C++ compiler.
# Installs only what is missing; apt-get update runs only then.
set -euo pipefail
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v perl >/dev/null 2>&1 || missing+=(perl)
command -v sort >/dev/null 2>&1 || missing+=(coreutils)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import sqlite3' >/dev/null 2>&1; then
  missing+=(libpython3-stdlib)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "packages: python3, git, perl, sort, cc and g++ are present"
  exit 0
fi
echo "packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
