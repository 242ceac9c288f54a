#!/usr/bin/env bash
# Prometheus as a user installs it: build the sdist and a wheel from it, install the wheel into a fresh virtual
# environment outside the repository, and run a smoke lifecycle from a folder that is not a checkout, with a
# private HOME / XDG_* / localnet: --version, the toolchain's first use and install, localnet start --port 0,
# deploy-protocol, init, build, submit, status, stop. Fails loudly on an unexpected exit code or a traceback.
#
#   scripts/wheel_smoke.sh                    # from .ci/run; needs network for PyPI (deps) and npm (toolchain)
#   KEEP_SMOKE=1 scripts/wheel_smoke.sh       # keep the work folder for a look afterwards
#   SMOKE_NO_ISOLATION=1 ...                  # build with the dev venv's setuptools instead of a fresh one
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/prometheus-wheel-smoke.XXXXXX")"
START=$SECONDS
export NPM_CONFIG_CACHE="${NPM_CONFIG_CACHE:-$(npm config get cache 2>/dev/null || echo "$HOME/.npm")}"  # reuse `make setup`'s downloads
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nwheel smoke FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ -x "$WORK/venv/bin/prometheus" ] && [ -f "$WORK/localnet/localnet.json" ]; then
    (cd "$WORK" && env -i PATH="$PATH" HOME="$WORK/home" PROMETHEUS_LOCALNET_DIR="$WORK/localnet" \
      "$WORK/venv/bin/prometheus" localnet stop >/dev/null 2>&1) || true
  fi
  if [ "${KEEP_SMOKE:-0}" = 1 ] || [ $rc -ne 0 ]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- 1. sdist, then a wheel built from the sdist (so the sdist provably carries everything) ----------------
say "building the sdist and a wheel from it"
t0=$SECONDS
build_args=(--outdir "$WORK/dist")
[ "${SMOKE_NO_ISOLATION:-0}" = 1 ] && build_args+=(--no-isolation)
"$PY" -m build "${build_args[@]}" "$REPO" > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; die "python -m build"; }
WHEEL="$(ls "$WORK"/dist/prometheus_ic-*.whl)"
SDIST="$(ls "$WORK"/dist/prometheus_ic-*.tar.gz)"
BUILD_S=$((SECONDS - t0))
echo "built $(basename "$SDIST") and $(basename "$WHEEL") in ${BUILD_S} s"

"$PY" - "$WHEEL" "$SDIST" <<'EOF'
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
need = ["prometheus_build/compile.js", "prometheus_build/_assets/toolchain/package.json",
        "prometheus_build/_assets/toolchain/package-lock.json"]
need += [f"prometheus_build/_assets/candid/{n}.did" for n in ("ledger", "audit_hub", "mcp_registry")]
need += [f"prometheus_build/_assets/canister_src/{n}/main.mo" for n in ("ledger", "audit_hub", "mcp_registry")]
missing = [n for n in need if n not in names]
bad = [n for n in names if "node_modules" in n or n.split("/")[0] in ("tests", "testkit", "build", "bench")]
assert not missing, f"the wheel lacks {missing}"
assert not bad, f"the wheel carries {bad[:5]}"
members = [m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m]
for n in ("setup.py", "toolchain/package-lock.json", "candid/ledger.did", "canister_src/ledger/main.mo"):
    assert n in members, f"the sdist lacks {n}"
assert not [m for m in members if "node_modules" in m], "the sdist carries node_modules"
print(f"wheel: {len(names)} files, the interfaces, canister sources, compile.js and the toolchain lockfile; "
      "no node_modules, tests or build outputs")
EOF

# ---- 2. a fresh virtual environment outside the repository ------------------------------------------------
say "installing the wheel into a fresh virtual environment ($WORK/venv)"
t0=$SECONDS
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$WHEEL" > "$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log"; die "pip install"; }
INSTALL_S=$((SECONDS - t0))
echo "installed with its dependencies from PyPI in ${INSTALL_S} s"

# the recipe in the checkout (make build's command), to compare with what the installed wheel builds
"$PY" -m prometheus_build --src "$REPO/canister_src" --out "$WORK/checkout-build" --json > "$WORK/checkout-build.json" \
  2> "$WORK/checkout-build.log" || { cat "$WORK/checkout-build.log"; die "python -m prometheus_build in the checkout"; }

# ---- 3. the lifecycle, as a user types it, from a folder that is not a checkout -----------------------------
mkdir -p "$WORK/home" "$WORK/elsewhere"
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share" \
       XDG_CACHE_HOME="$WORK/home/.cache" XDG_STATE_HOME="$WORK/home/.local/state" \
       PROMETHEUS_LOCALNET_DIR="$WORK/localnet" PATH="$WORK/venv/bin:$PATH" \
       GIT_AUTHOR_NAME=smoke GIT_AUTHOR_EMAIL=smoke@example.com GIT_COMMITTER_NAME=smoke \
       GIT_COMMITTER_EMAIL=smoke@example.com GIT_CONFIG_NOSYSTEM=1
unset PYTHONPATH VIRTUAL_ENV PROMETHEUS_TOOLCHAIN_DIR PROMETHEUS_NETWORK PROMETHEUS_IDENTITY PROMETHEUS_IDENTITY_PEM \
      PROMETHEUS_TOOLCHAIN_AUTO_INSTALL
cd "$WORK/elsewhere"
[ "$(command -v prometheus)" = "$WORK/venv/bin/prometheus" ] || die "prometheus is not the fresh venv's"
SMOKE_START=$SECONDS

# run EXPECTED_EXIT COMMAND...: prints the command, its output and its time; fails on another exit or a traceback
OUT="$WORK/last.out"
run() {
  local expected=$1; shift
  local t=$SECONDS rc=0
  printf '\n$ %s\n' "$*"
  "$@" > "$OUT" 2>&1 || rc=$?
  cat "$OUT"
  printf '   (exit %s, %s s)\n' "$rc" "$((SECONDS - t))"
  [ "$rc" = "$expected" ] || die "'$*' exited $rc, expected $expected"
  if grep -q "Traceback (most recent call last)" "$OUT"; then die "'$*' printed a traceback"; fi
}

run 0 prometheus --version
grep -q "mcp_registry" "$OUT" || die "--version does not list the interfaces"
run 0 prometheus localnet start --background --port 0 --json
URL="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$OUT")"
case "$URL" in http://127.0.0.1:0|http://127.0.0.1:0/*|"") die "start --port 0 reported $URL";; esac
run 0 prometheus localnet status
grep -q "$URL" "$OUT" || die "localnet status does not show $URL"

# first use without the toolchain, not at a terminal: a clear error naming the command to run, no download
run 1 prometheus localnet deploy-protocol
grep -q "prometheus toolchain install" "$OUT" || die "the missing toolchain's error does not name the install command"
run 0 prometheus toolchain install
run 0 prometheus toolchain list
run 0 prometheus toolchain path
case "$(cat "$OUT")" in "$XDG_CACHE_HOME"/prometheus/toolchain/*) ;; *) die "the toolchain is not in the user cache";; esac
[ -z "$(find "$WORK/venv" -name node_modules -print -quit)" ] || die "node_modules landed in the virtual environment"

run 0 prometheus localnet deploy-protocol --json
"$PY" - "$OUT" "$WORK/checkout-build.json" <<'EOF'
import json, sys
deployed = json.load(open(sys.argv[1]))["canisters"]
built = {r["name"]: r["sha256"] for r in json.load(open(sys.argv[2]))}
for name, c in deployed.items():  # the installed wheel's recipe, sources and toolchain give the checkout's bytes
    if built.get(name) != c["sha256"]:
        sys.exit(f"{name}: the installed wheel built {c['sha256']}, the checkout {built.get(name)}")
print("same sha256 as the checkout's build:", ", ".join(f"{n} {c['sha256'][:12]}" for n, c in deployed.items()))
EOF

# a small app: a git repository with src/main.mo, described by prometheus init, built, submitted
APP="$WORK/hello"
mkdir -p "$APP/src"
cat > "$APP/src/main.mo" <<'EOF'
persistent actor {
  var greeted = 0;
  public func greet(name : Text) : async Text { greeted += 1; "Hello, " # name # "!" };
  public query func count() : async Nat { greeted };
};
EOF
printf '.prometheus/\n' > "$APP/.gitignore"
cd "$APP"
git init -q -b main && git add -A && git commit -q -m "hello 0.1.0"
git init -q --bare -b main "$WORK/hello.git"
git remote add origin http://127.0.0.1:9/hello.git       # a loopback repository: allowed on the local network
git remote set-url --push origin "$WORK/hello.git" && git push -q origin main && git fetch -q "$WORK/hello.git" \
  "+refs/heads/main:refs/remotes/origin/main"              # pushed: the commit is on a remote branch
run 0 prometheus init --yes --name hello --namespace io.example.smoke.hello --repo-url http://127.0.0.1:9/hello.git \
  --commit "$(git rev-parse HEAD)" --description "wheel smoke test"
run 0 prometheus build
run 0 prometheus submit --bounty 1000000
run 3 prometheus status                                   # 3: pending (no verifier in this smoke)
grep -q "pending" "$OUT" || die "status does not say pending"
cd "$WORK/elsewhere"
run 0 prometheus localnet stop

SMOKE_S=$((SECONDS - SMOKE_START))
say "wheel smoke passed: build ${BUILD_S} s, install ${INSTALL_S} s, lifecycle ${SMOKE_S} s, total $((SECONDS - START)) s"
