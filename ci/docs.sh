#!/usr/bin/env bash
# ci/docs.sh - build the documentation site (mkdocs.yml over docs/, API reference from the docstrings) in
# strict mode: a broken link, a missing page or an unresolved API reference fails the build.
# Called from .ci/run; by hand: ci/docs.sh [SITE_DIR]   (default: site/), ~1 min with the install.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SITE=${1:-site}
VENV=${DOCS_VENV:-$(mktemp -d -t poolparty-docs.XXXXXX)/venv}
T0=$(date +%s)
log() { echo "[docs +$(( $(date +%s) - T0 ))s] $*"; }
trap 'rc=$?; echo "[docs] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

python3 -m venv "$VENV"
"$VENV"/bin/pip install -q ".[docs]"
log "mkdocs build --strict -> $SITE"
NO_MKDOCS_2_WARNING=1 "$VENV"/bin/mkdocs build --strict --site-dir "$SITE"
[ -s "$SITE/api/index.html" ] && grep -q "PoolPartyTaskRunner" "$SITE/api/index.html" \
  || { echo "[docs] FAIL: the API reference page lacks PoolPartyTaskRunner" >&2; exit 1; }
log "site built: $(find "$SITE" -name '*.html' | wc -l) pages"
