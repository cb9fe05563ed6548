-- cmsgpack: lua-cmsgpack 0.4.0 as Redis links it (lua_cmsgpack.c): MessagePack with the
-- smallest encoding for each value, tables nested at most 16 deep (deeper ones are nil,
-- so a circular table packs), several values per call.
local support = ...
local floor = math.floor
local byte, char, sub = string.byte, string.char, string.sub
local concat, select, type, next, unpack = table.concat, select, type, next, unpack
local rawset, pcall, error = rawset, pcall, error

local MAX_NESTING = 16

local be32, halves, unsigned = support.be32, support.halves, support.unsigned

local function be16(n)
  return char(floor(n / 256) % 256, n % 256)
end

local function encode_int(n, out)
  if n >= 0 then
    if n <= 127 then
      out[#out + 1] = char(n)
    elseif n <= 255 then
      out[#out + 1] = "\204" .. char(n)
    elseif n <= 65535 then
      out[#out + 1] = "\205" .. be16(n)
    elseif n <= 4294967295 then
      out[#out + 1] = "\206" .. be32(n)
    else
      local high, low = halves(n)
      out[#out + 1] = "\207" .. be32(high) .. be32(low)
    end
  elseif n >= -32 then
    out[#out + 1] = char(256 + n)
  elseif n >= -128 then
    out[#out + 1] = "\208" .. char(256 + n)
  elseif n >= -32768 then
    out[#out + 1] = "\209" .. be16(65536 + n)
  elseif n >= -2147483648 then
    out[#out + 1] = "\210" .. be32(4294967296 + n)
  else
    local high, low = halves(n)
    out[#out + 1] = "\211" .. be32(high) .. be32(low)
  end
end

local function encode_number(n, out)
  if n == n and n >= -9223372036854775808 and n < 9223372036854775808 and floor(n) == n then
    encode_int(n, out)  -- IS_INT64_EQUIVALENT
    return
  end
  local single = support.to_float32(n)
  if single == n then
    out[#out + 1] = "\202" .. support.float32_bytes(single)
  else
    out[#out + 1] = "\203" .. support.float64_bytes(n)
  end
end

local function encode_bytes(s, out)
  local len = #s
  if len < 32 then
    out[#out + 1] = char(160 + len)
  elseif len <= 255 then
    out[#out + 1] = "\217" .. char(len)
  elseif len <= 65535 then
    out[#out + 1] = "\218" .. be16(len)
  else
    out[#out + 1] = "\219" .. be32(len)
  end
  out[#out + 1] = s
end

local function encode_header(n, out, fix, b16, b32)
  if n <= 15 then
    out[#out + 1] = char(fix + n)
  elseif n <= 65535 then
    out[#out + 1] = b16 .. be16(n)
  else
    out[#out + 1] = b32 .. be32(n)
  end
end

-- table_is_an_array: keys all positive numbers that a C int holds, and as many as the
-- largest of them (so exactly 1..n).
local function is_array(t)
  local count, max = 0, 0
  for k in next, t do
    if type(k) ~= "number" or k <= 0 or k ~= floor(k) or k > 2147483647 then return false end
    if k > max then max = k end
    count = count + 1
  end
  return max == count
end

local encode

local function encode_table(t, out, level)
  if is_array(t) then
    local len = #t
    encode_header(len, out, 144, "\220", "\221")
    for j = 1, len do encode(t[j], out, level + 1) end
  else
    local len = 0
    for _ in next, t do len = len + 1 end
    encode_header(len, out, 128, "\222", "\223")
    for k, v in next, t do
      encode(k, out, level + 1)
      encode(v, out, level + 1)
    end
  end
end

encode = function(value, out, level)
  local kind = type(value)
  if kind == "table" and level == MAX_NESTING then kind = "nil" end
  if kind == "string" then
    encode_bytes(value, out)
  elseif kind == "boolean" then
    out[#out + 1] = value and "\195" or "\194"
  elseif kind == "number" then
    encode_number(value, out)
  elseif kind == "table" then
    encode_table(value, out, level)
  else
    out[#out + 1] = "\192"
  end
end

-- Decoding: each reader returns (value, next position), or raises EOF / BADFMT, which
-- unpack turns into cmsgpack's messages.
local EOF, BADFMT = {}, {}
-- Nesting that would exhaust a C library's Lua stack (LUAI_MAXCSTACK) fails as it does.
local MAX_DECODE_DEPTH = 7900

local function need(s, pos, len)
  if pos + len - 1 > #s then error(EOF, 0) end
end

local decode

local function decode_array(s, pos, len, depth)
  local t = {}
  for i = 1, len do
    local value
    value, pos = decode(s, pos, depth)
    t[i] = value
  end
  return t, pos
end

local function decode_map(s, pos, len, depth)
  local t = {}
  for _ = 1, len do
    local key, value
    key, pos = decode(s, pos, depth)
    value, pos = decode(s, pos, depth)
    rawset(t, key, value)  -- (a nil or NaN key fails as lua_settable fails)
  end
  return t, pos
end

local function signed(n, bits)
  if n >= 2 ^ (bits - 1) then return n - 2 ^ bits end
  return n
end

local function int64_at(s, pos)
  local high, low = unsigned(s, pos, pos + 3), unsigned(s, pos + 4, pos + 7)
  return signed(high, 32) * 4294967296 + low  -- (uint 64 too: lua_pushinteger is signed)
end

decode = function(s, pos, depth)
  need(s, pos, 1)
  local c = byte(s, pos)
  if c <= 127 then return c, pos + 1 end
  if c >= 224 then return c - 256, pos + 1 end
  if c >= 160 and c <= 191 then
    local len = c - 160
    need(s, pos, 1 + len)
    return sub(s, pos + 1, pos + len), pos + 1 + len
  end
  if depth >= MAX_DECODE_DEPTH then
    support.fail("stack overflow (too many return values at once; use unpack_one or "
                 .. "unpack_limit instead.)")
  end
  if c >= 144 and c <= 159 then return decode_array(s, pos + 1, c - 144, depth + 1) end
  if c >= 128 and c <= 143 then return decode_map(s, pos + 1, c - 128, depth + 1) end
  if c == 192 then return nil, pos + 1 end
  if c == 195 then return true, pos + 1 end
  if c == 194 then return false, pos + 1 end
  if c == 204 then need(s, pos, 2) return byte(s, pos + 1), pos + 2 end
  if c == 208 then need(s, pos, 2) return signed(byte(s, pos + 1), 8), pos + 2 end
  if c == 205 then need(s, pos, 3) return unsigned(s, pos + 1, pos + 2), pos + 3 end
  if c == 209 then need(s, pos, 3) return signed(unsigned(s, pos + 1, pos + 2), 16), pos + 3 end
  if c == 206 then need(s, pos, 5) return unsigned(s, pos + 1, pos + 4), pos + 5 end
  if c == 210 then need(s, pos, 5) return signed(unsigned(s, pos + 1, pos + 4), 32), pos + 5 end
  if c == 207 or c == 211 then need(s, pos, 9) return int64_at(s, pos + 1), pos + 9 end
  if c == 202 then need(s, pos, 5) return support.float32_from(s, pos + 1), pos + 5 end
  if c == 203 then need(s, pos, 9) return support.float64_from(s, pos + 1), pos + 9 end
  if c == 217 or c == 218 or c == 219 then
    local width = c == 217 and 1 or (c == 218 and 2 or 4)
    need(s, pos, 1 + width)
    local len = unsigned(s, pos + 1, pos + width)
    local start = pos + 1 + width
    need(s, start, len)
    return sub(s, start, start + len - 1), start + len
  end
  if c == 220 or c == 221 or c == 222 or c == 223 then
    local width = (c == 220 or c == 222) and 2 or 4
    need(s, pos, 1 + width)
    local len = unsigned(s, pos + 1, pos + width)
    if c <= 221 then return decode_array(s, pos + 1 + width, len, depth + 1) end
    return decode_map(s, pos + 1 + width, len, depth + 1)
  end
  error(BADFMT, 0)
end

-- mp_unpack_full: up to `limit` values from `offset` (limit and offset 0: all of them).
-- Returns the values, how many, and the offset to go on from (-1 at the end).
local function unpack_full(s, limit, offset)
  local len = #s
  if offset < 0 or limit < 0 then
    support.fail("Invalid request to unpack with offset of %d and limit of %d.", offset, len)
  elseif offset > len then
    support.fail("Start offset %d greater than input length %d.", offset, len)
  end
  if limit == 0 and offset == 0 then limit = 2147483647 end
  local values, count, pos = {}, 0, offset + 1
  while pos <= len and count < limit do
    local ok, value, after = pcall(decode, s, pos, 0)
    if not ok then
      if value == EOF then support.fail("Missing bytes in input.") end
      if value == BADFMT then support.fail("Bad data format in input.") end
      error(value, 0)
    end
    count = count + 1
    values[count] = value
    pos = after
  end
  return values, count, (pos > len) and -1 or pos - 1
end

local function optinteger(narg, n, ...)
  if narg > n or (select(narg, ...)) == nil then return 0 end
  return support.int64(support.checknumber(narg, n, ...))
end

-- unpack_one and unpack_limit: the offset to go on from, then the values.
local function unpack_some(s, limit, offset)
  local values, count, next_offset = unpack_full(s, limit, offset)
  local results = {next_offset}
  for i = 1, count do results[i + 1] = values[i] end
  return unpack(results, 1, count + 1)
end

local cmsgpack = {}

function cmsgpack.pack(...)
  local n = select("#", ...)
  if n == 0 then support.argerror(0, "MessagePack pack needs input.") end
  local out = {}
  for i = 1, n do encode((select(i, ...)), out, 0) end
  local r = concat(out)
  return r
end

function cmsgpack.unpack(...)
  local s = support.checkstring(1, select("#", ...), ...)
  local values, count = unpack_full(s, 0, 0)
  return unpack(values, 1, count)
end

function cmsgpack.unpack_one(...)
  local n = select("#", ...)
  local s = support.checkstring(1, n, ...)
  return unpack_some(s, 1, optinteger(2, n, ...))
end

function cmsgpack.unpack_limit(...)
  local n = select("#", ...)
  local s = support.checkstring(1, n, ...)
  local limit = support.int64(support.checknumber(2, n, ...))
  return unpack_some(s, limit, optinteger(3, n, ...))
end

cmsgpack._NAME = "cmsgpack"
cmsgpack._VERSION = "lua-cmsgpack 0.4.0"
cmsgpack._COPYRIGHT = "Copyright (C) 2012, Salvatore Sanfilippo"
cmsgpack._DESCRIPTION = "MessagePack C implementation for Lua"

return cmsgpack
