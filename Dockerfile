# The kube-pico-cd listener image: the compiled listener, kubectl, and distroless's glibc base.
# No shell, no package manager, runs as 65532:65532, writes nothing outside /tmp.
#
#   docker build -t ghcr.io/kube-pico-cd/kube-pico-cd-listener:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   # each stage runs natively per platform
#
# Releases are built by .github/workflows/release.yml (README "Releases and installing").
#
# Expected size (linux/amd64): about 92 MB compressed, 195 MB on disk — distroless
# base-debian12 (about 20 MB), kubectl v1.35.4 (59 MB, 17.6 MB gzipped), the listener
# executable (110 MiB, 54 MB gzipped; it carries the Bun runtime).

# Build stage, pinned by tag only: no digest could be checked against the registry when this
# was written, and an unchecked digest would be worse than none. The release workflow resolves
# each tagged base with `docker buildx imagetools inspect` and prints the digests in the
# release notes; the image's provenance attestation (mode=max) records them too. Pin them
# here (`FROM oven/bun:1.4.5@sha256:…`) from a release's notes once one exists.
FROM oven/bun:1.4.5 AS build
WORKDIR /src
# Run-time dependencies only, at the versions of package-lock.json (bun reads npm's lockfile);
# no install scripts: the bun and deno devDependencies are not needed here.
COPY package.json package-lock.json ./
RUN bun install --production --frozen-lockfile --ignore-scripts
COPY tsconfig.json listener.ts ./
COPY lib/ lib/
# The same flags as scripts/build.ts (npm run build), for this stage's own platform.
RUN bun build --compile --minify --bytecode --format=esm \
      --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
      --outfile=/out/kube-pico-cd-listener listener.ts \
 && /out/kube-pico-cd-listener --help >/dev/null

# kubectl of the same minor version as the tests' API server; the image keeps it at /bin/kubectl.
# Pinned by tag for the same reason as above; its digest is in the release notes as well.
FROM registry.k8s.io/kubectl:v1.35.4 AS kubectl

# Final stage: glibc, CA certificates and tzdata, nothing else; the nonroot user is 65532.
# The digest is the multi-arch index of base-debian12:nonroot as pinned in several public
# Dockerfiles; it was not checked against the registry from the build machine. A build fails
# if the registry has no such digest, so the first release (or your own build) confirms it.
FROM gcr.io/distroless/base-debian12:nonroot@sha256:7f0c72cd138b442ae0deeb69c08b1acf5525439ba251a49ad93c320a061567e5

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="kube-pico-cd-listener" \
      org.opencontainers.image.description="Applies the Kubernetes manifest bundles that CI publishes to SQS, newest build wins." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/kube-pico-cd/kube-pico-cd" \
      org.opencontainers.image.url="https://github.com/kube-pico-cd/kube-pico-cd" \
      org.opencontainers.image.base.name="gcr.io/distroless/base-debian12:nonroot" \
      org.opencontainers.image.base.digest="sha256:7f0c72cd138b442ae0deeb69c08b1acf5525439ba251a49ad93c320a061567e5"

COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
COPY --from=build /out/kube-pico-cd-listener /usr/local/bin/kube-pico-cd-listener

# kubectl keeps its discovery cache under $HOME: /tmp is the one writable path (an emptyDir
# in deploy/, with readOnlyRootFilesystem).
ENV HOME=/tmp \
    KUBE_PICO_CD_KUBECTL=/usr/local/bin/kubectl
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kube-pico-cd-listener"]
