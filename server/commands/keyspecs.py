"""Which arguments of a command line are keys, as Redis 7.0 finds them for COMMAND GETKEYS
(db.c's getKeysUsingKeySpecs): each of the command's key specs from Redis's own table
(a begin search by index or keyword, then a range or a key count), and, where a spec
cannot say (SORT's STORE, MIGRATE's KEYS), Redis's own procedure for that command."""

from __future__ import annotations

from collections.abc import Callable

KeyPositions = list[tuple[int, frozenset[str]]]  # (argument index, the spec's flags)


def as_dict(node: list) -> dict:
    """A stored map (["m", [key, value, ...]]) as a dict."""
    items = node[1]
    return dict(zip(items[0::2], items[1::2]))


def key_positions(specs: list, args: list[bytes]) -> KeyPositions | None:
    """The keys of `args` (the command line, name first) by the key specs (a stored set
    of maps); None where a spec cannot tell (unknown or incomplete), as Redis's -1."""
    found: KeyPositions = []
    for node in specs[1]:
        spec = as_dict(node)
        flags = frozenset(flag for _, flag in spec["flags"][1])
        if "variable_flags" in flags:
            return None  # (the command's own procedure knows them)
        begin, find = as_dict(spec["begin_search"]), as_dict(spec["find_keys"])
        begin_spec, find_spec = as_dict(begin["spec"]), as_dict(find["spec"])
        if begin["type"] == "index":
            first = begin_spec["index"]
        elif begin["type"] == "keyword":
            first = _after_keyword(args, begin_spec["keyword"], begin_spec["startfrom"])
            if not first:
                continue  # the keyword is not there: no keys of this spec
        else:
            return None
        if find["type"] == "range":
            step, last_key = find_spec["keystep"], find_spec["lastkey"]
            if last_key >= 0:
                last = first + last_key
            elif not find_spec["limit"]:
                last = len(args) + last_key
            else:
                last = first + ((len(args) - first) // find_spec["limit"] + last_key)
        elif find["type"] == "keynum":
            step = find_spec["keystep"]
            at = first + find_spec["keynumidx"]
            if at >= len(args):
                return None
            count = _count(args[at])
            if count is None:
                return None
            first += find_spec["firstkey"]
            last = first + count - 1
        else:
            return None
        if last >= len(args) or last < first or first >= len(args):
            return None  # (a count of 0 too: Redis's own procedure, if any, decides)
        found += [(i, flags) for i in range(first, last + 1, step)]
        if "incomplete" in flags:
            return None
    return found


def _after_keyword(args: list[bytes], keyword: str, start: int) -> int:
    """The index after `keyword`, searched from `start` (backwards if negative), or 0."""
    begin = start if start > 0 else len(args) + start
    end = len(args) - 1 if start > 0 else 1
    step = 1 if begin <= end else -1
    for i in range(begin, end + step, step):
        if i >= len(args) or i < 1:
            break
        if args[i].upper() == keyword.encode():
            return i + 1
    return 0


def _count(text: bytes) -> int | None:
    try:
        count = int(text)
    except ValueError:
        return None
    return count if count >= 0 and str(count).encode() == text.lstrip(b"+") else None


def sort_keys(args: list[bytes]) -> KeyPositions:
    """SORT's keys (sortGetKeys): the sorted key, and the last STORE's destination."""
    found: KeyPositions = [(1, frozenset({"RO", "access"}))]
    skip = {b"LIMIT": 2, b"GET": 1, b"BY": 1}
    store = None
    i = 2
    while i < len(args):
        word = args[i].upper()
        if word in skip:
            i += skip[word]
        elif word == b"STORE" and i + 1 < len(args):
            store = i + 1
        i += 1
    if store is not None:
        found.append((store, frozenset({"OW", "update"})))
    return found


def migrate_keys(args: list[bytes]) -> KeyPositions:
    """MIGRATE's keys (migrateGetKeys): the one key, or those after KEYS."""
    flags = frozenset({"RW", "access", "delete"})
    first, count = 3, 1
    i = 6
    while i < len(args):
        word = args[i].upper()
        if word == b"AUTH":
            i += 1
        elif word == b"AUTH2":
            i += 2
        elif word == b"KEYS":
            if args[3]:
                return []
            first, count = i + 1, len(args) - i - 1
            break
        i += 1
    return [(at, flags) for at in range(first, first + count)]


def set_keys(args: list[bytes]) -> KeyPositions:
    """SET's key (setGetKeys): read and written with GET, overwritten without."""
    reads = any(arg.upper() == b"GET" for arg in args[3:])
    return [(1, frozenset({"RW", "access", "update"} if reads else {"OW", "update"}))]


def bitfield_keys(args: list[bytes]) -> KeyPositions:
    """BITFIELD's key (bitfieldGetKeys): only read if it only GETs."""
    words = [arg.upper() for arg in args[2:]]
    writes = any(word in (b"SET", b"INCRBY") for word in words)
    return [(1, frozenset({"RW", "access", "update"} if writes else {"RO", "access"}))]


# The commands whose keys Redis finds with a procedure of its own when the specs cannot
PROCEDURES: dict[str, Callable[[list[bytes]], KeyPositions]] = {
    "sort": sort_keys, "sort_ro": sort_keys, "migrate": migrate_keys, "set": set_keys,
    "bitfield": bitfield_keys}

# COMMAND GETKEYSANDFLAGS lists a key's flags in this order (addReplyFlagsForKeyArgs)
FLAG_ORDER = ("RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
              "incomplete", "variable_flags")
