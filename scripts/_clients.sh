# The real Direct Line clients (issue 4): the Web Chat UI bundle for the demo page, and what
# the end-to-end tests drive (Node 20 + botframework-directlinejs, Debian Chromium).
# Sourced by scripts/_setup.sh, after it has cd'd to the repository root. Every function
# fails the run with a message naming what is missing: the tests never skip for lack of them.

WEBCHAT_UI_VERSION="4.18.1"
# sha256 of package/dist/webchat.js in botframework-webchat-4.18.1.tgz (npm checks the
# tarball's own integrity; this pins the one file we copy out of it).
WEBCHAT_UI_SHA256="0a68ad0a64fc04d621197da10c3eec0f843e16f7d03f6bcbed29b47517cf9bff"
WEBCHAT_UI_DEST="webchat/static/webchat/vendor/webchat.js"
NODE_MAJOR_MIN=20

clients_fail() {
  echo "setup: MISSING: $*" >&2
  return 1
}

# Copy dist/webchat.js (only that file: dist/ also holds a 147 MB stats.json) out of the npm
# tarball of botframework-webchat into the git-ignored vendor folder the demo page serves.
install_webchat_bundle() {
  if [ -f "$WEBCHAT_UI_DEST" ] && [ "$(sha256sum "$WEBCHAT_UI_DEST" | cut -d' ' -f1)" = "$WEBCHAT_UI_SHA256" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 \
    || clients_fail "npm (Node.js ${NODE_MAJOR_MIN}+) is needed to fetch botframework-webchat@${WEBCHAT_UI_VERSION} for the demo page" \
    || return 1
  local cache=".cache/botframework-webchat-${WEBCHAT_UI_VERSION}"
  local tgz="$cache/botframework-webchat-${WEBCHAT_UI_VERSION}.tgz"
  mkdir -p "$cache"
  if [ ! -s "$tgz" ]; then
    echo "setup: fetching botframework-webchat@${WEBCHAT_UI_VERSION} from npm"
    (cd "$cache" && npm pack --silent "botframework-webchat@${WEBCHAT_UI_VERSION}" >/dev/null) \
      || clients_fail "npm pack botframework-webchat@${WEBCHAT_UI_VERSION} failed (is the npm registry reachable?)" \
      || return 1
  fi
  rm -rf "$cache/package"
  tar -xzf "$tgz" -C "$cache" package/dist/webchat.js \
    || clients_fail "$tgz has no package/dist/webchat.js" || return 1
  local got
  got="$(sha256sum "$cache/package/dist/webchat.js" | cut -d' ' -f1)"
  if [ "$got" != "$WEBCHAT_UI_SHA256" ]; then
    rm -f "$tgz"
    clients_fail "dist/webchat.js of botframework-webchat@${WEBCHAT_UI_VERSION} has sha256 $got, expected $WEBCHAT_UI_SHA256"
    return 1
  fi
  mkdir -p "$(dirname "$WEBCHAT_UI_DEST")"
  cp "$cache/package/dist/webchat.js" "$WEBCHAT_UI_DEST"
  echo "setup: installed $WEBCHAT_UI_DEST (botframework-webchat@${WEBCHAT_UI_VERSION})"
}

# Node 20+ and tests/e2e/node_modules exactly as tests/e2e/package-lock.json pins them.
install_e2e_node_deps() {
  command -v node >/dev/null 2>&1 \
    || clients_fail "node (Node.js ${NODE_MAJOR_MIN}+) is needed by the end-to-end tests" || return 1
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge "$NODE_MAJOR_MIN" ] \
    || clients_fail "Node.js ${NODE_MAJOR_MIN}+ is needed by the end-to-end tests, found $(node --version)" \
    || return 1
  command -v npm >/dev/null 2>&1 \
    || clients_fail "npm is needed to install tests/e2e/package.json" || return 1
  local stamp="tests/e2e/node_modules/.package-lock.sha256"
  local want
  want="$(sha256sum tests/e2e/package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing tests/e2e Node packages (npm ci)"
    npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error >/dev/null \
      || clients_fail "npm ci in tests/e2e failed: botframework-directlinejs, xhr2 and ws could not be installed" \
      || return 1
    echo "$want" > "$stamp"
  fi
}

# Debian's Chromium at /usr/bin/chromium for the Web Chat UI test (never a browser download).
install_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  echo "setup: installing Debian chromium (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || clients_fail "Debian package chromium could not be installed (apt-get install -y chromium): the Web Chat UI test needs /usr/bin/chromium" \
    || return 1
  [ -x /usr/bin/chromium ] || clients_fail "/usr/bin/chromium is still missing after apt-get install chromium"
}
