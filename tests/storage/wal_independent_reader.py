#!/usr/bin/env python3
"""A second, independent WAL reader, written only from man/kvc-wal.5.

    wal_independent_reader.py WAL_DIR

Prints one line per record and a final status line, in the form WalFormatTest compares with
what the C++ reader (scan_wal) reports for the same directory:

    entry SEQ OFFSET INDEX TERM ENTRY_TYPE DATA_HEX
    hard_state SEQ OFFSET TERM VOTE COMMIT
    snapshot SEQ OFFSET INDEX TERM VOTERS LEARNERS      (ids comma-separated, '-' for none)
    status clean | status torn_tail SEQ OFFSET | status corruption SEQ OFFSET

If this script and the C++ reader disagree, either the code or the manual page is wrong.
"""
import os
import re
import struct
import sys


def _table():
    t = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def mask(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


MAGIC = b"\x89KVCWAL\n"
MAX_PAYLOAD = 268435456
MIN_PAYLOAD = {1: 17, 2: 24, 3: 24}


def parse_header(b):
    if len(b) < 40 or b[:8] != MAGIC:
        return None
    if mask(crc32c(b[:36])) != struct.unpack_from("<I", b, 36)[0]:
        return None
    version, salt, seq, first, zero = struct.unpack_from("<IIQQI", b, 8)
    if version != 1 or zero != 0:
        return None
    return salt, seq, first


def whole_record(b, off, salt):
    """The record at off as (type, payload, size) when it is whole, else None."""
    if off + 12 > len(b):
        return None
    crc, length, typ = struct.unpack_from("<IIB", b, off)
    if typ not in MIN_PAYLOAD or b[off + 9:off + 12] != b"\0\0\0":
        return None
    if length < MIN_PAYLOAD[typ] or length > MAX_PAYLOAD or (typ == 2 and length != 24):
        return None
    if off + 12 + length > len(b):
        return None
    payload = b[off + 12:off + 12 + length]
    want = mask(crc32c(payload, crc32c(b[off + 4:off + 12], crc32c(struct.pack("<I", salt)))))
    if want != crc:
        return None
    if decode(typ, payload) is None:
        return None
    return typ, payload, 12 + length


def decode(typ, p):
    if typ == 1:
        index, term, etype = struct.unpack_from("<QQB", p, 0)
        if etype > 1 or index == 0:
            return None
        return index, term, etype, p[17:]
    if typ == 2:
        return struct.unpack_from("<QQQ", p, 0)
    n = struct.unpack_from("<I", p, 16)[0]
    if 20 + 8 * n + 4 > len(p):
        return None
    voters = list(struct.unpack_from("<%dQ" % n, p, 20))
    m = struct.unpack_from("<I", p, 20 + 8 * n)[0]
    if 24 + 8 * n + 8 * m != len(p):
        return None
    learners = list(struct.unpack_from("<%dQ" % m, p, 24 + 8 * n))
    index, term = struct.unpack_from("<QQ", p, 0)
    return index, term, voters, learners


def ids(v):
    return ",".join(str(x) for x in v) if v else "-"


def main():
    wal = sys.argv[1]
    names = sorted(n for n in os.listdir(wal) if re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}\.wal", n))
    names.sort(key=lambda n: int(n[:16], 16))
    out = []
    last = first = last_term = None
    hard = marker = None
    prev_seq = None

    def finish(status):
        out.append(status)
        print("\n".join(out))
        return 0

    for pos, name in enumerate(names):
        b = open(os.path.join(wal, name), "rb").read()
        h = parse_header(b)
        if h is None or h[1] != int(name[:16], 16) or h[2] != int(name[17:33], 16):
            return finish("status corruption %d 0" % int(name[:16], 16))
        salt, seq, seg_first = h
        if prev_seq is None:
            first, last, last_term = seg_first, seg_first - 1, 0
        elif seq != prev_seq + 1 or seg_first != last + 1:
            return finish("status corruption %d 0" % seq)
        prev_seq = seq
        off = 40
        while True:
            r = whole_record(b, off, salt)
            if r is None:
                break
            typ, payload, size = r
            v = decode(typ, payload)
            bad = False
            if typ == 1:
                index, term, etype, data = v
                if marker is not None and index <= marker[0]:
                    bad = True
                elif index > last + 1:
                    bad = True
                elif index <= last:
                    if hard is not None and index <= hard[2]:
                        bad = True
                    first = min(first, index)
                elif term < last_term:
                    bad = True
                if not bad:
                    if last < first or index == first:
                        first = index
                    last, last_term = index, term
                    out.append("entry %d %d %d %d %d %s" % (seq, off, index, term, etype, data.hex()))
            elif typ == 2:
                term, vote, commit = v
                if (hard is not None and term < hard[0]) or commit > last:
                    bad = True
                else:
                    hard = v
                    out.append("hard_state %d %d %d %d %d" % (seq, off, term, vote, commit))
            else:
                index, term, voters, learners = v
                if marker is not None and index < marker[0]:
                    bad = True
                else:
                    if index >= last:
                        last, last_term, first = index, term, index + 1
                    marker = (index, term)
                    out.append("snapshot %d %d %d %d %s %s" % (seq, off, index, term, ids(voters),
                                                               ids(learners)))
            if bad:
                return finish("status corruption %d %d" % (seq, off))
            off += size
        rest = b[off:]
        if rest.strip(b"\0") == b"":
            continue
        valid_after = any(whole_record(b, p, salt) for p in range(off + 1, len(b) - 11))
        if valid_after or pos + 1 != len(names):
            return finish("status corruption %d %d" % (seq, off))
        return finish("status torn_tail %d %d" % (seq, off))
    covered = marker[0] if marker is not None else 0
    if names and first > covered + 1:
        return finish("status corruption %d 40" % int(names[0][:16], 16))
    return finish("status clean")


if __name__ == "__main__":
    sys.exit(main())
