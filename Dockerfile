# ferry in a container: built with the Rust toolchain, run from a small Debian image as an unprivileged user,
# with its data (SQLite file, attachments, secret key) in a volume. See README "Docker".
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Only the server binary (the workspace's other crate is its library dependency).
RUN cargo build --release --locked --bin ferry \
 && strip target/release/ferry

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/ferry --create-home ferry
COPY --from=build /src/target/release/ferry /usr/local/bin/ferry
USER ferry
WORKDIR /var/lib/ferry
ENV FERRY_DATA_DIR=/var/lib/ferry \
    FERRY_BIND=0.0.0.0:3000
VOLUME ["/var/lib/ferry"]
EXPOSE 3000
ENTRYPOINT ["tini", "--", "ferry"]
CMD ["serve"]
