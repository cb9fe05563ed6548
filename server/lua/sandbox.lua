-- The sandbox: run once, with the unsandboxed globals, as the chunk "=kvd". `...` is a
-- table of the server's callbacks (Python functions) and of the libraries' sources.
--
-- What a script sees, as in Redis 7.0 (script_lua.c, eval.c):
--  * the libraries Redis loads -- base, string, table, math, cjson, cmsgpack, bit, struct
--    -- and redis; no os, io, debug, package, require, loadfile, dofile, print, newproxy,
--    setfenv, getfenv;
--  * read-only globals and library tables: creating or changing a global fails with
--    "Attempt to modify a readonly table", reading one that does not exist with "Script
--    attempted to access nonexistent global variable";
--  * errors are tables {err=...}; the error handler adds where the script failed.
--
-- Nothing of Python is reachable: every callback is called from a Lua function defined
-- here (a script sees only that function, its type "function"), takes only strings,
-- numbers, booleans and nil, and answers (true, value) or (false, error text). The
-- script's memory limit is lifted while a callback runs -- lupa cannot survive an
-- allocation failure while it hands a result to Lua -- and set again by `relimit` as
-- soon as it returns.
--
-- Stock Lua has no read-only tables (Redis patches its Lua for them), so the globals
-- and library tables are empty proxies whose metatable reads through to the real
-- (hidden) tables and refuses writes; `rawset` refuses the proxies too. One difference
-- is visible: pairs() over a library table or _G yields nothing.
--
-- A count hook calls back every so many instructions, which is how a runaway script is
-- noticed and stopped; stopped, the hook fires on every line so that a pcall in the
-- script cannot swallow the stop.
local api = ...
local G = _G
local type, tostring, error, select, unpack = type, tostring, error, select, unpack
local rawget, real_rawset, setmetatable, pairs, next = rawget, rawset, setmetatable, pairs, next
local xpcall, lua_pcall, loadstring, load = xpcall, pcall, loadstring, load
local sethook, getinfo = debug.sethook, debug.getinfo
local byte, find, sub, gsub = string.byte, string.find, string.sub, string.gsub
local concat, maxn, dump = table.concat, table.maxn, string.dump

local null = newproxy()  -- cjson.null: a userdata of its own, as Redis's NULL lightuserdata
local relimit = api.relimit

for _, name in ipairs({"os", "io", "debug", "package", "require", "module", "loadfile",
                       "dofile", "print", "newproxy", "setfenv", "getfenv", "python"}) do
  G[name] = nil
end

local READONLY = "Attempt to modify a readonly table"
local protected = setmetatable({}, {__mode = "k"})
local ours = setmetatable({}, {__mode = "k"})  -- the functions this chunk defines for scripts

local function refuse() error(READONLY, 2) end

-- A read-only view of `real` (a table, or a function that gives the table on first use).
local function readonly(real)
  local proxy = setmetatable({}, {__index = real, __newindex = refuse, __metatable = false})
  protected[proxy] = true
  return proxy
end

local function mark(t)  -- string.dump refuses the functions a script reaches in `t`
  for _, value in pairs(t) do
    if type(value) == "function" then ours[value] = true end
  end
end

-- The libraries, written in Lua (chunk "=lib", see support.lua), are loaded on first
-- use: most scripts use none, and the Lua state stays small (its memory is INFO's
-- used_memory_lua). The server hands over each one compiled (api.library).
local support
local function library(name, ...)
  local ok, code = api.library(name)
  relimit()
  if not ok then error(code, 0) end
  return loadstring(code, "=lib")(...)
end
local function supported()
  support = support or library("support", getinfo)
  return support
end
local function lazy(name, ...)
  local args, loaded = {...}, nil
  return function(_, key)
    if not loaded then
      loaded = library(name, supported(), unpack(args))
      mark(loaded)
    end
    return loaded[key]
  end
end
G.bit, G.struct = lazy("bit"), lazy("struct")
G.cmsgpack, G.cjson = lazy("cmsgpack"), lazy("cjson", null)

-- == callbacks into the server ==


-- The arguments as a callback may take them: anything but a string, a number, a boolean
-- or nil is handed over as false (the server refuses it as a type it does not take).
local function plain(n, ...)
  for i = 1, n do
    local kind = type((select(i, ...)))
    if kind ~= "string" and kind ~= "number" and kind ~= "boolean" and kind ~= "nil" then
      local args = {...}
      for j = i, n do
        kind = type(args[j])
        if kind ~= "string" and kind ~= "number" and kind ~= "boolean" and kind ~= "nil" then
          args[j] = false
        end
      end
      return unpack(args, 1, n)
    end
  end
  return ...
end

-- A server function as the script calls it: an error it answers is raised as {err=...}.
-- (Called, not tail-called, so that the error handler finds the script's frame above it.)
local function raising(callback)
  return function(...)
    local ok, value = callback(plain(select("#", ...), ...))
    relimit()
    if not ok then error({err = value}) end
    return value
  end
end

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
    end
  end
  return unpack(results, 1, maxn(results))
end

G.rawset = function(t, k, v)
  if protected[t] then error(READONLY, 0) end
  return real_rawset(t, k, v)
end

G.setmetatable = function(t, meta)
  if protected[t] then error(READONLY, 0) end
  local r = setmetatable(t, meta)
  return r
end

-- Redis 7.0 parses every chunk as text: a binary one (string.dump's) is a syntax error
-- ("unexpected symbol near 'char(27)'"), never loaded. Code is compiled with its tail
-- calls made plain calls (lua_bytecode.py), so that an error in a library called in tail
-- position still names the caller's line.
local function compile(text, chunkname)
  if byte(text, 1) == 27 then return loadstring(" " .. text, chunkname or text) end
  local f, message = loadstring(text, chunkname)
  if not f then return f, message end
  local ok, patched = api.without_tail_calls(dump(f))
  relimit()
  if not ok then return nil, patched end
  return loadstring(patched, chunkname)
end

G.loadstring = function(...)
  local n = select("#", ...)
  local text = supported().checkstring(1, n, ...)
  local chunkname = (select(2, ...))
  if chunkname ~= nil then chunkname = support.checkstring(2, n, ...) end
  local f, message = compile(text, chunkname)
  return f, message
end

G.load = function(...)
  local reader, chunkname = ...
  if type(reader) ~= "function" then
    supported().typeerror(1, "function", select("#", ...), ...)
  end
  if chunkname ~= nil then chunkname = supported().checkstring(2, select("#", ...), ...) end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == "" then break end
    if type(piece) == "number" then piece = tostring(piece) end
    if type(piece) ~= "string" then return nil, "reader function must return a string" end
    parts[#parts + 1] = piece
  end
  local f, message = compile(concat(parts), chunkname or "=(load)")
  return f, message
end

-- string.dump of a function of the server's fails, as it does for Redis's C functions.
G.string.dump = function(f, ...)
  if ours[f] then error("unable to dump given function", 2) end
  local text = dump(f, ...)
  return text
end

local redis = {}
redis.call = raising(api.call)
redis.pcall = function(...)
  local ok, value = api.pcall(plain(select("#", ...), ...))
  relimit()
  if not ok then return {err = value} end
  return value
end
for _, name in ipairs({"sha1hex", "log", "setresp", "set_repl", "acl_check_cmd"}) do
  redis[name] = raising(api[name])
end

-- luaPushErrorBuff: "-CODE message" keeps its code, anything else is an ERR; the message
-- loses its CR/LF at both ends.
local function error_text(text)
  local code, message = "ERR", text
  if byte(text, 1) == 45 then  -- "-"
    local space = find(text, " ", 1, true)
    if space then
      code, message = sub(text, 2, space - 1), sub(text, space + 1)
    else
      message = sub(text, 2)
    end
  end
  message = gsub(gsub(message, "^[\r\n]+", ""), "[\r\n]+$", "")
  return code .. " " .. message
end

redis.error_reply = function(...)
  if select("#", ...) ~= 1 or type((...)) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  return {err = error_text("-" .. gsub((...), "^%-", ""))}
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

-- Every function a script can reach from the tables above is ours: string.dump refuses it.
mark(redis)
for _, f in ipairs({G.pcall, G.rawset, G.setmetatable, G.loadstring, G.load,
                    G.string.dump}) do
  ours[f] = true
end

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
local globals_meta = {__index = hidden, __newindex = refuse}
globals_meta.__metatable = readonly(globals_meta)  -- what getmetatable(_G) shows: read-only
setmetatable(G, globals_meta)
protected[G] = true

-- Where a script failed (Redis's __redis__err__handler): the first frame that is not
-- this chunk's, the libraries', C or a tail call's.
local function skipped(info)
  return info.source == "=kvd" or info.source == "=lib" or info.what == "C"
         or info.what == "tail"
end

local function where(err)
  local level = 2
  local info = getinfo(level, "nSl")
  while info and skipped(info) do
    level = level + 1
    info = getinfo(level, "nSl")
  end
  if type(err) ~= "table" then
    if type(err) == "userdata" and err ~= null then err = "error in a call to the server" end
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
  local ok, stop = tick()
  relimit()
  if stopping or (ok and stop) then
    if not stopping then
      stopping = true
      sethook(hook, "l")  -- from now on every line raises: pcall cannot catch the stop
    end
    local info = getinfo(2, "S")
    if info and info.source == "=kvd" then return end  -- not in the error handler, nor run()
    error({err = "ERR Script killed by user with SCRIPT KILL..."})
  end
end

-- EVAL's scripts find their keys and arguments in the globals KEYS and ARGV; a
-- function (FCALL) gets them as its two arguments, and there are no such globals.
local function_keys, function_args
local function prepare(as_function, nkeys, ...)
  local all, keys, argv = {...}, {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, select("#", ...) do argv[i - nkeys] = all[i] end
  if as_function then
    function_keys, function_args = keys, argv
  else
    hidden.KEYS, hidden.ARGV = keys, argv
  end
end

local function run(fn, as_function)
  stopping = false
  sethook(hook, "", api.hook_instructions)
  local ok, reply
  if as_function then
    local keys, args = function_keys, function_args
    function_keys, function_args = nil, nil
    ok, reply = xpcall(function() return fn(keys, args) end, where)
  else
    ok, reply = xpcall(fn, where)
  end
  sethook()
  return ok, reply
end

-- == function libraries (FUNCTION LOAD), as Redis 7.0's function_lua.c ==
--
-- A library's code runs once, when it is loaded, with globals of its own that hold only
-- `redis` -- register_function, log and its levels, the version -- and then registers
-- its functions; they run later with the globals every script has.

local FLAGS = {["no-writes"] = true, ["allow-oom"] = true, ["allow-stale"] = true,
               ["no-cluster"] = true, ["allow-cross-slot-keys"] = true}
local lower, match = string.lower, string.match
local registering  -- the functions of the library being loaded, in order
local end_load
local function refused(message) error({err = "ERR " .. message}) end

local function register_function(...)
  if not registering then
    refused("redis.register_function can only be called on FUNCTION LOAD command")
  end
  local n = select("#", ...)
  if n < 1 or n > 2 then refused("wrong number of arguments to redis.register_function") end
  local name, callback, description, flags = nil, nil, nil, {}
  if n == 1 then
    local named = ...
    if type(named) ~= "table" then
      refused("calling redis.register_function with a single argument is only applicable to "
              .. "Lua table (representing named arguments).")
    end
    for key, value in next, named do
      local kind = type(key)
      if kind ~= "string" and kind ~= "number" then
        refused("named argument key given to redis.register_function is not a string")
      end
      key = lower(tostring(key))
      if key == "function_name" then
        if type(value) ~= "string" and type(value) ~= "number" then
          refused("function_name argument given to redis.register_function must be a string")
        end
        name = tostring(value)
      elseif key == "description" then
        if type(value) ~= "string" and type(value) ~= "number" then
          refused("description argument given to redis.register_function must be a string")
        end
        description = tostring(value)
      elseif key == "callback" then
        if type(value) ~= "function" then
          refused("callback argument given to redis.register_function must be a function")
        end
        callback = value
      elseif key == "flags" then
        if type(value) ~= "table" then
          refused("flags argument to redis.register_function must be a table representing "
                  .. "function flags")
        end
        local i = 1
        while rawget(value, i) ~= nil do
          local flag = rawget(value, i)
          if (type(flag) ~= "string" and type(flag) ~= "number")
             or not FLAGS[lower(tostring(flag))] then
            refused("unknown flag given")
          end
          flags[#flags + 1] = lower(tostring(flag))
          i = i + 1
        end
      else
        refused("unknown argument given to redis.register_function")
      end
    end
    if name == nil then refused("redis.register_function must get a function name argument") end
    if callback == nil then refused("redis.register_function must get a callback argument") end
  else
    name, callback = ...
    if type(name) ~= "string" and type(name) ~= "number" then
      refused("first argument to redis.register_function must be a string")
    end
    name = tostring(name)
    if type(callback) ~= "function" then
      refused("second argument to redis.register_function must be a function")
    end
  end
  if not match(name, "^[%w_]+$") then
    refused("Library names can only contain letters, numbers, or underscores(_) and must be "
            .. "at least one character long")
  end
  for i = 1, #registering do
    if registering[i][1] == name then refused("Function already exists in the library") end
  end
  registering[#registering + 1] = {name, callback, description or false, flags}
end

local library_redis = {register_function = register_function, log = redis.log,
                       LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
                       REDIS_VERSION = api.version, REDIS_VERSION_NUM = api.version_num}
mark(library_redis)
local function nonexistent(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end
setmetatable(library_redis, {__index = nonexistent})
local library_globals = setmetatable({redis = readonly(library_redis)},
                                     {__index = nonexistent})

-- The load hook: a library's code that runs too long is stopped (api.load_tick says when).
local load_tick = api.load_tick
local function load_hook()
  local ok, late = load_tick()
  relimit()
  if ok and late then
    sethook(load_hook, "l")
    local info = getinfo(2, "S")
    if info and info.source == "=kvd" then return end  -- not in load_library itself
    error({err = "ERR FUNCTION LOAD timeout"})
  end
end

-- The state every script expects, after a load (the server calls it too, should a load
-- ever end in an error that escaped, such as running out of memory).
end_load = function()
  sethook()
  globals_meta.__index = hidden
  registering = nil
end

-- Load a library's code (after its shebang line): (true, {{name, callback, description,
-- flags}...}) or (false, the error text).
local function load_library(code)
  local f, message = compile(code, "@user_function")
  if not f then return false, "Error compiling function: " .. tostring(message) end
  registering = {}
  globals_meta.__index = library_globals
  sethook(load_hook, "", api.hook_instructions)
  local ok, err = lua_pcall(f)
  local registered = registering
  end_load()
  if not ok then
    if type(err) == "table" then
      err = rawget(err, "err")
    else
      err = "ERR " .. tostring(err)
    end
    return false, "Error registering functions: " .. tostring(err)
  end
  return true, registered
end

-- A script's body, compiled: (the function to run) or (nil, the compiler's message).
local function compile_script(body)
  return compile(body, "@user_script")
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

return prepare, run, compile_script, classify, new_table, load_library, end_load
