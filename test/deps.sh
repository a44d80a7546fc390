#!/bin/sh
# deps.sh PKG... - make sure these Debian packages are installed.
# As root, missing ones are installed with apt-get; otherwise the exact
# command is printed and the script fails, so `make` stops with a clear hint.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; } || {
    echo "apt-get install -y$missing failed" >&2; exit 1; }
else
  echo "missing Debian packages; run: sudo apt-get install -y$missing" >&2
  exit 1
fi
