# shellcheck shell=bash
# Sourced by the scripts that build or run the image: buildah and podman as this project runs
# them (tests/container/podman.rs sets the same two variables).
#
# CONTAINERS_CONF: runc, and the caller's open-file limit (scripts/containers.conf).
# CONTAINERS_STORAGE_CONF (root only): the vfs driver, the same store for both
# (scripts/storage.conf).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
# Rootless users keep their own defaults, which buildah and podman share already.
if [ "$(id -u)" = 0 ]; then
  export CONTAINERS_STORAGE_CONF="${CONTAINERS_STORAGE_CONF:-$here/storage.conf}"
fi

# buildah, podman, runc and slirp4netns (the tests' network: the host's loopback is reachable
# from the container, and nothing else), and musl-gcc for the musl build; installed with
# apt-get when missing, where that is possible.
install_container_tools() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v slirp4netns >/dev/null || missing+=(slirp4netns)
  command -v musl-gcc >/dev/null || missing+=(musl-tools)
  [ "${#missing[@]}" = 0 ] && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  if ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]}; install them with your package manager" >&2
    return 1
  fi
  echo "installing ${missing[*]} (apt-get)" >&2
  if ! "${sudo[@]}" apt-get update -qq ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" containernetworking-plugins >/dev/null; then
    echo "error: could not install ${missing[*]} with apt-get" >&2
    return 1
  fi
}
