#!/bin/sh
# Provisioning example (debian-12.toml): runs as root in the guest over SSH, after configure.
# Installs the packages named in PACKAGES from the guest's own apt sources (the mirror the
# installer used). Replace it with what your CI jobs need; a non-zero exit fails the build.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # PACKAGES is a list of names
apt-get install -y -q --no-install-recommends $PACKAGES
apt-get clean
rm -rf /var/lib/apt/lists/*
echo "installed: $PACKAGES"
