#!/bin/sh
# Add Slider Studio to this user's application menu and PATH (no root needed).
#   ./install.sh              install: menu entry, icon, ~/.local/bin/sliderstudio
#   ./install.sh --uninstall  remove them again (the unpacked folder itself is left alone)
# The app runs from this folder; move the folder, then run install.sh again.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
bin=$HOME/.local/bin
apps=$data/applications
icons=$data/icons/hicolor

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$bin/sliderstudio" "$apps/sliderstudio.desktop" "$icons/scalable/apps/sliderstudio.svg"
  for n in 16 24 32 48 64 128 256 512; do rm -f "$icons/${n}x${n}/apps/sliderstudio.png"; done
  echo "Slider Studio removed from the menu (the folder $here is still there)."
  exit 0
fi

mkdir -p "$bin" "$apps" "$icons/scalable/apps"
ln -sf "$here/sliderstudio" "$bin/sliderstudio"
cp "$here/icons/sliderstudio.svg" "$icons/scalable/apps/sliderstudio.svg"
for n in 16 24 32 48 64 128 256 512; do
  mkdir -p "$icons/${n}x${n}/apps"
  cp "$here/icons/sliderstudio-$n.png" "$icons/${n}x${n}/apps/sliderstudio.png"
done
# The menu entry names the program by its full path: ~/.local/bin may not be on PATH.
sed -e "s|^Exec=sliderstudio|Exec=\"$here/sliderstudio\"|" -e "s|^Icon=sliderstudio|Icon=$here/icons/sliderstudio-256.png|" \
  "$here/sliderstudio.desktop" > "$apps/sliderstudio.desktop"
chmod 644 "$apps/sliderstudio.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" 2>/dev/null || true
echo "Slider Studio is in your application menu; on the command line: $bin/sliderstudio"
