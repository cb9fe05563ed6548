"""Passwords never appear in MONITOR or SLOWLOG: Redis's redactClientCommandArgument."""

from __future__ import annotations

REDACTED = b"(redacted)"


def secret_positions(args: list[bytes]) -> list[int]:
    """Which arguments are secrets: AUTH's, HELLO ... AUTH user pass, MIGRATE ... AUTH pass
    / AUTH2 user pass, CONFIG SET requirepass value."""
    name = args[0].upper()
    if name == b"AUTH":
        return list(range(1, len(args)))
    found = []
    if name == b"HELLO":
        for j in range(2, len(args) - 2):
            if args[j].upper() == b"AUTH":
                found += [j + 1, j + 2]
    elif name == b"MIGRATE":
        for j in range(6, len(args)):
            option = args[j].upper()
            if option == b"KEYS":
                break
            if option == b"AUTH":
                found.append(j + 1)
            elif option == b"AUTH2":
                found += [j + 1, j + 2]
    elif name == b"CONFIG" and len(args) > 1 and args[1].upper() == b"SET":
        found = [i + 1 for i in range(2, len(args) - 1, 2) if args[i].lower() == b"requirepass"]
    return [i for i in found if i < len(args)]


def redacted(args: list[bytes]) -> list[bytes]:
    """The arguments as MONITOR and SLOWLOG show them."""
    secrets = secret_positions(args)
    if not secrets:
        return args
    args = list(args)
    for i in secrets:
        args[i] = REDACTED
    return args
