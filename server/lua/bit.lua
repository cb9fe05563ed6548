-- bit: LuaBitOp 1.0 as Redis links it, on signed 32-bit integers.
--
-- An argument is a number (or a string that reads as one); LuaBitOp takes the low 32 bits
-- of the double `n + 2^52 + 2^51`, which rounds half to even and, for very large
-- numbers, keeps bits of the mantissa rather than of the value: reproduced below.
local support = ...
local floor, frexp, huge = math.floor, math.frexp, math.huge
local sub, concat, select = string.sub, table.concat, select

local TWO32, TWO31 = 4294967296, 2147483648

local function signed(u)
  if u >= TWO31 then return u - TWO32 end
  return u
end

-- barg: argument `i` of `n, ...` as an unsigned 32-bit number.
local function barg(i, n, ...)
  local value = (select(i, ...))
  local number = nil
  if i <= n then number = support.tonumber(value) end
  if number == nil then support.typeerror(i, "number", n, ...) end
  local d = number + 6755399441055744.0
  if d ~= d or d == huge or d == -huge or d == 0 then return 0 end
  if d < 0 then d = -d end
  local m = frexp(d)
  return (m * 9007199254740992 - 4503599627370496) % TWO32  -- low 32 bits of the mantissa
end

-- Nibble tables for and, or, xor: a 32-bit operation is eight lookups.
local AND, OR, XOR = {}, {}, {}
for a = 0, 15 do
  for b = 0, 15 do
    local x, y, p, ra, ro, rx = a, b, 1, 0, 0, 0
    for _ = 1, 4 do
      local xb, yb = x % 2, y % 2
      if xb == 1 and yb == 1 then ra = ra + p end
      if xb == 1 or yb == 1 then ro = ro + p end
      if xb ~= yb then rx = rx + p end
      x, y, p = (x - xb) / 2, (y - yb) / 2, p * 2
    end
    AND[a * 16 + b], OR[a * 16 + b], XOR[a * 16 + b] = ra, ro, rx
  end
end

local function combine(table_, a, b)
  local r, p = 0, 1
  for _ = 1, 8 do
    local x, y = a % 16, b % 16
    r = r + table_[x * 16 + y] * p
    a, b, p = (a - x) / 16, (b - y) / 16, p * 16
  end
  return r
end

local function fold(table_, ...)
  local n = select("#", ...)
  local b = barg(1, n, ...)
  for i = n, 2, -1 do b = combine(table_, b, barg(i, n, ...)) end
  return signed(b)
end

local function shift_args(...)
  local n = select("#", ...)
  return barg(1, n, ...), barg(2, n, ...) % 32
end

local function rol(b, k)
  return (b * 2 ^ k) % TWO32 + floor(b / 2 ^ (32 - k))
end

local bit = {}

function bit.tobit(...)
  local r = signed(barg(1, select("#", ...), ...))
  return r
end

function bit.bnot(...)
  local r = signed(TWO32 - 1 - barg(1, select("#", ...), ...))
  return r
end

function bit.band(...) local r = fold(AND, ...) return r end
function bit.bor(...) local r = fold(OR, ...) return r end
function bit.bxor(...) local r = fold(XOR, ...) return r end

function bit.lshift(...)
  local b, k = shift_args(...)
  local r = signed((b * 2 ^ k) % TWO32)
  return r
end

function bit.rshift(...)
  local b, k = shift_args(...)
  local r = signed(floor(b / 2 ^ k))
  return r
end

function bit.arshift(...)
  local b, k = shift_args(...)
  local r = floor(signed(b) / 2 ^ k)
  return r
end

function bit.rol(...)
  local b, k = shift_args(...)
  local r = signed(rol(b, k))
  return r
end

function bit.ror(...)
  local b, k = shift_args(...)
  local r = signed(rol(b, (32 - k) % 32))
  return r
end

function bit.bswap(...)
  local b = barg(1, select("#", ...), ...)
  local r = signed(((b % 256) * 16777216) + (floor(b / 256) % 256) * 65536
                   + (floor(b / 65536) % 256) * 256 + floor(b / 16777216))
  return r
end

function bit.tohex(...)
  local n = select("#", ...)
  local b = barg(1, n, ...)
  local digits, count = "0123456789abcdef", 8
  if n >= 2 then count = signed(barg(2, n, ...)) end
  if count < 0 then
    digits = "0123456789ABCDEF"
    count = count == -TWO31 and 8 or -count
  end
  if count > 8 then count = 8 end
  local out = {}
  for i = count, 1, -1 do
    local d = b % 16
    out[i] = sub(digits, d + 1, d + 1)
    b = (b - d) / 16
  end
  local r = concat(out)
  return r
end

return bit
