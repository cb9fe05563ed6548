"""The Lua sandbox holds: attempts to reach Python, load bytecode, or leave the script's
limits through a library, each run through the real gate (in-process, as the fast tier
does). The Redis 7.0 texts are checked byte for byte against redis-server by the
differential tests; these check what must never happen."""

from __future__ import annotations

import re

import pytest

from tests.server.test_commands_inprocess import Harness

# Everything a script can name, as Redis 7.0 has it (script_lua.c's allow lists), and the
# functions of each library table.
GLOBALS = ["xpcall", "tostring", "setmetatable", "next", "assert", "tonumber", "rawequal",
           "collectgarbage", "getmetatable", "rawset", "pcall", "type", "select", "unpack",
           "gcinfo", "pairs", "rawget", "loadstring", "ipairs", "load", "error", "_VERSION"]
LIBRARIES = {
    "string": ["byte", "char", "dump", "find", "format", "gmatch", "gsub", "len", "lower",
               "match", "rep", "reverse", "sub", "upper"],
    "table": ["concat", "insert", "maxn", "remove", "sort"],
    "math": ["abs", "ceil", "floor", "fmod", "frexp", "ldexp", "log", "max", "min", "random",
             "randomseed", "sqrt", "huge", "pi"],
    "coroutine": ["create", "resume", "running", "status", "wrap", "yield"],
    "cjson": ["encode", "decode", "encode_sparse_array", "encode_max_depth",
              "decode_max_depth", "encode_number_precision", "encode_keep_buffer",
              "encode_invalid_numbers", "decode_invalid_numbers", "new", "null", "_NAME",
              "_VERSION"],
    "cmsgpack": ["pack", "unpack", "unpack_one", "unpack_limit", "_NAME", "_VERSION"],
    "bit": ["tobit", "bnot", "band", "bor", "bxor", "lshift", "rshift", "arshift", "rol",
            "ror", "bswap", "tohex"],
    "struct": ["pack", "unpack", "size"],
    "redis": ["call", "pcall", "sha1hex", "log", "setresp", "set_repl", "acl_check_cmd",
              "error_reply", "status_reply", "replicate_commands", "breakpoint", "debug",
              "LOG_WARNING", "REPL_ALL", "REDIS_VERSION", "REDIS_VERSION_NUM"],
}
# What Redis removes, and what kvd removes besides (setfenv can replace the globals of
# every later script, newproxy's __gc runs code outside any script).
# (`debug` is false rather than absent: lupa looks it up, unprotected, on every call.)
ABSENT = ["os", "io", "package", "require", "module", "loadfile", "dofile",
          "print", "python", "newproxy", "setfenv", "getfenv"]
PYTHON = re.compile(rb"python|lupa|object at|<|bound method|Libraries|built-in", re.I)


@pytest.fixture
def h(tmp_path):
    return Harness(str(tmp_path / "data"))


def ev(h: Harness, script: str, *args: str) -> bytes:
    return h("EVAL", script, "0", *args)


def walk_script() -> str:
    """A script that visits every value a script can name (and tables below them, where
    they can be iterated), and reports anything that is not a plain Lua value."""
    roots = ", ".join(f"{{'{name}', {name}}}" for name in GLOBALS + list(LIBRARIES))
    members = "; ".join(f"check('{lib}.{key}', {lib}['{key}'])"
                        for lib, keys in LIBRARIES.items() for key in keys)
    return f"""
local bad, seen = {{}}, {{}}
local function check(path, v)
  local kind = type(v)
  if kind == 'userdata' and v ~= cjson.null then bad[#bad + 1] = path .. ' is userdata' end
  if kind == 'function' or kind == 'table' then
    if kind == 'function' and getmetatable(v) ~= nil then
      bad[#bad + 1] = path .. ' has a metatable'
    end
    local text = tostring(v)
    if not text:match('^' .. kind .. ': 0x%x+$') then bad[#bad + 1] = path .. ' shows ' .. text end
    if kind == 'function' then
      local ok = pcall(function() return v.__func__ end)
      if ok then bad[#bad + 1] = path .. ' can be indexed' end
    end
  end
  if kind == 'table' and not seen[v] then
    seen[v] = true
    for k, child in next, v do check(path .. '.' .. tostring(k), child) end
  end
end
for _, root in ipairs({{{roots}}}) do check(root[1], root[2]) end
{members}
check('getmetatable(_G)', getmetatable(_G))
check('getmetatable("")', getmetatable(""))
return bad
"""


def test_nothing_reachable_from_a_script_is_python(h):
    assert ev(h, walk_script()) == b"*0\r\n"


@pytest.mark.parametrize("name", ABSENT)
def test_what_redis_leaves_out_is_not_there(h, name):
    reply = ev(h, f"return {name}")
    assert reply.startswith(b"-ERR user_script:1: Script attempted to access nonexistent "
                            b"global variable '" + name.encode())
    assert ev(h, "return type(debug)") == b"$7\r\nboolean\r\n"


@pytest.mark.parametrize("attempt", [
    "return cjson.decode.__func__",  # the escape that worked: a bound Python method
    "return redis.call.__self__",
    "return cmsgpack.pack.__globals__",
    "return struct.pack['__class__']",
    "return bit.band.__call",
])
def test_library_functions_have_no_attributes(h, attempt):
    reply = ev(h, attempt)
    assert re.match(rb"-ERR user_script:1: attempt to index field '\w+' \(a function value\)",
                    reply), reply


@pytest.mark.parametrize("script", [
    # error objects, caught every way a script can catch them
    "local ok, e = pcall(redis.call, 'nosuch') return type(e)",
    "local ok, e = pcall(cjson.decode, '{') return type(e)",
    "return xpcall(function() redis.call('nosuch') end, function(e) return type(e) end)",
    "return xpcall(function() bit.band({}) end, function(e) return type(e) end)",
    "return select(2, coroutine.resume(coroutine.create(function() redis.call('x') end)))",
    "return select(2, coroutine.resume(coroutine.create(cjson.decode), '['))",
])
def test_errors_a_script_catches_are_lua_values(h, script):
    reply = ev(h, script)
    assert not PYTHON.search(reply), reply
    assert b"userdata" not in reply


def test_the_library_tables_and_globals_cannot_be_changed_or_unlocked(h):
    for script in ["cjson.encode = nil", "redis.call = tostring", "rawset(bit, 'x', 1)",
                   "setmetatable(_G, {})", "getmetatable(_G).__index = {}",
                   "getmetatable('').__index = {}", "rawset(_G, 'x', 1)", "_G.x = 1",
                   "string.dump = nil", "local m = getmetatable(cjson) m.x = 1"]:
        reply = ev(h, script)
        assert b"Attempt to modify a readonly table" in reply or b"attempt to index" in reply, \
            (script, reply)
    assert ev(h, "return type(cjson.encode)") == b"$8\r\nfunction\r\n"


@pytest.mark.parametrize("script", [
    "return loadstring(string.dump(function() return 42 end))()",
    "local s = string.dump(function() return 42 end) local done = false "
    "return load(function() if done then return nil end done = true return s end)()",
])
def test_bytecode_is_never_loaded(h, script):
    assert ev(h, script).startswith(b"-ERR user_script:1: attempt to call a nil value")


def test_loadstring_gives_redis_message_for_bytecode(h):
    reply = ev(h, "local f, e = loadstring(string.dump(function() end)) return {tostring(f), e}")
    assert reply.startswith(b"*2\r\n$3\r\nnil\r\n")
    assert b"unexpected symbol near 'char(27)'" in reply


def test_the_servers_functions_cannot_be_dumped(h):
    for name in ["redis.call", "redis.pcall", "cjson.encode", "cmsgpack.pack", "bit.band",
                 "struct.pack", "loadstring", "pcall"]:
        reply = ev(h, f"return string.dump({name})")
        assert b"unable to dump given function" in reply, (name, reply)


def test_code_a_script_loads_runs_in_the_sandbox_too(h):
    assert ev(h, "return loadstring('return type(os)')()") .startswith(
        b"-ERR [string \"return type(os)\"]:1: Script attempted to access nonexistent")
    assert ev(h, "return loadstring('x = 1')()").startswith(b"-ERR [string \"x = 1\"]:1: "
                                                           b"Attempt to modify a readonly")


def test_an_error_in_a_library_called_in_tail_position_names_the_scripts_line(h):
    reply = ev(h, "local x = 1\nreturn bit.band('x')")
    assert reply.startswith(b"-ERR user_script:2: bad argument #1 to 'band' (number expected, "
                            b"got string) script: ")
    assert reply.endswith(b", on @user_script:2.\r\n")


def test_library_work_counts_against_the_memory_limit(tmp_path):
    h = Harness(str(tmp_path / "data"), script_memory=16 << 20)
    reply = ev(h, "local t = {} for i = 1, 20 do t[i] = string.rep('x', 1000000) .. i end "
                  "return #cjson.encode(t)")
    assert reply.startswith(b"-ERR Error running script ") and b"not enough memory" in reply
    assert ev(h, "return #cjson.encode({string.rep('x', 1000)})") == b":1004\r\n"
    assert h.scripts.memory()[0] < 16 << 20


def test_a_long_library_call_lets_others_be_served_and_can_be_killed(tmp_path):
    """Past the busy threshold the hook serves the other clients (here: the stand-in
    control counts its calls) from inside a library's work, and SCRIPT KILL stops it."""
    h = Harness(str(tmp_path / "data"), busy_reply_threshold=1)
    served = []

    def serve_while_busy(caller) -> None:
        served.append(caller)
        if len(served) == 3:
            assert h.scripts.kill() == b"+OK\r\n"

    h.control.serve_while_busy = serve_while_busy
    reply = ev(h, "local t = {} for i = 1, 200000 do t[i] = {i, 'x' .. i} end "
                  "local s = cjson.encode(t) return #cjson.decode(s)")
    assert len(served) >= 3
    assert reply.startswith(b"-ERR Script killed by user with SCRIPT KILL...")
    assert ev(h, "return 1") == b":1\r\n"


def test_a_callback_that_fails_leaves_the_memory_limit_in_force(tmp_path):
    """A redis.call that fails (here: an unknown command) still ends with the limit set
    again: a script cannot lift it by making its calls fail."""
    h = Harness(str(tmp_path / "data"), script_memory=16 << 20)
    reply = ev(h, "pcall(redis.call, 'nosuch') local t = {} "
                  "for i = 1, 64 do t[i] = string.rep('y', 1000000) .. i end return #t")
    assert b"not enough memory" in reply
