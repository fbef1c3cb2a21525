# The gateway's own image: build with the Swift toolchain, run on a slim Debian with only what the binary needs.
#   docker build -t buildgate .
#   docker run -p 8080:8080 -v buildgate-data:/var/lib/buildgate buildgate \
#     serve --listen 0.0.0.0:8080 --builder podman=tcp://podman-builder:8888
# BuildKit's own client, for buildkit= builders: the version the gateway is tested against (fixtures and notes).
FROM moby/buildkit:v0.24.0 AS buildkit

FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Resolve dependencies in their own layer, so source changes do not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product buildgate --static-swift-stdlib \
    && install -D "$(swift build -c release --show-bin-path)/buildgate" /out/buildgate \
    && cp -R "$(swift build -c release --show-bin-path)/buildgate_BuildGateDashboard.resources" /out/

FROM debian:bookworm-slim
# git fetches webhook sources; tar unpacks contexts for buildctl.
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-0 zlib1g ca-certificates tzdata git tar \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/buildgate --create-home buildgate
COPY --from=build /out/buildgate /usr/local/bin/buildgate
# The dashboard's templates and assets, found beside the binary.
COPY --from=build /out/buildgate_BuildGateDashboard.resources /usr/local/bin/buildgate_BuildGateDashboard.resources
COPY --from=buildkit /usr/bin/buildctl /usr/local/bin/buildctl
COPY migrations /usr/share/buildgate/migrations
USER 10001:10001
ENV BUILDGATE_DATA_DIR=/var/lib/buildgate \
    BUILDGATE_LISTEN=0.0.0.0:8080 \
    BUILDGATE_MIGRATIONS=/usr/share/buildgate/migrations
VOLUME ["/var/lib/buildgate"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/buildgate"]
CMD ["serve"]
