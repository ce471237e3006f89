# syntax=docker/dockerfile:1
# FKS container image: every FKS program in one image; Kubernetes picks the program with the
# container's args (k8s/base/*.yaml: args: ["fks-gateway"], ["fks", "migrate"], ...).
#
# Two stages on Debian 12. The build stage has the compiler and the -dev packages meson needs
# (Criterion too: the build configures the tests folder). The runtime stage has only the
# shared libraries the programs link, CA certificates for HTTPS to exchanges and market data,
# the SQL migrations, the AI worker's shipped model, and an unprivileged user (uid 10001). tests/k8s/check_dockerfile.py keeps
# both package lists and FKS_PROGRAMS equal to what meson builds and the binaries link.
#
#   docker build -t fks:0.1.0 .
#
# No image is built by the test suite (no container engine there); see docs/KUBERNETES.md.
ARG DEBIAN_IMAGE=debian:12-slim

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config gcc libc6-dev \
      libzmq3-dev libczmq-dev libpq-dev libhiredis-dev libmsgpack-dev libcivetweb-dev \
      libssl-dev libjansson-dev libcurl4-openssl-dev libcriterion-dev \
 && rm -rf /var/lib/apt/lists/*
ARG FKS_PROGRAMS="fks-bus fks-gateway fks-signal fks-data fks-execution fks-ai fks fks-train"
WORKDIR /src
COPY . .
RUN meson setup /build /src \
 && meson compile -C /build ${FKS_PROGRAMS} \
 && mkdir -p /out/bin \
 && for p in ${FKS_PROGRAMS}; do \
      f=$(find /build -type f -name "$p" -perm -u+x | head -n 1); \
      [ -n "$f" ] || { echo "no binary $p" >&2; exit 1; }; \
      install -m 0755 -s "$f" "/out/bin/$p"; \
    done

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcivetweb1 libcurl4 libhiredis0.14 libjansson4 libmsgpackc2 libpq5 libssl3 libzmq5 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fks \
 && useradd --system --uid 10001 --gid fks --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin fks
COPY --from=build /out/bin/ /usr/local/bin/
COPY schemas/migrations/ /usr/share/fks/migrations/
COPY tools/data/model.txt /usr/share/fks/model.txt
ENV FKS_MIGRATIONS_DIR=/usr/share/fks/migrations \
    FKS_AI_MODEL=/usr/share/fks/model.txt \
    FKS_HTTP_BIND=0.0.0.0
USER 10001:10001
EXPOSE 8001 8002 8003 8004 8006 8007 5570 5571
CMD ["fks", "help"]
