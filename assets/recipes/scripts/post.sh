#!/bin/sh
# Post-build example (both recipes): runs on this host, in the recipe's directory, once the
# image is built, verified and published. kiln gives it the image's facts; this prints them
# (a real one might notify a chat or tag a release).
set -eu
echo "built $KILN_IMAGE_NAME: $KILN_IMAGE_PATH"
echo "  $KILN_IMAGE_SIZE bytes on disk, $KILN_IMAGE_VIRTUAL_SIZE virtual"
echo "  sha256 $KILN_IMAGE_SHA256"
