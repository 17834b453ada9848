#!/usr/bin/env bash
# Build a Redis image with no base image from Debian's redis-server, since CI can pull no image.
# Usage: .ci/images/redis.sh [TAG]   (default local/redis:7)
#
# It behaves like the official redis image, so tests written for redis:7-alpine work with it:
# ENTRYPOINT docker-entrypoint.sh, CMD redis-server; a first argument that is an option or a
# .conf file runs redis-server with it (testcontainers' WithConfigFile, WithLogLevel, TLS);
# redis-server, redis-sentinel and redis-cli are on PATH (/usr/bin and /usr/local/bin).
# Debian's binary keeps protected mode on (the official image compiles it off), so the entrypoint
# adds "--bind 0.0.0.0 --protected-mode no" to redis-server and redis-sentinel; options given
# after them win, a setting in a config file given as the first argument loses to them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=.ci/lib.sh
. "$here/lib.sh"
tag=${1:-local/redis:7}

for bin in /usr/bin/redis-server /usr/bin/redis-cli /usr/bin/busybox; do
  [ -x "$bin" ] || { echo "redis.sh: $bin is missing (apt-get install redis-server redis-tools busybox-static)" >&2; exit 1; }
done
if ldd /usr/bin/busybox >/dev/null 2>&1; then
  echo "redis.sh: /usr/bin/busybox is not static (apt-get install busybox-static)" >&2; exit 1
fi

key=$(inputs_key "$(cat "$0" "$here/lib.sh")" "$(dpkg-query -W -f '${Version}' redis-server redis-tools busybox-static 2>/dev/null || true)" \
  "$(sha256sum /usr/bin/redis-server /usr/bin/redis-cli /usr/bin/busybox)")
if image_fresh "$tag" "$key"; then
  echo "$tag is up to date"
  exit 0
fi

ctx=$(mktemp -d /tmp/tokensvc-redis-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/usr/local/bin" "$root/bin" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"

# The binaries and every library they load, at the same paths.
cp -L /usr/bin/redis-server "$root/usr/bin/redis-server"
cp -L /usr/bin/redis-cli "$root/usr/bin/redis-cli"
for bin in /usr/bin/redis-server /usr/bin/redis-cli; do
  # Every absolute path ldd prints: the libraries and the loader itself.
  ldd "$bin" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
    cp --parents -L "$lib" "$root/"
  done
done
# Sentinel is the same binary: it picks its mode from the name it is run under.
ln -s redis-server "$root/usr/bin/redis-sentinel"
for name in redis-server redis-sentinel redis-cli; do
  ln -s "/usr/bin/$name" "$root/usr/local/bin/$name"
done

# A shell for the entrypoint (and for debugging with docker exec).
cp /usr/bin/busybox "$root/bin/busybox"
for name in sh ls cat echo sleep; do ln -s busybox "$root/bin/$name"; done

cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
# As in the official image: an option or a .conf file as first argument means redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
case "$1" in
redis-server | redis-sentinel | */redis-server | */redis-sentinel)
  cmd=$1
  shift
  # A config file must stay the first argument; our defaults go right after it.
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    conf=$1
    shift
    set -- "$conf" --bind 0.0.0.0 --protected-mode no "$@"
  else
    set -- --bind 0.0.0.0 --protected-mode no "$@"
  fi
  exec "$cmd" "$@"
  ;;
esac
exec "$@"
SH
chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"

cat >"$ctx/Dockerfile" <<EOF2
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /data
EXPOSE 6379
LABEL tokensvc.ci.inputs=$key
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
EOF2
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" 2> >(grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' -e '^$' >&2)
echo "built $tag"
