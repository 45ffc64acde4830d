#!/bin/sh
# esdl-slim: run at the end of each pip layer of the user images, so that what it removes never reaches a
# layer. (1) The test suites of the largest packages (~135 MB in esdl-user with their bytecode; packages
# known not to import them at run time -- bottleneck, for one, does -- keep theirs). (2) The debug symbols
# of the shared libraries that pip installed (~110 MB in esdl-user), with Debian's binutils installed for
# the moment and purged again: only files without an RPATH/RUNPATH, because auditwheel rewrites those with
# patchelf and strip is not known to be safe on them (the .libs folders are left alone for the same reason).
set -eu
site=$(echo /opt/esdl/venv/lib/python3*/site-packages)
for p in numpy scipy pandas numba xarray dask networkx matplotlib torch; do
  [ -d "$site/$p" ] && find "$site/$p" -depth -type d -name tests -exec rm -rf {} +
done
apt-get update -qq
apt-get install -y -qq --no-install-recommends binutils >/dev/null
find "$site" -type f -name '*.so*' -not -path '*.libs/*' | while read -r lib; do
  # only a library that still has its symbol table: strip rewrites even a stripped file, and a rewritten
  # file of a lower layer would be copied whole into this one
  if readelf -S "$lib" 2>/dev/null | grep -q '\.symtab' \
    && ! readelf -d "$lib" 2>/dev/null | grep -q -e RPATH -e RUNPATH; then
    strip --strip-unneeded "$lib" 2>/dev/null || true
  fi
done
apt-get purge -y -qq --auto-remove binutils >/dev/null
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
