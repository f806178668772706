#!/usr/bin/env bash
# Checks that a release tag names package.json's version, so a release can never ship
# executables and an image that print another version than their tag.
#
#   scripts/release-tag.sh v0.1.0 [PACKAGE_JSON]    # default: the repository's package.json
#
# On success prints `version=0.1.0`, `major=0` and `prerelease=false` (true for a version
# with a pre-release part such as 1.0.0-rc.1), one per line; .github/workflows/release.yml
# appends them to $GITHUB_OUTPUT. Exit code 1 with one line naming both values when they
# differ, 2 on a bad argument.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
  echo "release-tag: usage: release-tag.sh vX.Y.Z [PACKAGE_JSON]" >&2
  exit 2
fi
tag=$1
package_json=${2:-"$(cd "$(dirname "$0")/.." && pwd)/package.json"}
version=$(node -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version))' "$package_json")

if [ "$tag" != "v$version" ]; then
  echo "release-tag: the tag $tag does not match package.json's version $version: tag v$version, or set \"version\": \"${tag#v}\" in package.json and tag that commit" >&2
  exit 1
fi
# Semantic versioning's MAJOR.MINOR.PATCH, optionally -PRERELEASE; no +BUILD part, which an
# image tag cannot carry.
if ! [[ $version =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "release-tag: package.json's version $version is not MAJOR.MINOR.PATCH with an optional -PRERELEASE" >&2
  exit 1
fi
echo "version=$version"
echo "major=${BASH_REMATCH[1]}"
if [ -n "${BASH_REMATCH[4]}" ]; then echo "prerelease=true"; else echo "prerelease=false"; fi
