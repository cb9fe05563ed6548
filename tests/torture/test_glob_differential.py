"""KEYS and SCAN MATCH patterns, random and adversarial, to kvd and to a real redis-server:
the same keys must come back, and every request must come back at all.

Each request has a time bound in the harness (the clients' socket timeout): a
pattern that sends a matcher into exponential backtracking -- as one once
hung kvd for good -- fails the test by timing out, without a timing assertion
on the product.
"""

from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kvd_process import kvd_beside_redis

REQUEST_TIMEOUT = 10  # seconds; far beyond any polynomial matcher on these sizes

PATTERN_BYTES = list(b"ab*?[]^-\\z:\x00\xff\x80")
KEY_BYTES = list(b"abz:-]\\*^\x00\xff\x80")
PATTERNS = st.one_of(
    st.lists(st.sampled_from(PATTERN_BYTES), max_size=16).map(bytes),
    st.binary(max_size=12),
    # Nested stars and long runs: exponential for a backtracking matcher.
    st.builds(lambda n, tail: b"a*" * n + tail, st.integers(1, 40),
              st.sampled_from([b"b", b"", b"a", b"?b"])),
    st.builds(lambda n, c: c * n, st.integers(1, 300),
              st.sampled_from([b"?", b"*?", b"[ab]", b"*[^b]"])),
)
KEYS = st.one_of(
    st.lists(st.sampled_from(KEY_BYTES), max_size=12).map(bytes),
    st.builds(lambda n: b"a" * n, st.integers(1, 2000)),
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with kvd_beside_redis(tmp_path_factory.mktemp("glob")) as (kvd, reference):
        clients = (kvd.client(socket_timeout=REQUEST_TIMEOUT),
                   redis.Redis(port=reference.port, protocol=2, socket_timeout=REQUEST_TIMEOUT))
        yield clients
        clients[1].close()


def matched(client: redis.Redis, pattern: bytes) -> tuple[list[bytes], list[bytes]]:
    """What KEYS and a whole SCAN ... MATCH return for `pattern`, each sorted."""
    keys = sorted(client.execute_command("KEYS", pattern))
    scanned, cursor = [], b"0"
    while True:
        cursor, batch = client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        scanned += batch
        if cursor in (b"0", 0):
            return keys, sorted(scanned)


def load(client: redis.Redis, keys: list[bytes]) -> None:
    client.flushall()
    if keys:
        client.mset(dict.fromkeys(keys, b"1"))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(KEYS, min_size=1, max_size=8, unique=True),
       patterns=st.lists(PATTERNS, min_size=1, max_size=6))
@pytest.mark.slow
def test_patterns_match_the_keys_redis_matches(servers, keys, patterns):
    kvd, reference = servers
    load(kvd, keys)
    load(reference, keys)
    for pattern in patterns:
        assert matched(kvd, pattern) == matched(reference, pattern), pattern


ADVERSARIAL = [
    # The request that hung kvd: a 40-byte key and 20 nested stars that cannot match.
    (b"a" * 40, b"a*" * 20 + b"b"),
    (b"a" * 40, b"*a" * 20 + b"*b"),
    (b"a" * 5000, b"*a" * 300 + b"*b"),
    (b"a" * 5000, b"*a*" * 500 + b"?" * 10),
    (b"ab" * 2000, b"*[a-b]?" * 400 + b"*"),
    # Redis's nesting limit: a thousand nested stars match, a thousand and one never do.
    (b"a" * 1100, b"a*" * 1000 + b"a"),
    (b"a" * 1100, b"a*" * 1001 + b"a"),
    (b"a" * 1100, b"a*" * 1001),
    (b"a" * 1100, b"a*" * 1002),
]


@pytest.mark.parametrize("key,pattern", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_patterns_answer_at_once_as_redis(servers, key, pattern):
    kvd, reference = servers
    load(kvd, [key, b"other"])
    load(reference, [key, b"other"])
    assert matched(kvd, pattern) == matched(reference, pattern)
    assert kvd.ping()  # and the server still serves
