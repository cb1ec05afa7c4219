# The operator's image for anyone's CI: build with the Rust toolchain, run on distroless `cc`
# (glibc, CA certificates, no shell) as its non-root user. Without a daemon, scripts/build-image
# lays the same binary into an OCI image with umoci instead.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/portal-operator /portal-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="portal-operator" \
      org.opencontainers.image.description="Admin access to multi-tenant telephony admin portals as code" \
      org.opencontainers.image.source="https://github.com/portal-operator/portal-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /portal-operator /usr/local/bin/portal-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portal-operator"]
CMD ["run"]
