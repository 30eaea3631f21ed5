"""The msgpack subset kvc's wire protocol uses (standard library only).

Encodes None, bool, int, bytes (msgpack bin), str (msgpack str), lists/tuples and dicts.
Decodes every msgpack type except ext (a member never sends one): bin as bytes, str as str
(invalid UTF-8 kept with surrogateescape, so nothing is lost), float as float.
"""

import struct

__all__ = ["pack", "unpack", "DecodeError"]


class DecodeError(ValueError):
    """The bytes are not one complete msgpack value."""


def pack(obj):
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


def _pack(obj, out):
    if obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif isinstance(obj, int):
        _pack_int(obj, out)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        n = len(b)
        if n < 0x100:
            out += struct.pack(">BB", 0xC4, n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xC5, n)
        else:
            out += struct.pack(">BI", 0xC6, n)
        out += b
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += struct.pack(">BB", 0xD9, n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDA, n)
        else:
            out += struct.pack(">BI", 0xDB, n)
        out += b
    elif isinstance(obj, (list, tuple)):
        n = len(obj)
        if n < 16:
            out.append(0x90 | n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDC, n)
        else:
            out += struct.pack(">BI", 0xDD, n)
        for item in obj:
            _pack(item, out)
    elif isinstance(obj, dict):
        n = len(obj)
        if n < 16:
            out.append(0x80 | n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDE, n)
        else:
            out += struct.pack(">BI", 0xDF, n)
        for k, v in obj.items():
            _pack(k, out)
            _pack(v, out)
    else:
        raise TypeError("cannot encode %s as msgpack" % type(obj).__name__)


def _pack_int(v, out):
    if 0 <= v < 0x80:
        out.append(v)
    elif v >= 0:
        if v < 0x100:
            out += struct.pack(">BB", 0xCC, v)
        elif v < 0x10000:
            out += struct.pack(">BH", 0xCD, v)
        elif v < 0x100000000:
            out += struct.pack(">BI", 0xCE, v)
        elif v < 0x10000000000000000:
            out += struct.pack(">BQ", 0xCF, v)
        else:
            raise OverflowError("integer %d does not fit in 64 bits" % v)
    elif v >= -32:
        out += struct.pack(">b", v)
    elif v >= -0x80:
        out += struct.pack(">Bb", 0xD0, v)
    elif v >= -0x8000:
        out += struct.pack(">Bh", 0xD1, v)
    elif v >= -0x80000000:
        out += struct.pack(">Bi", 0xD2, v)
    elif v >= -0x8000000000000000:
        out += struct.pack(">Bq", 0xD3, v)
    else:
        raise OverflowError("integer %d does not fit in 64 bits" % v)


def unpack(data):
    """Decodes `data`, which must hold exactly one msgpack value."""
    data = bytes(data)
    try:
        obj, pos = _unpack(data, 0, 0)
    except (IndexError, struct.error) as e:
        raise DecodeError("truncated msgpack value") from e
    if pos != len(data):
        raise DecodeError("%d bytes after the msgpack value" % (len(data) - pos))
    return obj


_MAX_DEPTH = 64  # a member's messages nest a few levels; deeper is garbage, not recursion


def _take(data, pos, n):
    end = pos + n
    if end > len(data):
        raise DecodeError("truncated msgpack value")
    return data[pos:end], end


def _unpack(data, pos, depth):
    if depth > _MAX_DEPTH:
        raise DecodeError("msgpack value nested too deeply")
    b = data[pos]
    pos += 1
    if b <= 0x7F:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0x80 <= b <= 0x8F:
        return _unpack_map(data, pos, b & 0x0F, depth)
    if 0x90 <= b <= 0x9F:
        return _unpack_array(data, pos, b & 0x0F, depth)
    if 0xA0 <= b <= 0xBF:
        raw, pos = _take(data, pos, b & 0x1F)
        return raw.decode("utf-8", "surrogateescape"), pos
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    if b in (0xC4, 0xC5, 0xC6):
        size = {0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        n, pos = _uint(data, pos, size)
        return _take(data, pos, n)
    if b in (0xD9, 0xDA, 0xDB):
        size = {0xD9: 1, 0xDA: 2, 0xDB: 4}[b]
        n, pos = _uint(data, pos, size)
        raw, pos = _take(data, pos, n)
        return raw.decode("utf-8", "surrogateescape"), pos
    if b == 0xCA:
        raw, pos = _take(data, pos, 4)
        return struct.unpack(">f", raw)[0], pos
    if b == 0xCB:
        raw, pos = _take(data, pos, 8)
        return struct.unpack(">d", raw)[0], pos
    if 0xCC <= b <= 0xCF:
        return _uint(data, pos, 1 << (b - 0xCC))
    if 0xD0 <= b <= 0xD3:
        size = 1 << (b - 0xD0)
        raw, pos = _take(data, pos, size)
        return int.from_bytes(raw, "big", signed=True), pos
    if b in (0xDC, 0xDD):
        n, pos = _uint(data, pos, 2 if b == 0xDC else 4)
        return _unpack_array(data, pos, n, depth)
    if b in (0xDE, 0xDF):
        n, pos = _uint(data, pos, 2 if b == 0xDE else 4)
        return _unpack_map(data, pos, n, depth)
    raise DecodeError("unsupported msgpack type byte 0x%02x" % b)


def _uint(data, pos, size):
    raw, pos = _take(data, pos, size)
    return int.from_bytes(raw, "big"), pos


def _unpack_array(data, pos, n, depth):
    if n > len(data) - pos:  # each element takes at least one byte
        raise DecodeError("msgpack array of %d elements in %d bytes" % (n, len(data) - pos))
    items = []
    for _ in range(n):
        item, pos = _unpack(data, pos, depth + 1)
        items.append(item)
    return items, pos


def _unpack_map(data, pos, n, depth):
    if 2 * n > len(data) - pos:
        raise DecodeError("msgpack map of %d entries in %d bytes" % (n, len(data) - pos))
    m = {}
    for _ in range(n):
        k, pos = _unpack(data, pos, depth + 1)
        v, pos = _unpack(data, pos, depth + 1)
        if isinstance(k, (list, dict)):
            raise DecodeError("msgpack map key of type %s" % type(k).__name__)
        m[k] = v
    return m, pos
