#!/bin/sh
# ctest go.test: the Go package (bindings/go/kvc) and the Go example (examples/go-controller)
# with Debian's golang-go, standard library only (GOPROXY=off: nothing is fetched). CMake sets
# CGO_CFLAGS and CGO_LDFLAGS (libkvc and what it links), GOCACHE and GOPATH (in the build dir).
#   run-go-test.sh GO SOURCE_DIR WORK_DIR
# gofmt must have nothing to say; go test and go vet must pass; the example builds and, run as a
# one-member cluster for 2 s, starts its controller job.
set -eu
go=$1 src=$2 work=$3
mkdir -p "$work"
unformatted=$("$(dirname "$go")/gofmt" -l "$src/bindings/go" "$src/examples/go-controller")
if [ -n "$unformatted" ]; then
  echo "gofmt -l: not formatted: $unformatted" >&2
  exit 1
fi
# go test first: vet and the example's build then find the packages (and the standard
# library's cgo packages, rebuilt for these CGO_* flags) in the Go cache. In the other order a
# cold cache costs ~65 s instead of ~45 s.
cd "$src/bindings/go/kvc"
"$go" test -count=1 ./...
"$go" vet ./...
cd "$src/examples/go-controller"
"$go" build -o "$work/go-controller" .
"$go" vet .
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
rm -rf "$work/example-data"
"$work/go-controller" --name c1 --data-dir "$work/example-data" \
  --listen-peer "127.0.0.1:$port" --initial-cluster "c1=127.0.0.1:$port" --run-for 2s \
  >"$work/example.out" 2>"$work/example.err"
if ! grep -q "^c1: starting the controller job (leader c1)" "$work/example.out"; then
  echo "go-controller did not start its job:" >&2
  cat "$work/example.out" "$work/example.err" >&2
  exit 1
fi
echo "go.test: passed"
