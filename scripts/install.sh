#!/usr/bin/env bash
# Installs swiftnbd: the binary, man pages and shell completions generated from its own help
# text (so they can never disagree with `--help`), and the systemd units with ExecStart
# pointing at the installed binary.
#
#   scripts/install.sh [PREFIX]               PREFIX defaults to /usr/local
#   scripts/install.sh --binary PATH [PREFIX] install an already built swiftnbd (no build)
#
# Options:
#   --binary PATH       install this swiftnbd instead of building one (CI reuses its debug build)
#   --manual-tool PATH  swift-argument-parser's generate-manual, instead of building it
# Environment:
#   DESTDIR                       staging root for packagers: files go to $DESTDIR$PREFIX, while
#                                 the units still name $PREFIX/bin/swiftnbd
#   SWIFTNBD_BUILD_CONFIGURATION  release (default) or debug, for what this script builds
#   SWIFTNBD_SCRATCH_PATH         SwiftPM scratch path (default: the package's .build)
#   SOURCE_DATE_EPOCH             date shown in the man pages (default: the last commit's)
#
# Idempotent: a file whose contents and mode are already right is not touched, so a second
# run changes nothing. Nothing outside $DESTDIR$PREFIX is written; creating the user and
# directories is systemd-sysusers' and systemd-tmpfiles' job (see docs/systemd.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
binary="" manual_tool="" prefix=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --manual-tool) manual_tool=${2:?--manual-tool needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [[ -z $prefix ]] || { echo "install.sh: one PREFIX only" >&2; exit 2; }; prefix=$1; shift ;;
    esac
done
prefix=${prefix:-/usr/local}
prefix=${prefix%/}
[[ $prefix == /* ]] || { echo "install.sh: PREFIX must be absolute: $prefix" >&2; exit 2; }
destdir=${DESTDIR:-}
config=${SWIFTNBD_BUILD_CONFIGURATION:-release}
[[ $config == release || $config == debug ]] || { echo "install.sh: SWIFTNBD_BUILD_CONFIGURATION must be release or debug" >&2; exit 2; }
swift_build=(swift build --package-path "$root" -c "$config" --scratch-path "${SWIFTNBD_SCRATCH_PATH:-$root/.build}")

if [[ -z $binary ]]; then
    echo "Building swiftnbd ($config)…" >&2
    "${swift_build[@]}" --product swiftnbd >&2
    binary="$("${swift_build[@]}" --show-bin-path)/swiftnbd"
fi
# The generator the GenerateManual plugin runs, called directly: the plugin insists on building
# the whole package itself, while this script must also document a binary built elsewhere.
if [[ -z $manual_tool ]]; then
    "${swift_build[@]}" --product generate-manual >&2
    manual_tool="$("${swift_build[@]}" --show-bin-path)/generate-manual"
fi
[[ -x $binary ]] || { echo "install.sh: not an executable: $binary" >&2; exit 1; }
[[ -x $manual_tool ]] || { echo "install.sh: not an executable: $manual_tool" >&2; exit 1; }

# A fixed date keeps regenerated pages byte-identical between runs (no spurious reinstall).
if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
    date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
else
    date=$(git -C "$root" log -1 --format=%cd --date=format:%Y-%m-%d 2>/dev/null || date -u +%Y-%m-%d)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/man" "$work/units"
"$manual_tool" "$binary" --multi-page --date "$date" --output-directory "$work/man" >&2
# The generator copies blank lines of a command's discussion verbatim; in mdoc a paragraph
# break is .Pp (man warns "Empty input line" otherwise).
sed -i 's/^$/.Pp/' "$work"/man/*.1
for shell in bash zsh fish; do
    "$binary" --generate-completion-script "$shell" > "$work/completion.$shell"
done
# Units name /usr/bin/swiftnbd; point them at this PREFIX (without DESTDIR: the staging root
# is not where the binary will run from).
escaped=$(printf '%s' "$prefix/bin/swiftnbd" | sed 's/[&|\\]/\\&/g')
for unit in "$root"/contrib/systemd/*.socket "$root"/contrib/systemd/*.service; do
    sed "s|^ExecStart=/usr/bin/swiftnbd |ExecStart=$escaped |" "$unit" > "$work/units/$(basename "$unit")"
done

changed=0 unchanged=0
# put SOURCE DEST MODE: install unless DEST already has these bytes and this mode.
put() {
    local source=$1 dest=$destdir$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$source" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
        unchanged=$((unchanged + 1))
        return
    fi
    install -D -m "$mode" "$source" "$dest"
    echo "installed $dest"
    changed=$((changed + 1))
}

put "$binary" "$prefix/bin/swiftnbd" 0755
for page in "$work"/man/*.1; do
    put "$page" "$prefix/share/man/man1/$(basename "$page")" 0644
done
put "$work/completion.bash" "$prefix/share/bash-completion/completions/swiftnbd" 0644
put "$work/completion.zsh" "$prefix/share/zsh/site-functions/_swiftnbd" 0644
put "$work/completion.fish" "$prefix/share/fish/vendor_completions.d/swiftnbd.fish" 0644
for unit in "$work"/units/*; do
    put "$unit" "$prefix/lib/systemd/system/$(basename "$unit")" 0644
done
put "$root/contrib/systemd/swiftnbd.sysusers" "$prefix/lib/sysusers.d/swiftnbd.conf" 0644
put "$root/contrib/systemd/swiftnbd.tmpfiles" "$prefix/lib/tmpfiles.d/swiftnbd.conf" 0644
put "$root/contrib/systemd/swiftnbd.conf" "$prefix/share/doc/swiftnbd/examples/swiftnbd.conf" 0644

echo "$changed files installed, $unchanged already up to date in $destdir$prefix"
