#!/usr/bin/env bash
# Build a Go builder image with no base image from the host's Go, since CI can pull no image.
# Usage: .ci/images/gobuilder.sh [TAG]   (default local/golang:1.26)
#
# It holds /usr/local/go, a static busybox as /bin/sh and the other applets, the CA bundle
# (the module proxy is reached over HTTPS), and GOPROXY as the host has it; it serves as
# GO_IMAGE for the project's Dockerfile, whose RUN lines need a shell.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=.ci/lib.sh
. "$here/lib.sh"
tag=${1:-local/golang:1.26}
goroot=/usr/local/go
certs=/etc/ssl/certs/ca-certificates.crt

[ -x "$goroot/bin/go" ] || { echo "gobuilder.sh: no Go at $goroot" >&2; exit 1; }
[ -f "$certs" ] || { echo "gobuilder.sh: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }
[ -x /usr/bin/busybox ] || { echo "gobuilder.sh: /usr/bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
if ldd /usr/bin/busybox >/dev/null 2>&1; then
  echo "gobuilder.sh: /usr/bin/busybox is not static (apt-get install busybox-static)" >&2; exit 1
fi

goproxy=$("$goroot/bin/go" env GOPROXY)
key=$(inputs_key "$(cat "$0" "$here/lib.sh")" "$("$goroot/bin/go" version)" "$goproxy" \
  "$(sha256sum /usr/bin/busybox "$certs" "$goroot/go.env")")
if image_fresh "$tag" "$key"; then
  echo "$tag is up to date"
  exit 0
fi

ctx=$(mktemp -d /tmp/tokensvc-gobuilder-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local" "$root/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/root" "$root/go"
chmod 1777 "$root/tmp"

# Hard links when /tmp and Go share a file system: the build context is read from them either way.
cp -al "$goroot" "$root/usr/local/go" 2>/dev/null || { rm -rf "$root/usr/local/go"; cp -a "$goroot" "$root/usr/local/go"; }
cp -L "$certs" "$root/etc/ssl/certs/ca-certificates.crt"

# "busybox --install" needs a shell to run in; make its links here instead.
cp /usr/bin/busybox "$root/bin/busybox"
/usr/bin/busybox --list | while read -r applet; do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
# Tools that look for /usr/bin/env (shebangs) find it.
mkdir -p "$root/usr/bin" && ln -s /bin/busybox "$root/usr/bin/env"
printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"

cat >"$ctx/Dockerfile" <<EOF2
FROM scratch
COPY rootfs/ /
ENV PATH=/go/bin:/usr/local/go/bin:/bin \\
    HOME=/root \\
    GOPATH=/go \\
    GOPROXY=$goproxy
WORKDIR /go
LABEL tokensvc.ci.inputs=$key
CMD ["/bin/sh"]
EOF2
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" 2> >(grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' -e '^$' >&2)
echo "built $tag"
