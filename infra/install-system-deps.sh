#!/usr/bin/env bash
# Installs the Debian packages stt-corpus needs when any is missing:
#   espeak-ng, sox (+ formats): speech with a known transcript for gen-audio and tests
#   ffmpeg: command-line decoding checks; curl: plain webdataset reads http(s) shards with it
#   chromium: the browser check of the Prefect UI (headless screenshot)
# Runs `apt-get update` first, as root or through sudo. Does nothing when all are present.
set -euo pipefail

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox libsox-fmt-all)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v curl >/dev/null || need+=(curl)
command -v tar >/dev/null || need+=(tar)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "stt-corpus needs these Debian packages: ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
