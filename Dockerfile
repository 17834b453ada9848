# Build:  docker build -t tokensvc .
# Offline (CI): docker build --build-arg GO_IMAGE=local/golang:1.26 --build-arg RUNTIME_IMAGE=scratch .
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Dependencies first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tokensvc ./cmd/tokensvc

FROM ${RUNTIME_IMAGE}
# CA certificates for rediss:// (scratch has none; distroless has its own at the same path).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tokensvc /tokensvc
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/tokensvc", "healthcheck"]
ENTRYPOINT ["/tokensvc"]
