#!/usr/bin/env bash
# Runs experiments/quickstart.toml with the `sap` of a base revision and with this tree's,
# then compares every table they write byte for byte, leaving out the columns that measure
# speed (names ending in _per_s). A change that should not alter results (a reshaping of
# the code) must pass it; a change that fixes a fault says which tables it changes.
#
#   scripts/compare-tables.sh              # base: HEAD (compares uncommitted changes)
#   scripts/compare-tables.sh 48d9a84      # base: any revision
#   SKIP_COLUMNS=step_size,random_start scripts/compare-tables.sh REV
#                                          # also leave out columns a change adds on purpose
#
# Needs what `make quickstart` installs (.venv, cargo). Builds the base in a temporary git
# worktree sharing target/ (only the crate itself is compiled again), then this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-HEAD}
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
ROOT=$PWD
WORK=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WORK/base-src" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
log() { printf '[compare] %s\n' "$*" >&2; }

log "building the base ($(git rev-parse --short "$BASE"))"
git worktree add --detach --quiet "$WORK/base-src" "$BASE"
(cd "$WORK/base-src" && CARGO_TARGET_DIR="$ROOT/target" cargo build --release --quiet)
cp target/release/sap "$WORK/sap-base"
log "building this tree"
cargo build --release --quiet
cp target/release/sap "$WORK/sap-new"

for side in base new; do
    dir="$WORK/$side"
    mkdir -p "$dir/experiments"
    cp experiments/quickstart.toml "$dir/experiments/"
    # The quickstart evaluates the shipped agent, named relative to the manifest.
    ln -s "$ROOT/models" "$dir/models"
    log "running the quickstart with the $side sap"
    (cd "$dir" && "$WORK/sap-$side" synth-cifar data/cifar-synth >/dev/null &&
        "$WORK/sap-$side" run experiments/quickstart.toml --jobs 2 --run-id cmp >"$dir/stdout.txt" 2>"$dir/stderr.txt") ||
        { log "the $side run failed; see below"; tail -20 "$dir/stderr.txt"; exit 1; }
done

python3 - "$WORK/base/results/quickstart/cmp" "$WORK/new/results/quickstart/cmp" "${SKIP_COLUMNS:-}" <<'EOF'
import csv, io, pathlib, sys

base, new = map(pathlib.Path, sys.argv[1:3])
skip = {c for c in sys.argv[3].split(",") if c}

def tables(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.csv"))

def without_rates(path):
    rows = list(csv.reader(io.StringIO(path.read_text())))
    if not rows:
        return rows
    keep = [i for i, name in enumerate(rows[0]) if not name.endswith("_per_s") and name not in skip]
    return [[r[i] for i in keep if i < len(r)] for r in rows]

names_base, names_new = tables(base), tables(new)
differ = []
if names_base != names_new:
    differ.append(f"the runs write different tables: {set(names_base) ^ set(names_new)}")
for name in sorted(set(names_base) & set(names_new)):
    a, b = without_rates(base / name), without_rates(new / name)
    if a != b:
        first = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
        differ.append(f"{name}: first difference at line {first + 1}:\n  base: {a[first] if first < len(a) else '(end)'}\n  new:  {b[first] if first < len(b) else '(end)'}")
left_out = "rate columns" + (f" and {', '.join(sorted(skip))}" if skip else "")
print(f"{len(set(names_base) & set(names_new))} tables compared ({left_out} left out)")
for d in differ:
    print("DIFFERS:", d)
sys.exit(1 if differ else 0)
EOF
log "every table is identical"
