#!/bin/sh
# Provisioning example (fixture-ci.toml): runs as root in the guest, with the recipe's env
# (TOOLCHAIN). It leaves evidence of what it was given; replace it with your own steps.
set -eu
echo "setting up $TOOLCHAIN"
echo "$TOOLCHAIN" > /etc/kiln-toolchain
echo done
