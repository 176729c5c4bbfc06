#!/usr/bin/env bash
# Opens a run's report page (RUN_DIR/report/index.html) in a real browser, headless Chromium
# (Debian's `chromium`, installed here if missing), and
#   1. checks the page as the browser parsed it: every image and link it holds points at a
#      file of the run folder (relative links, so the folder can be copied anywhere);
#   2. saves a screenshot of the page, 1200 px wide and SAP_SHOT_HEIGHT px tall (default
#      2400: the top of a long page), for a person to look at.
#
#   scripts/view-report.sh RUN_DIR [SCREENSHOT.png]   (default RUN_DIR/report/screenshot.png)
#
# Draw the report first: `sap report RUN_DIR`.
set -euo pipefail
log() { printf '[view-report] %s\n' "$*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
run_dir=$1
page="$run_dir/report/index.html"
[[ -f "$page" ]] || { log "$page is missing: run \`sap report $run_dir\` first"; exit 1; }
shot=${2:-$run_dir/report/screenshot.png}
page=$(realpath "$page")

if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run)

# 1. The DOM after parsing, then every src and href in it resolved against the page.
dom=$(mktemp)
trap 'rm -f "$dom"' EXIT
chromium "${flags[@]}" --virtual-time-budget=5000 --dump-dom "file://$page" >"$dom" 2>/dev/null
python3 - "$dom" "$(dirname "$page")" <<'PY'
import os, sys
from html.parser import HTMLParser
from urllib.parse import unquote

dom, base = sys.argv[1], sys.argv[2]
class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.imgs, self.tables = [], 0, 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs += 1
            self.refs.append(a.get("src", ""))
        elif tag == "a" and "href" in a:
            self.refs.append(a["href"])
        elif tag == "table":
            self.tables += 1
p = Links()
p.feed(open(dom, encoding="utf-8").read())
if p.imgs == 0 and p.tables == 0:
    sys.exit("the browser's page holds no image and no table")
bad = [r for r in p.refs
       if "://" not in r and not r.startswith("#")
       and not os.path.isfile(os.path.join(base, unquote(r)))]
if bad:
    sys.exit("links to missing files: " + ", ".join(bad))
print(f"[view-report] the page holds {p.imgs} images and {p.tables} tables; "
      f"all {len(p.refs)} links resolve", file=sys.stderr)
PY

# 2. The screenshot.
chromium "${flags[@]}" --window-size=1200,"${SAP_SHOT_HEIGHT:-2400}" --screenshot="$shot" "file://$page" 2>/dev/null
[[ -s "$shot" ]] || { log "chromium wrote no screenshot"; exit 1; }
log "screenshot: $shot"
