#!/usr/bin/env bash
# Builds the Debian package: target/debian/exum-router_VERSION-1_ARCH.deb with
# the release binary, the systemd unit, a default configuration and directory
# in /etc/exum-router (conffiles), manual pages and bash, zsh and fish
# completions generated from the command line's definitions, and the
# maintainer scripts that make the system user `exum-router` and its state
# under /var/lib/exum-router. Needs dpkg-deb (Debian's dpkg).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p exum-router
bin=target/release/exum-router
version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "exum-router"))')
arch=$(dpkg --print-architecture)
out=target/debian
root=$out/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"

install -D -m 0755 "$bin" "$root/usr/bin/exum-router"
strip --strip-debug "$root/usr/bin/exum-router"
install -D -m 0644 packaging/exum-router.service "$root/lib/systemd/system/exum-router.service"
install -D -m 0644 packaging/router.toml "$root/etc/exum-router/router.toml"
install -D -m 0644 packaging/directory.toml "$root/etc/exum-router/directory.toml"
docs="$root/usr/share/doc/exum-router"
install -D -m 0644 README.md "$docs/README.md"
for doc in docs/*.md; do install -D -m 0644 "$doc" "$docs/$(basename "$doc")"; done
printf 'exum-router\nLicense: Apache-2.0\n' > "$docs/copyright"

# Manual pages and completions, from the binary's own command line.
"$bin" man "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
"$bin" completions bash | install -D -m 0644 /dev/stdin "$root/usr/share/bash-completion/completions/exum-router"
"$bin" completions zsh | install -D -m 0644 /dev/stdin "$root/usr/share/zsh/vendor-completions/_exum-router"
"$bin" completions fish | install -D -m 0644 /dev/stdin "$root/usr/share/fish/vendor_completions.d/exum-router.fish"

# The libraries the binary links, as Debian dependencies.
glibc=$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')
depends="libc6 (>= $glibc), libgcc-s1, procps"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version-1/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" -e "s/@SIZE@/$size/" \
    packaging/debian/control.in > "$root/DEBIAN/control"
printf '/etc/exum-router/router.toml\n/etc/exum-router/directory.toml\n' > "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"

deb="$out/exum-router_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
