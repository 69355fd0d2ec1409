#!/bin/sh
# Makes sure the Debian packages Spatium builds against are installed.
# As root it installs what is missing with apt-get; otherwise it prints the
# exact apt-get line to run and fails. Every make target runs it once.
set -u
PKGS="gcc make pkg-config libzmq3-dev libmsgpack-dev libcmocka-dev zlib1g-dev libpng-dev"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
line="apt-get install -y$missing"
if [ "$(id -u)" != 0 ]; then
    echo "spatium: missing build packages; run as root:" >&2
    echo "  apt-get update && $line" >&2
    exit 1
fi
echo "spatium: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 1
apt-get install -y -qq $missing >&2 || exit 1
