-- cjson: Lua CJSON 2.1.0 as Redis links it (lua_cjson.c), with its settings and their
-- defaults: numbers written with %.14g, `/` escaped, sparse arrays refused past a ratio,
-- 1000 levels of nesting each way, NaN and Infinity refused when encoding but read when
-- decoding (with hexadecimal numbers and leading zeros, as strtod reads them).
local support, null = ...
local floor, huge = math.floor, math.huge
local byte, char, sub, find, gsub, format, lower, match =
  string.byte, string.char, string.sub, string.find, string.gsub, string.format,
  string.lower, string.match
local concat, select, type, next, tonumber, rawset, rawget = table.concat, select, type,
  next, tonumber, rawset, rawget

local ESCAPES = {}
for c = 0, 31 do ESCAPES[char(c)] = format("\\u%04x", c) end
ESCAPES["\b"], ESCAPES["\t"], ESCAPES["\n"], ESCAPES["\f"], ESCAPES["\r"] =
  "\\b", "\\t", "\\n", "\\f", "\\r"
ESCAPES['"'], ESCAPES["\\"], ESCAPES["/"], ESCAPES["\127"] = '\\"', "\\\\", "\\/", "\\u007f"
local NEEDS_ESCAPE = '[%z\1-\31"\\/\127]'

local UNESCAPES = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", t = "\t", n = "\n",
                   f = "\f", r = "\r"}

local SINGLE = {["{"] = "T_OBJ_BEGIN", ["}"] = "T_OBJ_END", ["["] = "T_ARR_BEGIN",
                ["]"] = "T_ARR_END", [","] = "T_COMMA", [":"] = "T_COLON"}

local function new()
  local config = {
    sparse_convert = false, sparse_ratio = 2, sparse_safe = 10,
    encode_max_depth = 1000, decode_max_depth = 1000,
    encode_invalid_numbers = 0, decode_invalid_numbers = true,
    keep_buffer = true, precision = 14,
  }
  local number_format = "%.14g"

  -- == encoding ==

  local function fail_type(value, reason)
    support.fail("Cannot serialise %s: %s", type(value), reason)
  end

  local function number(n)
    local mode = config.encode_invalid_numbers
    if n ~= n or n == huge or n == -huge then
      if mode == 0 then fail_type(n, "must not be NaN or Inf") end
      if mode == 2 then return "null" end
      if n ~= n then return "nan" end
    end
    return format(number_format, n)
  end

  local function string_(s)
    return '"' .. gsub(s, NEEDS_ESCAPE, ESCAPES) .. '"'
  end

  -- lua_array_length: the largest index of a table whose keys are all positive integers
  -- (an array), or nil (an object); an excessively sparse array fails or, when
  -- configured, is an object.
  local function array_length(t)
    local max, items = 0, 0
    for k in next, t do
      if type(k) ~= "number" or k == 0 or floor(k) ~= k or k < 1 then return nil end
      if k > max then max = k end
      items = items + 1
    end
    if config.sparse_ratio > 0 and max > items * config.sparse_ratio
        and max > config.sparse_safe then
      if not config.sparse_convert then fail_type(t, "excessively sparse array") end
      return nil
    end
    return max
  end

  local append

  local function append_table(t, depth, out)
    depth = depth + 1
    if depth > config.encode_max_depth then
      support.fail("Cannot serialise, excessive nesting (%d)", depth)
    end
    local length = array_length(t)
    if length and length > 0 then
      out[#out + 1] = "["
      for i = 1, length do
        if i > 1 then out[#out + 1] = "," end
        append(rawget(t, i), depth, out)
      end
      out[#out + 1] = "]"
      return
    end
    out[#out + 1] = "{"
    local comma = false
    for k, v in next, t do
      if comma then out[#out + 1] = "," end
      comma = true
      local kind = type(k)
      if kind == "number" then
        out[#out + 1] = '"' .. number(k) .. '":'
      elseif kind == "string" then
        out[#out + 1] = string_(k) .. ":"
      else
        fail_type(k, "table key must be a number or string")
      end
      append(v, depth, out)
    end
    out[#out + 1] = "}"
  end

  append = function(value, depth, out)
    local kind = type(value)
    if kind == "string" then
      out[#out + 1] = string_(value)
    elseif kind == "number" then
      out[#out + 1] = number(value)
    elseif kind == "boolean" then
      out[#out + 1] = value and "true" or "false"
    elseif kind == "table" then
      append_table(value, depth, out)
    elseif value == nil or value == null then
      out[#out + 1] = "null"
    else
      fail_type(value, "type not supported")
    end
  end

  -- == decoding ==

  local function parse_error(expected, found, index)
    support.fail("Expected %s but found %s at character %d", expected, found, index)
  end

  -- json_is_invalid_number: what strtod reads but strict JSON does not.
  local function invalid_number(s, i)
    local c = sub(s, i, i)
    if c == "+" then return true end
    if c == "-" then
      i = i + 1
      c = sub(s, i, i)
    end
    if c == "0" then
      local c2 = sub(s, i + 1, i + 1)
      return c2 == "x" or c2 == "X" or (c2 ~= "" and find(c2, "%d") ~= nil)
    end
    if c == "" or c <= "9" then return false end
    local word = lower(sub(s, i, i + 2))
    return word == "inf" or word == "nan"
  end

  -- strtod: the longest number at `i` (its value and where it ends), or nil.
  local function strtod(s, i)
    local j = i
    local c = sub(s, j, j)
    if c == "+" or c == "-" then j = j + 1 end
    local rest = lower(sub(s, j, j + 7))
    if rest == "infinity" then
      j = j + 8
    elseif sub(rest, 1, 3) == "inf" then
      j = j + 3
    elseif sub(rest, 1, 3) == "nan" then
      j = j + 3
      local group = match(s, "^%([%w_]*%)", j)
      if group then j = j + #group end
    elseif match(s, "^0[xX]%x", j) or match(s, "^0[xX]%.%x", j) then
      j = j + 2
      local digits = match(s, "^%x*", j)
      j = j + #digits
      local fraction = match(s, "^%.%x*", j)
      if fraction then j = j + #fraction end
      local exponent = match(s, "^[pP][+-]?%d+", j)
      if exponent then j = j + #exponent end
    else
      local digits = match(s, "^%d*", j)
      local fraction = match(s, "^%.%d*", j + #digits)
      if #digits == 0 and (not fraction or #fraction == 1) then return nil end
      j = j + #digits + (fraction and #fraction or 0)
      local exponent = match(s, "^[eE][+-]?%d+", j)
      if exponent then j = j + #exponent end
    end
    local value = tonumber(sub(s, i, j - 1))
    if value == nil then return nil end
    return value, j
  end

  -- The next token at `i`: its kind, value, where it began, where the text goes on;
  -- T_ERROR carries the reason and the place as cjson reports them.
  local function token(s, i)
    i = find(s, "[^ \t\n\r]", i) or #s + 1
    local c = sub(s, i, i)
    if c == "" or c == "\0" then return "T_END", nil, i, i end
    local single = SINGLE[c]
    if single then return single, nil, i, i + 1 end
    if c == '"' then
      local parts, j = {}, i + 1
      while true do
        local k = find(s, '["\\%z]', j)
        if not k then return "T_ERROR", "unexpected end of string", #s + 1, i end
        parts[#parts + 1] = sub(s, j, k - 1)
        local d = sub(s, k, k)
        if d == '"' then return "T_STRING", concat(parts), i, k + 1 end
        if d == "\0" then return "T_ERROR", "unexpected end of string", k, i end
        local e = sub(s, k + 1, k + 1)
        if e == "u" then
          local text, width = nil, 6
          local code = tonumber(match(s, "^%x%x%x%x", k + 2) or "", 16)
          if code and code >= 0xD800 and code <= 0xDFFF then
            local low = code < 0xDC00 and match(s, "^\\u(%x%x%x%x)", k + 6)
            low = low and tonumber(low, 16)
            if low and low >= 0xDC00 and low <= 0xDFFF then
              code, width = 0x10000 + (code - 0xD800) * 1024 + (low - 0xDC00), 12
            else
              code = nil
            end
          end
          if code then
            if code <= 0x7F then
              text = char(code)
            elseif code <= 0x7FF then
              text = char(0xC0 + floor(code / 64), 0x80 + code % 64)
            elseif code <= 0xFFFF then
              text = char(0xE0 + floor(code / 4096), 0x80 + floor(code / 64) % 64,
                          0x80 + code % 64)
            else
              text = char(0xF0 + floor(code / 262144), 0x80 + floor(code / 4096) % 64,
                          0x80 + floor(code / 64) % 64, 0x80 + code % 64)
            end
          end
          if not text then return "T_ERROR", "invalid unicode escape code", k, i end
          parts[#parts + 1] = text
          j = k + width
        else
          local unescaped = UNESCAPES[e]
          if not unescaped then return "T_ERROR", "invalid escape code", k, i end
          parts[#parts + 1] = unescaped
          j = k + 2
        end
      end
    end
    if c == "-" or (c >= "0" and c <= "9") then
      if not config.decode_invalid_numbers and invalid_number(s, i) then
        return "T_ERROR", "invalid number", i, i
      end
      local value, j = strtod(s, i)
      if value == nil then return "T_ERROR", "invalid number", i, i end
      return "T_NUMBER", value, i, j
    end
    if sub(s, i, i + 3) == "true" then return "T_BOOLEAN", true, i, i + 4 end
    if sub(s, i, i + 4) == "false" then return "T_BOOLEAN", false, i, i + 5 end
    if sub(s, i, i + 3) == "null" then return "T_NULL", null, i, i + 4 end
    if (c == "+" or c == "i" or c == "I" or c == "n" or c == "N")
        and config.decode_invalid_numbers and invalid_number(s, i) then
      local value, j = strtod(s, i)
      if value == nil then return "T_ERROR", "invalid number", i, i end
      return "T_NUMBER", value, i, j
    end
    return "T_ERROR", "invalid token", i, i
  end

  local value_at

  -- json_decode_descend: the depth check, reporting where the text goes on (0-based).
  local function descend(depth, after)
    depth = depth + 1
    if depth > config.decode_max_depth then
      support.fail("Found too many nested data structures (%d) at character %d", depth,
                   after - 1)
    end
    return depth
  end

  local function found(kind, value)
    if kind == "T_ERROR" then return value end
    return kind
  end

  local function object_at(s, i, depth)
    depth = descend(depth, i)
    local t = {}
    local kind, value, at, after = token(s, i)
    if kind == "T_OBJ_END" then return t, after end
    while true do
      if kind ~= "T_STRING" then parse_error("object key string", found(kind, value), at) end
      local key = value
      kind, value, at, after = token(s, after)
      if kind ~= "T_COLON" then parse_error("colon", found(kind, value), at) end
      kind, value, at, after = token(s, after)
      local item
      item, after = value_at(s, kind, value, at, after, depth)
      rawset(t, key, item)
      kind, value, at, after = token(s, after)
      if kind == "T_OBJ_END" then return t, after end
      if kind ~= "T_COMMA" then parse_error("comma or object end", found(kind, value), at) end
      kind, value, at, after = token(s, after)
    end
  end

  local function array_at(s, i, depth)
    depth = descend(depth, i)
    local t = {}
    local kind, value, at, after = token(s, i)
    if kind == "T_ARR_END" then return t, after end
    local n = 0
    while true do
      local item
      item, after = value_at(s, kind, value, at, after, depth)
      n = n + 1
      rawset(t, n, item)
      kind, value, at, after = token(s, after)
      if kind == "T_ARR_END" then return t, after end
      if kind ~= "T_COMMA" then parse_error("comma or array end", found(kind, value), at) end
      kind, value, at, after = token(s, after)
    end
  end

  value_at = function(s, kind, value, at, after, depth)
    if kind == "T_STRING" or kind == "T_NUMBER" or kind == "T_BOOLEAN" or kind == "T_NULL" then
      return value, after
    end
    if kind == "T_OBJ_BEGIN" then return object_at(s, after, depth) end
    if kind == "T_ARR_BEGIN" then return array_at(s, after, depth) end
    parse_error("value", found(kind, value), at)
  end

  -- == the settings ==

  local function check_count(n, most)
    if n > most then support.argerror(most + 1, "found too many arguments") end
  end

  -- json_integer_option for argument `index` (a range error names argument 1, as cjson's).
  local function integer_option(name, low, high, index, n, ...)
    if n >= index and (select(index, ...)) ~= nil then
      local value = support.int64(support.checknumber(index, n, ...))
      if value < low or value > high then
        support.argerror(1, format("expected integer between %d and %d", low, high))
      end
      config[name] = value
    end
    return config[name]
  end

  -- json_enum_option: a boolean, or one of `options` (their index from 0).
  local function enum_option(value, options)
    if type(value) == "boolean" then return value and 1 or 0 end
    local text = support.checkstring(1, 1, value)
    for i, option in next, options do
      if option == text then return i - 1 end
    end
    support.argerror(1, format("invalid option '%s'", text))
  end

  local cjson = {}

  function cjson.encode(...)
    if select("#", ...) ~= 1 then support.argerror(1, "expected 1 argument") end
    local out = {}
    append((...), 0, out)
    local r = concat(out)
    return r
  end

  function cjson.decode(...)
    local n = select("#", ...)
    if n ~= 1 then support.argerror(1, "expected 1 argument") end
    local s = support.checkstring(1, n, ...)
    if #s >= 2 and (byte(s, 1) == 0 or byte(s, 2) == 0) then
      support.fail("JSON parser does not support UTF-16 or UTF-32")
    end
    local kind, value, at, after = token(s, 1)
    local result
    result, after = value_at(s, kind, value, at, after, 0)
    kind, value, at = token(s, after)
    if kind ~= "T_END" then parse_error("the end", found(kind, value), at) end
    return result
  end

  function cjson.encode_sparse_array(...)
    local n = select("#", ...)
    check_count(n, 3)
    local convert = (...)
    if convert ~= nil then config.sparse_convert = enum_option(convert, {"off", "on"}) == 1 end
    local ratio = integer_option("sparse_ratio", 0, 2147483647, 2, n, ...)
    local safe = integer_option("sparse_safe", 0, 2147483647, 3, n, ...)
    return config.sparse_convert, ratio, safe
  end

  function cjson.encode_max_depth(...)
    local n = select("#", ...)
    check_count(n, 1)
    local r = integer_option("encode_max_depth", 1, 2147483647, 1, n, ...)
    return r
  end

  function cjson.decode_max_depth(...)
    local n = select("#", ...)
    check_count(n, 1)
    local r = integer_option("decode_max_depth", 1, 2147483647, 1, n, ...)
    return r
  end

  function cjson.encode_number_precision(...)
    local n = select("#", ...)
    check_count(n, 1)
    local precision = integer_option("precision", 1, 14, 1, n, ...)
    number_format = "%." .. precision .. "g"
    return precision
  end

  function cjson.encode_keep_buffer(...)
    local n = select("#", ...)
    check_count(n, 1)
    local value = (...)
    if value ~= nil then config.keep_buffer = enum_option(value, {"off", "on"}) == 1 end
    return config.keep_buffer
  end

  function cjson.encode_invalid_numbers(...)
    local n = select("#", ...)
    check_count(n, 1)
    local value = (...)
    if value ~= nil then config.encode_invalid_numbers = enum_option(value, {"off", "on", "null"}) end
    local setting = config.encode_invalid_numbers
    if setting == 2 then return "null" end
    return setting == 1
  end

  function cjson.decode_invalid_numbers(...)
    local n = select("#", ...)
    check_count(n, 1)
    local value = (...)
    if value ~= nil then config.decode_invalid_numbers = enum_option(value, {"off", "on"}) == 1 end
    return config.decode_invalid_numbers
  end

  cjson.new = new
  cjson.null = null
  cjson._NAME = "cjson"
  cjson._VERSION = "2.1.0"
  return cjson
end

return new()
