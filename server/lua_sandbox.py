"""The Lua state scripts run in: Lua 5.1 (lupa's, the version Redis embeds), sandboxed
as Redis sandboxes it.

What a script sees, as in Redis 7.0 (script_lua.c, eval.c):

* the libraries Redis loads -- base, `string`, `table`, `math`, `cjson`,
  `cmsgpack`, `bit`, `struct` -- and `redis`; no `os`, `io`, `debug`,
  `package`, `require`, `loadfile`, `dofile`, `print`, `setfenv`...;
* globals are read-only: creating or changing one fails with "Attempt to modify
  a readonly table", reading one that does not exist with "Script attempted to
  access nonexistent global variable", and so are the library tables;
* errors are tables `{err=...}`, and an error handler adds where the script
  failed (`source`, `line`), from which EVAL builds Redis's error text.

Stock Lua has no read-only tables (Redis patches its Lua for them), so the
globals and library tables are empty proxies whose metatable reads through to
the real (hidden) tables and refuses writes; `rawset` refuses the proxies too.
One difference is visible: `pairs()` over a library table or `_G` yields nothing.

A count hook calls back every HOOK_INSTRUCTIONS instructions, which is how
a runaway script is noticed and stopped; stopped, the hook fires on every line
so that a `pcall` in the script cannot swallow the stop.
"""

from __future__ import annotations

from lupa import lua51

from .lua_libs import Libraries

HOOK_INSTRUCTIONS = 100_000  # as Redis

# Runs once with the unsandboxed globals; `...` is the table of Python callbacks.
# Its chunk name "=kvd" lets the error handler skip its frames when it reports
# where a script failed.
PRELUDE = r"""
local api = ...
local G = _G
local type, tostring, error, select, unpack = type, tostring, error, select, unpack
local rawget, real_rawset, setmetatable, pairs = rawget, rawset, setmetatable, pairs
local xpcall, lua_pcall = xpcall, pcall
local sethook, getinfo = debug.sethook, debug.getinfo
local newproxy, loadstring, next = newproxy, loadstring, next

for _, name in ipairs({"os", "io", "debug", "package", "require", "module", "loadfile",
                       "dofile", "print", "newproxy", "setfenv", "getfenv", "python"}) do
  G[name] = nil
end

local READONLY = "Attempt to modify a readonly table"
local protected = setmetatable({}, {__mode = "k"})

local function refuse() error(READONLY, 2) end

local function readonly(real)
  local proxy = setmetatable({}, {__index = real, __newindex = refuse, __metatable = false})
  protected[proxy] = true
  return proxy
end

-- Library tables: cjson, cmsgpack, bit and struct are Python functions (lua_libs.py).
-- They, redis.call and the other redis.* functions that can fail are called as
-- they are, not through a Lua wrapper, so a failing call in a `return` keeps the
-- script's line (a Lua wrapper would be a tail call, and its caller's frame gone).
-- Their errors arrive as (Python) userdata; error_text makes them Redis's text.
for _, name in ipairs({"cjson", "cmsgpack", "bit", "struct"}) do
  G[name] = {}
  for fname, fn in pairs(api[name]) do
    G[name][fname] = fn
  end
end
local null = newproxy()
G.cjson.null = null
local error_text = api.error_text

-- pcall as Redis 7 has it: an error table becomes its message for the caller.
G.pcall = function(f, ...)
  local results = {lua_pcall(f, ...)}
  if not results[1] then
    local e = results[2]
    if type(e) == "table" then
      local message = rawget(e, "err")
      if type(message) == "string" or type(message) == "number" then
        results[2] = message
      end
    elseif type(e) == "userdata" and e ~= null then
      results[2] = error_text(e, nil, nil)
    end
  end
  return unpack(results, 1, table.maxn(results))
end

G.rawset = function(t, k, v)
  if protected[t] then error(READONLY, 0) end
  return real_rawset(t, k, v)
end

local redis = {}
for _, name in ipairs({"call", "pcall", "sha1hex", "log", "setresp", "set_repl",
                       "acl_check_cmd"}) do
  redis[name] = api[name]
end
redis.error_reply = function(...)
  if select("#", ...) ~= 1 or type((...)) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  return {err = api.error_reply((...))}
end
redis.status_reply = function(...)
  if select("#", ...) ~= 1 or type((...)) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  return {ok = (...)}
end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION = api.version
redis.REDIS_VERSION_NUM = api.version_num
G.redis = redis

-- Make the libraries read-only, then the globals: every name moves to a hidden
-- table that the (now empty) globals table reads through.
for _, name in ipairs({"string", "table", "math", "coroutine", "cjson", "cmsgpack", "bit",
                       "struct", "redis"}) do
  G[name] = readonly(G[name])
end
local string_meta = getmetatable("")
string_meta.__index = G.string
string_meta.__metatable = readonly(string_meta)

local hidden = {}
for name, value in pairs(G) do hidden[name] = value end
for name in pairs(hidden) do G[name] = nil end
hidden._G = G
-- lupa looks `debug` up (for debug.traceback) on every call into Lua, from C and
-- unprotected: it must find a value there without an error (or an allocation, which
-- can fail when a script has used up the memory limit), so scripts see `false`.
hidden.debug = false
setmetatable(hidden, {__index = function(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end})
setmetatable(G, {__index = hidden, __newindex = refuse, __metatable = false})
protected[G] = true

-- Where a script failed (Redis's __redis__err__handler), skipping this chunk's frames.
local function where(err)
  local level = 2
  local info = getinfo(level, "nSl")
  if info and info.what == "C" then
    level = level + 1
    info = getinfo(level, "nSl")
  end
  while info and (info.source == "=kvd" or info.what == "C") do
    level = level + 1
    info = getinfo(level, "nSl")
  end
  if type(err) == "userdata" and err ~= null then
    err = {err = error_text(err, info and info.short_src, info and info.currentline)}
  elseif type(err) ~= "table" then
    err = {err = "ERR " .. tostring(err)}
  end
  if info then
    err.source = info.source
    err.line = info.currentline
  end
  return err
end

-- The count hook: the server decides whether the script must stop.
local tick, stopping = api.tick, false
local function hook()
  if stopping or tick() then
    if not stopping then
      stopping = true
      sethook(hook, "l")  -- from now on every line raises: pcall cannot catch the stop
    end
    local info = getinfo(2, "S")
    if info and info.source == "=kvd" then return end  -- not in the error handler, nor run()
    error({err = "ERR Script killed by user with SCRIPT KILL..."})
  end
end

local function prepare(nkeys, ...)
  local all, keys, argv = {...}, {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, select("#", ...) do argv[i - nkeys] = all[i] end
  hidden.KEYS, hidden.ARGV = keys, argv
end

local function run(fn)
  stopping = false
  sethook(hook, "", api.hook_instructions)
  local ok, reply = xpcall(fn, where)
  sethook()
  return ok, reply
end

-- A compiled script runs with the sandboxed globals.
local function compile(body)
  return loadstring(body, "@user_script")
end

-- A reply table, read without its metatable: what kind of reply it is, and its parts.
local function classify(t)
  local v = rawget(t, "err")
  if type(v) == "string" then return "err", v end
  v = rawget(t, "ok")
  if type(v) == "string" then return "ok", v end
  v = rawget(t, "double")
  if type(v) == "number" then return "double", v end
  v = rawget(t, "big_number")
  if type(v) == "string" then return "big_number", v end
  v = rawget(t, "verbatim_string")
  if type(v) == "table" then
    local format, text = rawget(v, "format"), rawget(v, "string")
    if type(format) == "string" and type(text) == "string" then
      return "verbatim", format, text
    end
  end
  local flat, n = {}, 0
  v = rawget(t, "map")
  if type(v) == "table" then
    for key, value in next, v do flat[n + 1], flat[n + 2], n = key, value, n + 2 end
    return "map", n, flat
  end
  v = rawget(t, "set")
  if type(v) == "table" then
    for key in next, v do n = n + 1; flat[n] = key end
    return "set", n, flat
  end
  while rawget(t, n + 1) ~= nil do n = n + 1; flat[n] = rawget(t, n) end
  return "array", n, flat
end

local function new_table(kind, a, b)
  if kind == "ok" then return {ok = a} end
  if kind == "err" then return {err = a} end
  if kind == "double" then return {double = a} end
  if kind == "big_number" then return {big_number = a} end
  if kind == "verbatim" then return {verbatim_string = {format = a, string = b}} end
  if kind == "map" then return {map = a} end
  if kind == "set" then return {set = a} end
  return a
end

return prepare, run, compile, classify, new_table, null
"""


class Sandbox:
    """One Lua state, set up once; a script cache flush starts a new one (SCRIPT FLUSH)."""

    def __init__(self, api: dict[str, object], max_memory: int) -> None:
        self.runtime = lua51.LuaRuntime(encoding=None, register_eval=False,
                                        register_builtins=False,
                                        unpack_returned_tuples=True, max_memory=max_memory)
        self.table_from = self.runtime.table_from
        libraries = Libraries(self.table_from)
        values = {k.encode(): v for k, v in api.items()}
        for name, functions in libraries.tables().items():
            values[name.encode()] = self.table_from(functions)
        values[b"hook_instructions"] = HOOK_INSTRUCTIONS
        loader = self.runtime.eval(b"function(code) return loadstring(code, '=kvd') end")
        chunk = loader(PRELUDE.encode())
        (self._prepare, self._run, self.compile, self.classify, self.new_table,
         libraries.null) = chunk(self.table_from(values))
        self.max_memory = max_memory
        self.runtime.set_max_memory(0)

    def run(self, function: object, keys: list[bytes], args: list[bytes]) -> tuple:
        """(True, result) or (False, error) of a compiled script.

        The memory limit holds only while the script runs: lupa pushes values into
        Lua outside any protected call, where running out of memory aborts the
        process, so KEYS and ARGV are made first, without the limit, and whatever the
        script leaves behind is collected afterwards."""
        self._prepare(len(keys), *keys, *args)
        self.runtime.set_max_memory(self.max_memory)
        try:
            return self._run(function)
        finally:
            self.runtime.set_max_memory(0)
            if self.memory() > self.max_memory // 2:
                self.runtime.gccollect()

    def memory(self) -> int:
        """Bytes the Lua state uses."""
        used = self.runtime.get_memory_used()
        return used if used is not None else 0
