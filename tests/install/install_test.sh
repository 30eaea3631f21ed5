#!/usr/bin/env bash
# libkvc as an installed product (docs/library.md): the library and development components
# install into a throw-away prefix; the shared library has its SONAME and exports only the
# public interface; the examples build out of tree against that prefix with CMake
# (find_package(kvc), shared and static) and with pkg-config (C and C++, shared and static);
# and the programs so built run against a real member.
#   install_test.sh SOURCE_DIR BUILD_DIR KVC_NODE KVC_CTL
set -euo pipefail
src=$1 build=$2 node=$3 ctl=$4
tmp=$(mktemp -d /tmp/kvc-install-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "install_test: $*" >&2; exit 1; }

# 1. Install the two components a program needs (not the binaries: the test uses the build's).
prefix=$tmp/prefix
for c in library development python go; do
  cmake --install "$build" --prefix "$prefix" --component "$c" >/dev/null
done
libdir=$(dirname "$(find "$prefix" -name 'libkvc.so.*.*.*' | head -1)")
[ -n "$libdir" ] || fail "no libkvc.so.X.Y.Z installed"
version=$(sed -n 's/^Version: //p' "$libdir/pkgconfig/kvc.pc")
[ -f "$libdir/libkvc.so.$version" ] || fail "libkvc.so.$version missing (kvc.pc says $version)"
[ -f "$libdir/libkvc.a" ] || fail "libkvc.a missing"
[ -f "$libdir/cmake/kvc/kvcConfig.cmake" ] || fail "kvcConfig.cmake missing"
[ -f "$prefix/include/kvc/kvc.h" ] || fail "kvc/kvc.h missing"
soname=$(readelf -d "$libdir/libkvc.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libkvc.so.${version%.*}" ] || fail "SONAME is '$soname', want libkvc.so.${version%.*}"

# 2. Exports: every function kvc.h declares, and nothing of the internals or what is linked in.
exports=$(nm -D --defined-only "$libdir/libkvc.so" | awk '{print $3}' | c++filt)
for f in $(grep -oE '\bkvc_[a-z_]+\(' "$prefix/include/kvc/kvc.h" | tr -d '(' | sort -u); do
  grep -qE "^$f(@|$)" <<<"$exports" || fail "libkvc.so does not export $f (declared in kvc.h)"
done
leaked=$(grep -E '^((typeinfo( name)?|vtable) for )?(kvc::(raft|storage|http|net::Connection)::|kvc::server::Engine::Impl|kvc::client::Client::Impl|spdlog::|fmt::|msgpack::|llhttp|mdb_|uv_)' <<<"$exports" | head -5 || true)
[ -z "$leaked" ] || fail "libkvc.so exports internals: $leaked"

# 3. The headers are self-contained: each public header compiles on its own.
for h in $(cd "$prefix/include" && find kvc -name '*.h' | sort); do
  case "$h" in
    kvc/kvc.h) printf '#include <%s>\nint main(void){return 0;}\n' "$h" > "$tmp/h.c"
               cc -std=c11 -Wall -Werror -I"$prefix/include" -fsyntax-only "$tmp/h.c" ||
                 fail "$h does not compile alone (C11)" ;;
    *) printf '#include <%s>\nint main(){return 0;}\n' "$h" > "$tmp/h.cc"
       c++ -std=c++20 -DMSGPACK_NO_BOOST -I"$prefix/include" -fsyntax-only "$tmp/h.cc" ||
         fail "$h does not compile alone" ;;
  esac
done

# 4. Out-of-tree builds: CMake (shared and static), pkg-config (C and C++, shared and static).
for kind in shared static; do
  static=OFF
  [ "$kind" = static ] && static=ON
  cmake -S "$src/examples" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Debug -DKVC_EXAMPLE_STATIC=$static >"$tmp/cmake-$kind.log" 2>&1 ||
    { cat "$tmp/cmake-$kind.log" >&2; fail "cmake configure of examples ($kind) failed"; }
  cmake --build "$tmp/cmake-$kind" -j2 >>"$tmp/cmake-$kind.log" 2>&1 ||
    { cat "$tmp/cmake-$kind.log" >&2; fail "cmake build of examples ($kind) failed"; }
done
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --exists kvc || fail "pkg-config does not find kvc"
[ "$(pkg-config --modversion kvc)" = "$version" ] || fail "pkg-config --modversion differs"
mkdir -p "$tmp/pc"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror "$src/examples/c-client/main.c" $(pkg-config --cflags --libs kvc) \
  -Wl,-rpath,"$libdir" -o "$tmp/pc/c-client" || fail "pkg-config build of c-client failed"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror "$src/examples/c-client/main.c" $(pkg-config --cflags kvc) \
  "$libdir/libkvc.a" $(pkg-config --static --libs-only-l kvc | sed 's/-lkvc//') \
  -o "$tmp/pc/c-client-static" || fail "static pkg-config build of c-client failed"
# shellcheck disable=SC2046
c++ -std=c++20 -Wall "$src/examples/embedded-controller/main.cc" $(pkg-config --cflags --libs kvc) \
  -Wl,-rpath,"$libdir" -o "$tmp/pc/embedded-controller" ||
  fail "pkg-config build of embedded-controller failed"
# (grep reads here-strings: with pipefail, `ldd | grep -q` can fail by SIGPIPE when grep exits.)
if grep -q libkvc <<<"$(ldd "$tmp/pc/c-client-static")"; then
  fail "c-client-static links libkvc.so"
fi
grep -qF "libkvc.so.${version%.*} => $libdir/" <<<"$(ldd "$tmp/pc/c-client")" ||
  fail "c-client does not load the installed libkvc.so"

# 5. Run them against a real member.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peer=127.0.0.1:$(port) client=127.0.0.1:$(port)
"$node" --name m1 --data-dir "$tmp/m1" --listen-peer "$peer" --listen-client "$client" \
  --initial-cluster "m1=$peer" --log-file "$tmp/m1.log" &
pids+=($!)
wait_for() {  # wait_for DESCRIPTION COMMAND...: up to 15 s
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for $what"
}
wait_for "the member to take a write" "$ctl" --endpoints "$client" --timeout 1s put /example/other x
for prog in "$tmp/cmake-shared/c-client/c-client" "$tmp/cmake-static/c-client/c-client" \
            "$tmp/pc/c-client" "$tmp/pc/c-client-static"; do
  out=$("$prog" "$client") || fail "$prog exited $?: $out"
  grep -q "^libkvc $version" <<<"$out" || fail "$prog: kvc_version() is not $version: $out"
  grep -q "^cas with a stale revision: refused" <<<"$out" || fail "$prog: $out"
  grep -q "^list /example/other" <<<"$out" || fail "$prog did not list /example/other: $out"
  grep -q "^deleted /example/c-client/greeting" <<<"$out" || fail "$prog: $out"
done
# The embedded controller built each way: a one-member cluster that runs its job.
n=0
for prog in "$tmp/cmake-shared/embedded-controller/embedded-controller" \
            "$tmp/cmake-static/embedded-controller/embedded-controller" \
            "$tmp/pc/embedded-controller"; do
  n=$((n + 1))
  cpeer=127.0.0.1:$(port) cclient=127.0.0.1:$(port)
  "$prog" --name c$n --data-dir "$tmp/c$n" --listen-peer "$cpeer" --listen-client "$cclient" \
    --initial-cluster "c$n=$cpeer" >"$tmp/c$n.log" 2>&1 &
  cpid=$!
  pids+=($cpid)
  wait_for "$prog to write its heartbeat" \
    bash -c "'$ctl' --endpoints '$cclient' --timeout 1s get /kvrocks/controller/heartbeat | grep -q '^c$n '"
  kill -TERM "$cpid"
  rc=0
  wait "$cpid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$tmp/c$n.log" >&2; fail "$prog exited $rc on SIGTERM"; }
done
# The Go example (examples/go-controller) copied out of the tree, its go.mod pointing at the
# installed Go package, cgo at the installed libkvc through pkg-config (docs/go.md): a one-member
# cluster that runs its job. Only when a `go` is there (KVC_GO, from CMake).
if [ -n "${KVC_GO:-}" ]; then
  gosrc=$prefix/share/gocode/src/kvc.dev/kvc
  [ -f "$gosrc/kvrocks/kvrocks.go" ] || fail "the Go package was not installed in $gosrc"
  ! find "$gosrc" -name '*_test.go' | grep -q . || fail "the Go package's tests were installed"
  mkdir "$tmp/go-controller"
  cp "$src/examples/go-controller/main.go" "$tmp/go-controller/"
  printf 'module example.com/controller\n\ngo 1.19\n\nrequire kvc.dev/kvc v0.0.0\n\nreplace kvc.dev/kvc => %s\n' \
    "$gosrc" > "$tmp/go-controller/go.mod"
  (cd "$tmp/go-controller" &&
    CGO_CFLAGS="$(pkg-config --cflags kvc)" \
    CGO_LDFLAGS="$(pkg-config --libs kvc) -Wl,-rpath,$(pkg-config --variable=libdir kvc)" \
    GOPROXY=off GOFLAGS="-mod=mod -buildvcs=false" GO111MODULE=on GOPATH="$tmp/gopath" \
    "$KVC_GO" build -o "$tmp/go-controller/go-controller" .) ||
    fail "the Go example does not build against the installed kvc"
  grep -qF "libkvc.so.${version%.*} => $libdir/" <<<"$(ldd "$tmp/go-controller/go-controller")" ||
    fail "the Go example does not load the installed libkvc.so"
  gpeer=127.0.0.1:$(port) gclient=127.0.0.1:$(port)
  "$tmp/go-controller/go-controller" --name g1 --data-dir "$tmp/g1" --listen-peer "$gpeer" \
    --listen-client "$gclient" --initial-cluster "g1=$gpeer" >"$tmp/g1.log" 2>&1 &
  gpid=$!
  pids+=($gpid)
  wait_for "the Go example to write its heartbeat" \
    bash -c "'$ctl' --endpoints '$gclient' --timeout 1s get /kvrocks/controller/heartbeat | grep -q '^g1 '"
  kill -TERM "$gpid"
  rc=0
  wait "$gpid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$tmp/g1.log" >&2; fail "the Go example exited $rc on SIGTERM"; }
  gonote=", Go example"
fi
# The Python client as installed (component python), from outside the tree: the five lines.
pydir=$(dirname "$(find "$prefix" -path '*/kvc/__init__.py' | head -1)")
[ -n "$pydir" ] && [ "$pydir" != . ] || fail "the Python package kvc was not installed"
out=$(cd "$tmp" && PYTHONPATH=$(dirname "$pydir") PYTHONDONTWRITEBYTECODE=1 python3 -c "
import kvc
c = kvc.Client('$client')
rev = c.put('/py/a', '1')
c.cas('/py/a', '2', expect_revision=rev)
print(kvc.__file__, [(kv.key, kv.value) for kv in c.list('/py/')])") ||
  fail "the installed Python client failed: $out"
grep -qF "$pydir/__init__.py [(b'/py/a', b'2')]" <<<"$out" ||
  fail "the installed Python client: $out"
echo "install_test: ok (libkvc $version, SONAME $soname, $(wc -l <<<"$exports") exported symbols${gonote:-})"
