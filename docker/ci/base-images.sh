#!/usr/bin/env bash
# CI only. Builds, locally, the two base images that docker/Dockerfile names,
# tagged with exactly those names, because no container registry is reachable
# on the CI machine (the engine starts with no images):
#
#   debian:bookworm-slim  <- `debootstrap --variant=minbase bookworm`, `docker import`ed
#   rust:1.95-bookworm    <- that rootfs + build-essential/pkg-config + this
#                            machine's Rust 1.95 toolchain (rustc, cargo, std)
#
# Idempotent: an image whose tag already exists is left alone (FORCE=1 rebuilds).
# The debootstrap output is cached as tarballs in $MIRROR_CI_CACHE
# (default /var/cache/mirror-ci, outside the repo clone), so only the very
# first run on a machine talks to Debian's mirror.
#
# Env: MIRROR_CI_CACHE, DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      RUST_VERSION (default 1.95), FORCE=1.
set -euo pipefail

CACHE_DIR=${MIRROR_CI_CACHE:-/var/cache/mirror-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUST_VERSION=${RUST_VERSION:-1.95}
SUITE=bookworm
SLIM_TAG=debian:${SUITE}-slim
RUST_TAG=rust:${RUST_VERSION}-${SUITE}
MINBASE_TAR=$CACHE_DIR/${SUITE}-minbase.tar
BUILD_TAR=$CACHE_DIR/${SUITE}-build.tar

log() { printf '[base-images] %s\n' "$*" >&2; }

have_image() { [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }

if have_image "$SLIM_TAG" && have_image "$RUST_TAG"; then
    log "$SLIM_TAG and $RUST_TAG already exist; nothing to do"
    exit 0
fi

mkdir -p "$CACHE_DIR"
WORK=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
cleanup() {
    # Unmount anything a chroot step left mounted before deleting the tree.
    for m in "$WORK"/build/proc "$WORK"/build/dev/pts "$WORK"/build/dev; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null 2>&1 || { log "missing '$1' (run docker/ci/install.sh)"; exit 1; }
}

# --- 1. minbase rootfs tarball (cached) -------------------------------------
if [[ ! -s "$MINBASE_TAR" ]]; then
    need debootstrap
    log "debootstrap --variant=minbase $SUITE from $MIRROR (first run only)"
    debootstrap --variant=minbase "$SUITE" "$WORK/minbase" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -50 "$WORK/debootstrap.log" >&2; exit 1; }
    # Slim like the official image: no apt lists, docs or man pages.
    rm -rf "$WORK"/minbase/var/lib/apt/lists/* "$WORK"/minbase/var/cache/apt/*.bin \
           "$WORK"/minbase/usr/share/doc/* "$WORK"/minbase/usr/share/man/* \
           "$WORK"/minbase/usr/share/info/*
    tar --numeric-owner -C "$WORK/minbase" -cf "$MINBASE_TAR.tmp" .
    mv "$MINBASE_TAR.tmp" "$MINBASE_TAR"
    rm -rf "$WORK/minbase"
fi

# --- 2. debian:bookworm-slim -------------------------------------------------
if ! have_image "$SLIM_TAG"; then
    log "docker import -> $SLIM_TAG"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$MINBASE_TAR" "$SLIM_TAG" >/dev/null
fi

have_image "$RUST_TAG" && { log "$RUST_TAG already exists"; exit 0; }

# --- 3. build rootfs = minbase + compilers (cached) --------------------------
if [[ ! -s "$BUILD_TAR" ]]; then
    need chroot
    log "adding build-essential, pkg-config, ca-certificates (first run only)"
    mkdir -p "$WORK/build"
    tar --numeric-owner -C "$WORK/build" -xf "$MINBASE_TAR"
    # The minbase image has no sources.list entries we can rely on: write one.
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
        >"$WORK/build/etc/apt/sources.list"
    cp /etc/resolv.conf "$WORK/build/etc/resolv.conf"
    mount -t proc proc "$WORK/build/proc"
    chroot "$WORK/build" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
                   build-essential pkg-config ca-certificates libssl-dev >/dev/null \
               && apt-get clean && rm -rf /var/lib/apt/lists/*' \
        || { log "apt-get inside the chroot failed"; exit 1; }
    umount -l "$WORK/build/proc"
    : >"$WORK/build/etc/resolv.conf"
    tar --numeric-owner -C "$WORK/build" -cf "$BUILD_TAR.tmp" .
    mv "$BUILD_TAR.tmp" "$BUILD_TAR"
    rm -rf "$WORK/build"
fi

# --- 4. rust:<ver>-bookworm = build rootfs + this machine's toolchain --------
find_sysroot() {
    local cand rc
    for cand in "$(rustc "+$RUST_VERSION" --print sysroot 2>/dev/null || true)" \
                "$(rustc --print sysroot 2>/dev/null || true)" \
                "$HOME"/.rustup/toolchains/"$RUST_VERSION"*-x86_64-unknown-linux-gnu \
                "$HOME"/.rustup/toolchains/stable-x86_64-unknown-linux-gnu; do
        [[ -n "$cand" && -x "$cand/bin/rustc" && -x "$cand/bin/cargo" ]] || continue
        rc=$("$cand/bin/rustc" --version)
        [[ "$rc" == "rustc $RUST_VERSION."* ]] && { readlink -f "$cand"; return 0; }
    done
    return 1
}
SYSROOT=$(find_sysroot) || { log "no Rust $RUST_VERSION toolchain with cargo found on this machine"; exit 1; }
log "toolchain: $SYSROOT ($("$SYSROOT/bin/rustc" --version))"

mkdir -p "$WORK/rust"
tar --numeric-owner -C "$WORK/rust" -xf "$BUILD_TAR"
TC=$WORK/rust/usr/local/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu
mkdir -p "$TC" "$WORK/rust/usr/local/cargo/bin"
# Everything but the HTML docs and rust-src (not needed to build).
tar -C "$SYSROOT" --exclude=./share/doc --exclude=./lib/rustlib/src -cf - . | tar -C "$TC" -xf -
for b in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do
    [[ -e "$TC/bin/$b" ]] && ln -sf "../../rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu/bin/$b" \
        "$WORK/rust/usr/local/cargo/bin/$b"
done
chmod -R a+rX "$WORK/rust/usr/local/rustup" "$WORK/rust/usr/local/cargo"
# The builder image fetches crates from crates.io during `docker build`. Give it
# this machine's CA bundle, so that it trusts exactly what the host's cargo
# trusts (a TLS-inspecting proxy's CA included). Only this CI-local builder
# image gets it (the runtime stages copy the builder's bundle, so CI's locally
# built images trust the same; nothing built here is published).
HOST_CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
if [[ -s "$HOST_CA" ]]; then
    cp "$HOST_CA" "$WORK/rust/etc/ssl/certs/ca-certificates.crt"
fi
chmod a+rwx "$WORK/rust/usr/local/cargo"

log "docker import -> $RUST_TAG"
tar --numeric-owner -C "$WORK/rust" -cf - . | docker import \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV RUST_VERSION=$RUST_VERSION" \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    - "$RUST_TAG" >/dev/null
docker run --rm "$RUST_TAG" sh -c 'cargo --version && rustc --version && cc --version | head -1' >&2
log "done"
