-- What the libraries (cjson, cmsgpack, struct, bit) share: errors raised the way the C
-- libraries Redis links raise them, and numbers as IEEE-754 bytes (Lua 5.1 has no
-- string.pack).
--
-- The libraries are Lua, not C or Python, so that a script only ever holds Lua values:
-- their work counts against the script's instruction hook (busy, SCRIPT KILL) and their
-- allocations against its memory limit. Their chunks are named "=lib"; an error names
-- the first frame outside them, as luaL_error names the caller of a C function.
local getinfo = ...
local floor, frexp, ldexp, huge = math.floor, math.frexp, math.ldexp, math.huge
local char, byte, format = string.char, string.byte, string.format
local type, select, error, tostring, tonumber = type, select, error, tostring, tonumber

local support = {}

-- The libraries' frames, the sandbox's (chunk "=kvd": its loadstring, load...) and the
-- marks of tail calls among them.
local function inside(info)
  return info.source == "=lib" or info.source == "=kvd"
end

-- Where the library was called from: (the caller's "short_src:line:" or "" when that is
-- C or unknown, the name the library function was called by, and how), i.e. what
-- luaL_where(L, 1) and lua_getinfo(L, "n") tell a C function about itself.
local function caller()
  local level, entry = 3, nil
  local info = getinfo(level, "Sln")
  while info and (inside(info) or info.what == "tail") do
    if inside(info) then entry = info end
    level = level + 1
    info = getinfo(level, "Sln")
  end
  local where = ""
  if info and info.currentline and info.currentline > 0 then
    where = info.short_src .. ":" .. info.currentline .. ": "
  end
  if entry then return where, entry.name, entry.namewhat end
  return where, nil, nil
end

-- luaL_error: the message, prefixed with where the library was called from.
function support.fail(message, ...)
  if select("#", ...) > 0 then message = format(message, ...) end
  local where = caller()
  error(where .. message, 0)
end

-- luaL_argerror.
function support.argerror(narg, extra)
  local where, name, namewhat = caller()
  if namewhat == "method" then
    narg = narg - 1
    if narg == 0 then
      error(where .. "calling '" .. tostring(name) .. "' on bad self (" .. extra .. ")", 0)
    end
  end
  error(where .. "bad argument #" .. narg .. " to '" .. (name or "?") .. "' (" .. extra .. ")", 0)
end

-- luaL_typerror for argument `narg` of the call's arguments `n, ...`.
function support.typeerror(narg, expected, n, ...)
  local got = "no value"
  if narg <= n then got = type((select(narg, ...))) end
  support.argerror(narg, expected .. " expected, got " .. got)
end

-- lua_tonumber: a number, or a string that reads as one; nil otherwise.
function support.tonumber(value)
  local kind = type(value)
  if kind == "number" then return value end
  if kind == "string" then return tonumber(value) end
  return nil
end

-- luaL_checknumber for argument `narg` of `n, ...`.
function support.checknumber(narg, n, ...)
  local value = support.tonumber((select(narg, ...)))
  if value == nil or narg > n then support.typeerror(narg, "number", n, ...) end
  return value
end

-- luaL_checklstring: a string, or a number as Lua writes it.
function support.checkstring(narg, n, ...)
  local value = (select(narg, ...))
  local kind = type(value)
  if narg <= n and kind == "string" then return value end
  if narg <= n and kind == "number" then return format("%.14g", value) end
  support.typeerror(narg, "string", n, ...)
end

-- C's (long long) cast of an integral double in range, else the x86 result (INT64_MIN).
function support.int64(n)
  if n ~= n or n < -9223372036854775808 or n >= 9223372036854775808 then
    return -9223372036854775808
  end
  if n < 0 then return -floor(-n) end
  return floor(n)
end

-- An integral double as (high, low) 32-bit halves of its 64-bit two's complement.
function support.halves(n)
  return floor(n / 4294967296) % 4294967296, n % 4294967296
end

-- Big-endian bytes of an unsigned number below 2^32.
function support.be32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

-- The value of big-endian bytes as an unsigned number.
function support.unsigned(s, first, last)
  local n = 0
  for i = first, last do n = n * 256 + byte(s, i) end
  return n
end

-- C's (float)d: the nearest single-precision value, ties to even, overflow to infinity.
function support.to_float32(d)
  if d ~= d or d == 0 or d == huge or d == -huge then return d end
  local sign = 1
  if d < 0 then sign, d = -1, -d end
  local m, e = frexp(d)
  local bits = e + 149  -- single precision has 24 significant bits, none below 2^-149
  if bits > 24 then bits = 24 end
  local scaled = ldexp(m, bits)
  local r = floor(scaled)
  local rest = scaled - r
  if rest > 0.5 or (rest == 0.5 and r % 2 == 1) then r = r + 1 end
  local f = ldexp(r, e - bits)
  if f >= 340282356779733661637539395458142568448 then return sign * huge end  -- 2^128
  return sign * f
end

local function negative(d)
  return d < 0 or (d == 0 and 1 / d < 0)
end

-- The four big-endian bytes of a single-precision value (already rounded to one).
function support.float32_bytes(f)
  if f ~= f then return char(255, 192, 0, 0) end  -- x86's default NaN
  local sign = 0
  if negative(f) then sign, f = 128, -f end
  if f == huge then return char(sign + 127, 128, 0, 0) end
  if f == 0 then return char(sign, 0, 0, 0) end
  local m, e = frexp(f)
  local exponent, mantissa = e + 126, nil
  if exponent <= 0 then
    exponent, mantissa = 0, ldexp(m, e + 149)
  else
    mantissa = (m * 2 - 1) * 8388608
  end
  return char(sign + floor(exponent / 2), (exponent % 2) * 128 + floor(mantissa / 65536),
              floor(mantissa / 256) % 256, mantissa % 256)
end

-- The eight big-endian bytes of a double.
function support.float64_bytes(d)
  if d ~= d then return char(255, 248, 0, 0, 0, 0, 0, 0) end  -- x86's default NaN
  local sign = 0
  if negative(d) then sign, d = 128, -d end
  if d == huge then return char(sign + 127, 240, 0, 0, 0, 0, 0, 0) end
  if d == 0 then return char(sign, 0, 0, 0, 0, 0, 0, 0) end
  local m, e = frexp(d)
  local exponent, mantissa = e + 1022, nil
  if exponent <= 0 then
    exponent, mantissa = 0, ldexp(m, e + 1074)
  else
    mantissa = (m * 2 - 1) * 4503599627370496
  end
  local high, low = floor(mantissa / 4294967296), mantissa % 4294967296
  return char(sign + floor(exponent / 16), (exponent % 16) * 16 + floor(high / 65536),
              floor(high / 256) % 256, high % 256) .. support.be32(low)
end

-- A single-precision value from four big-endian bytes at `i`.
function support.float32_from(s, i)
  local b1, b2, b3, b4 = byte(s, i, i + 3)
  local sign = b1 >= 128 and -1 or 1
  local exponent = (b1 % 128) * 2 + floor(b2 / 128)
  local mantissa = ((b2 % 128) * 256 + b3) * 256 + b4
  if exponent == 0 then return sign * ldexp(mantissa, -149) end
  if exponent == 255 then
    if mantissa == 0 then return sign * huge end
    return 0 / 0
  end
  return sign * ldexp(mantissa + 8388608, exponent - 150)
end

-- A double from eight big-endian bytes at `i`.
function support.float64_from(s, i)
  local b1, b2 = byte(s, i, i + 1)
  local sign = b1 >= 128 and -1 or 1
  local exponent = (b1 % 128) * 16 + floor(b2 / 16)
  local mantissa = ((b2 % 16) * 65536 + support.unsigned(s, i + 2, i + 3)) * 4294967296
                   + support.unsigned(s, i + 4, i + 7)
  if exponent == 0 then return sign * ldexp(mantissa, -1074) end
  if exponent == 2047 then
    if mantissa == 0 then return sign * huge end
    return 0 / 0
  end
  return sign * ldexp(mantissa + 4503599627370496, exponent - 1075)
end

return support
