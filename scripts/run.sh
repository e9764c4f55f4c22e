#!/usr/bin/env bash
# Install sidechat, index the example blog and serve the demo at http://127.0.0.1:8000/.
source "$(dirname "$0")/_venv.sh" ""
mkdir -p .sidechat
if [ -d examples/blog ] && .venv/bin/sidechat ingest --help >/dev/null 2>&1; then
  .venv/bin/sidechat ingest examples/blog --index .sidechat/blog.db
  exec .venv/bin/sidechat serve --index .sidechat/blog.db "$@"
fi
exec .venv/bin/sidechat serve "$@"
