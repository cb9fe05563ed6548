-- struct: Roberto Ierusalimschy's library as Redis links it (lua_struct.c): pack, unpack
-- and size of binary records described by a format string, on this x86-64 layout
-- (little-endian by default, long and size_t of 8 bytes, alignment up to 8 with '!').
local support = ...
local floor = math.floor
local byte, char, sub, find, rep, reverse, match, format =
  string.byte, string.char, string.sub, string.find, string.rep, string.reverse,
  string.match, string.format
local concat, select, unpack = table.concat, select, unpack

local MAXINTSIZE, MAXALIGN = 32, 8
local SIZES = {B = 1, b = 1, H = 2, h = 2, L = 8, l = 8, T = 8, f = 4, d = 8, x = 1}
local INTEGER = {B = true, b = true, H = true, h = true, L = true, l = true, T = true,
                 i = true, I = true}
local SIGNED = {b = true, h = true, l = true, i = true}

-- The format as C sees it: it ends at its first NUL.
local function format_of(n, ...)
  local fmt = support.checkstring(1, n, ...)
  local nul = find(fmt, "\0", 1, true)
  if nul then fmt = sub(fmt, 1, nul - 1) end
  return fmt
end

-- getnum: the number written at `i` (default `default`), and where the format goes on.
local function getnum(fmt, i, default)
  local digits = match(fmt, "^%d+", i)
  if not digits then return default, i end
  local a = 0
  for k = 1, #digits do
    local d = byte(digits, k) - 48
    if a > 214748364 or a * 10 > 2147483647 - d then support.fail("integral size overflow") end
    a = a * 10 + d
  end
  return a, i + #digits
end

local function optsize(opt, fmt, i)
  local size = SIZES[opt]
  if size then return size, i end
  if opt == "c" then return getnum(fmt, i, 1) end
  if opt == "i" or opt == "I" then
    size, i = getnum(fmt, i, 4)
    if size > MAXINTSIZE then
      support.fail("integral size %d is larger than limit of %d", size, MAXINTSIZE)
    end
    return size, i
  end
  return 0, i
end

local function band(a, b)  -- a & b for non-negative a and a small b
  local r, p = 0, 1
  while b > 0 do
    if a % 2 == 1 and b % 2 == 1 then r = r + p end
    a, b, p = floor(a / 2), floor(b / 2), p * 2
  end
  return r
end

local function gettoalign(len, align, opt, size)
  if size == 0 or opt == "c" then return 0 end
  if size > align then size = align end
  return band(size - band(len, size - 1), size - 1)
end

-- The options that are no data: returns (little-endian, alignment, next position).
local function controloptions(opt, fmt, i, little, align)
  if opt == " " then return little, align, i end
  if opt == ">" then return false, align, i end
  if opt == "<" then return true, align, i end
  if opt == "!" then
    local a
    a, i = getnum(fmt, i, MAXALIGN)
    local power = a > 0 and band(a, a - 1) == 0
    if not power then support.fail("alignment %d is not a power of 2", a) end
    return little, a, i
  end
  support.argerror(1, format("invalid format option '%s'", opt))
end

-- putinteger: C's (unsigned long) of the number, its `size` low bytes in order.
local function integer_bytes(number, size, little)
  local value
  if number < 0 then
    value = support.int64(number)
  elseif number ~= number or number >= 18446744073709551616 then
    value = 0
  else
    value = floor(number)
  end
  local high, low = support.halves(value)
  local bytes = {}
  for k = 1, size do
    if k <= 4 then
      bytes[k] = low % 256
      low = floor(low / 256)
    elseif k <= 8 then
      bytes[k] = high % 256
      high = floor(high / 256)
    else
      bytes[k] = 0
    end
  end
  local s = char(unpack(bytes, 1, size))
  if little then return s end
  return reverse(s)
end

-- getinteger: the number in `size` bytes at `at` (the low 8 bytes of larger sizes).
local function integer_from(data, at, size, little, signed)
  local bytes = {byte(data, at, at + size - 1)}
  if not little then
    local reversed = {}
    for k = 1, size do reversed[k] = bytes[size + 1 - k] end
    bytes = reversed
  end
  local width = size < 8 and size or 8
  local high, low = 0, 0
  for k = width, 1, -1 do
    if k > 4 then high = high * 256 + bytes[k] else low = low * 256 + bytes[k] end
  end
  if signed then
    if width == 8 then
      if high >= 2147483648 then high = high - 4294967296 end
    elseif width > 4 then
      local bound = 2 ^ (8 * (width - 4))
      if high >= bound / 2 then high = high - bound end
    elseif low >= 2 ^ (8 * width - 1) then
      low = low - 2 ^ (8 * width)
    end
  end
  return high * 4294967296 + low
end

local function float_bytes(number, size, little)
  local s
  if size == 4 then
    s = support.float32_bytes(support.to_float32(number))
  else
    s = support.float64_bytes(number)
  end
  if little then return reverse(s) end
  return s
end

local function float_from(data, at, size, little)
  local s = sub(data, at, at + size - 1)
  if little then s = reverse(s) end
  if size == 4 then return support.float32_from(s, 1) end
  return support.float64_from(s, 1)
end

local struct = {}

function struct.pack(...)
  local n = select("#", ...)
  local fmt = format_of(n, ...)
  -- b_pack pushes a nil after its arguments: a missing one is "nil", not "no value".
  n = n + 1
  local little, align = true, 1
  local out, total, arg, i = {}, 0, 2, 1
  while i <= #fmt do
    local opt = sub(fmt, i, i)
    local size
    size, i = optsize(opt, fmt, i + 1)
    local toalign = gettoalign(total, align, opt, size)
    total = total + toalign
    if toalign > 0 then out[#out + 1] = rep("\0", toalign) end
    if INTEGER[opt] then
      out[#out + 1] = integer_bytes(support.checknumber(arg, n, ...), size, little)
      arg = arg + 1
    elseif opt == "x" then
      out[#out + 1] = "\0"
    elseif opt == "f" or opt == "d" then
      out[#out + 1] = float_bytes(support.checknumber(arg, n, ...), size, little)
      arg = arg + 1
    elseif opt == "c" or opt == "s" then
      local s = support.checkstring(arg, n, ...)
      arg = arg + 1
      if size == 0 then size = #s end
      if #s < size then support.argerror(arg, "string too short") end
      out[#out + 1] = sub(s, 1, size)
      if opt == "s" then
        out[#out + 1] = "\0"
        size = size + 1
      end
    else
      little, align, i = controloptions(opt, fmt, i, little, align)
    end
    total = total + size
  end
  local r = concat(out)
  return r
end

function struct.unpack(...)
  local n = select("#", ...)
  local fmt = format_of(n, ...)
  local data = support.checkstring(2, n, ...)
  local pos = 1
  if n >= 3 and (select(3, ...)) ~= nil then
    pos = support.int64(support.checknumber(3, n, ...))
  end
  if pos == 0 then support.argerror(3, "offset must be 1 or greater") end
  local ld = #data
  if pos < 0 then pos = 2 ^ 64 end  -- a negative offset is a huge size_t to C
  pos = pos - 1
  local little, align = true, 1
  local results, count, i = {}, 0, 1
  while i <= #fmt do
    local opt = sub(fmt, i, i)
    local size
    size, i = optsize(opt, fmt, i + 1)
    pos = pos + gettoalign(pos, align, opt, size)
    if not (size <= ld and pos <= ld - size) then
      support.argerror(2, "data string too short")
    end
    if INTEGER[opt] then
      count = count + 1
      results[count] = integer_from(data, pos + 1, size, little, SIGNED[opt])
    elseif opt == "f" or opt == "d" then
      count = count + 1
      results[count] = float_from(data, pos + 1, size, little)
    elseif opt == "c" then
      if size == 0 then
        local previous = count > 0 and support.tonumber(results[count]) or nil
        if previous == nil then support.fail("format 'c0' needs a previous size") end
        size = previous >= 0 and floor(previous) or 0
        results[count] = nil
        count = count - 1
        if not (size <= ld and pos <= ld - size) then
          support.argerror(2, "data string too short")
        end
      end
      count = count + 1
      results[count] = sub(data, pos + 1, pos + size)
    elseif opt == "s" then
      local nul = find(data, "\0", pos + 1, true)
      if not nul then support.fail("unfinished string in data") end
      size = nul - pos
      count = count + 1
      results[count] = sub(data, pos + 1, nul - 1)
    elseif opt ~= "x" then
      little, align, i = controloptions(opt, fmt, i, little, align)
    end
    pos = pos + size
  end
  results[count + 1] = pos + 1
  return unpack(results, 1, count + 1)
end

function struct.size(...)
  local n = select("#", ...)
  local fmt = format_of(n, ...)
  local little, align = true, 1
  local pos, i = 0, 1
  while i <= #fmt do
    local opt = sub(fmt, i, i)
    local size
    size, i = optsize(opt, fmt, i + 1)
    pos = pos + gettoalign(pos, align, opt, size)
    if opt == "s" then
      support.argerror(1, "option 's' has no fixed size")
    elseif opt == "c" and size == 0 then
      support.argerror(1, "option 'c0' has no fixed size")
    end
    if not find(opt, "^%w") then
      little, align, i = controloptions(opt, fmt, i, little, align)
    end
    pos = pos + size
  end
  return pos
end

return struct
