#include "errors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_SAFE_INTEGER 9007199254740991LL

static const char *const ordinals[] = {
  "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
};

static const char *ordinal(size_t idx) {
  return idx < sizeof ordinals / sizeof ordinals[0] ? ordinals[idx] : "nth";
}

napi_status make_errno_error(napi_env env, int err, const char *syscall, napi_value *out) {
  char unknown[32];
  const char *code = strerrorname_np(err);
  if (code == NULL) {
    snprintf(unknown, sizeof unknown, "E_UNKNOWN_%d", err);
    code = unknown;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", code, syscall);

  napi_status s;
  napi_value jcode, jmsg, jerrno, jsyscall, error;
  if ((s = napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode)) != napi_ok) return s;
  if ((s = napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg)) != napi_ok) return s;
  if ((s = napi_create_error(env, jcode, jmsg, &error)) != napi_ok) return s;
  if ((s = napi_create_int32(env, err, &jerrno)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, error, "errno", jerrno)) != napi_ok) return s;
  if ((s = napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &jsyscall)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, error, "syscall", jsyscall)) != napi_ok) return s;
  *out = error;
  return napi_ok;
}

napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_value error;
  napi_status s = make_errno_error(env, err, syscall, &error);
  if (s != napi_ok) return throw_napi_failure(env, s, "make_errno_error");
  if ((s = napi_throw(env, error)) != napi_ok) return throw_napi_failure(env, s, "napi_throw");
  return NULL;
}

napi_value throw_napi_failure(napi_env env, napi_status status, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  const napi_extended_error_info *info = NULL;
  const char *detail = NULL;
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL) detail = info->error_message;
  char msg[256];
  snprintf(msg, sizeof msg, "N-API call failed (status %d%s%s): %s", (int)status,
           detail ? ", " : "", detail ? detail : "", what);
  napi_throw_error(env, NULL, msg); /* nothing more to do if even this fails */
  return NULL;
}

bool throw_arg_type(napi_env env, size_t idx, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "Expected %s argument to be %s", ordinal(idx), what);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

bool throw_arg_range(napi_env env, size_t idx, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "Expected %s argument to be %s", ordinal(idx), what);
  napi_throw_range_error(env, NULL, msg);
  return false;
}

static bool type_of(napi_env env, napi_value v, napi_valuetype *t) {
  napi_status s = napi_typeof(env, v, t);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_typeof");
    return false;
  }
  return true;
}

bool arg_int(napi_env env, napi_value v, size_t idx, int64_t min, int64_t max, const char *type, int64_t *out) {
  napi_valuetype t;
  if (!type_of(env, v, &t)) return false;
  if (t != napi_number) return throw_arg_type(env, idx, type);
  double d;
  napi_status s = napi_get_value_double(env, v, &d);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_value_double");
    return false;
  }
  /* All bounds used are within +-2^53, so the comparisons below are exact in double. */
  if (!isfinite(d) || trunc(d) != d || d < (double)min || d > (double)max) return throw_arg_range(env, idx, type);
  *out = (int64_t)d;
  return true;
}

bool arg_i32(napi_env env, napi_value v, size_t idx, int32_t *out) {
  int64_t x;
  if (!arg_int(env, v, idx, INT32_MIN, INT32_MAX, "an int32", &x)) return false;
  *out = (int32_t)x;
  return true;
}

bool arg_u32(napi_env env, napi_value v, size_t idx, uint32_t *out) {
  int64_t x;
  if (!arg_int(env, v, idx, 0, UINT32_MAX, "a uint32", &x)) return false;
  *out = (uint32_t)x;
  return true;
}

bool arg_id(napi_env env, napi_value v, size_t idx, uint32_t *out) {
  int64_t x;
  if (!arg_int(env, v, idx, -1, UINT32_MAX, "a uint32 or -1", &x)) return false;
  *out = x == -1 ? UINT32_MAX : (uint32_t)x;
  return true;
}

bool arg_safe(napi_env env, napi_value v, size_t idx, int64_t *out) {
  return arg_int(env, v, idx, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, "a safe integer", out);
}

bool arg_i64(napi_env env, napi_value v, size_t idx, int64_t *out) {
  napi_valuetype t;
  if (!type_of(env, v, &t)) return false;
  if (t != napi_bigint) return arg_int(env, v, idx, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, "a safe integer or a bigint", out);
  bool lossless = false;
  napi_status s = napi_get_value_bigint_int64(env, v, out, &lossless);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_value_bigint_int64");
    return false;
  }
  if (!lossless) return throw_arg_range(env, idx, "a bigint in [-2^63, 2^63)");
  return true;
}

bool arg_bool(napi_env env, napi_value v, size_t idx, bool *out) {
  napi_valuetype t;
  if (!type_of(env, v, &t)) return false;
  if (t != napi_boolean) return throw_arg_type(env, idx, "a boolean");
  napi_status s = napi_get_value_bool(env, v, out);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_value_bool");
    return false;
  }
  return true;
}

bool arg_bigint64(napi_env env, napi_value v, size_t idx, uint64_t *out) {
  napi_valuetype t;
  if (!type_of(env, v, &t)) return false;
  if (t != napi_bigint) return throw_arg_type(env, idx, "a bigint");
  int64_t i;
  bool lossless = false;
  napi_status s = napi_get_value_bigint_int64(env, v, &i, &lossless);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_value_bigint_int64");
    return false;
  }
  if (lossless) {
    *out = (uint64_t)i;
    return true;
  }
  uint64_t u;
  s = napi_get_value_bigint_uint64(env, v, &u, &lossless);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_value_bigint_uint64");
    return false;
  }
  if (!lossless) return throw_arg_range(env, idx, "a 64-bit bigint");
  *out = u;
  return true;
}

bool arg_buffer(napi_env env, napi_value v, size_t idx, void **data, size_t *len) {
  bool is_buffer = false;
  napi_status s = napi_is_buffer(env, v, &is_buffer);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_is_buffer");
    return false;
  }
  if (!is_buffer) return throw_arg_type(env, idx, "a Buffer");
  s = napi_get_buffer_info(env, v, data, len);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_buffer_info");
    return false;
  }
  return true;
}

bool arg_buffer_or_null(napi_env env, napi_value v, size_t idx, void **data, size_t *len) {
  napi_valuetype t;
  if (!type_of(env, v, &t)) return false;
  if (t == napi_null) {
    *data = NULL;
    *len = 0;
    return true;
  }
  bool is_buffer = false;
  napi_status s = napi_is_buffer(env, v, &is_buffer);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_is_buffer");
    return false;
  }
  if (!is_buffer) return throw_arg_type(env, idx, "a Buffer or null");
  return arg_buffer(env, v, idx, data, len);
}

bool arg_u64array(napi_env env, napi_value v, size_t idx, size_t min_len, uint64_t **data) {
  bool is_ta = false;
  napi_status s = napi_is_typedarray(env, v, &is_ta);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_is_typedarray");
    return false;
  }
  if (!is_ta) return throw_arg_type(env, idx, "a BigUint64Array");
  napi_typedarray_type type;
  size_t length = 0;
  void *p = NULL;
  s = napi_get_typedarray_info(env, v, &type, &length, &p, NULL, NULL);
  if (s != napi_ok) {
    throw_napi_failure(env, s, "napi_get_typedarray_info");
    return false;
  }
  if (type != napi_biguint64_array) return throw_arg_type(env, idx, "a BigUint64Array");
  if (length < min_len) return throw_arg_range(env, idx, "a BigUint64Array of sufficient length");
  /* A BigUint64Array's byteOffset is always a multiple of 8, so p is suitably aligned. */
  *data = p;
  return true;
}

bool arg_name(napi_env env, napi_value v, size_t idx, const char *syscall, char *out) {
  void *data = NULL;
  size_t len = 0;
  if (!arg_buffer(env, v, idx, &data, &len)) return false;
  if (len > PATH_MAX) {
    throw_errno(env, ENAMETOOLONG, syscall);
    return false;
  }
  if (len > 0 && memchr(data, 0, len) != NULL) {
    throw_errno(env, EINVAL, syscall);
    return false;
  }
  if (len > 0) memcpy(out, data, len);
  out[len] = '\0';
  return true;
}

bool check_range(napi_env env, int64_t off, int64_t len, size_t buflen) {
  if (off < 0 || len < 0 || (uint64_t)off > buflen || (uint64_t)len > buflen - (uint64_t)off) {
    napi_throw_range_error(env, NULL, "offset and length must lie within the buffer");
    return false;
  }
  return true;
}

napi_value js_undefined(napi_env env) {
  napi_value v;
  NAPI_CALL(env, napi_get_undefined(env, &v));
  return v;
}

napi_value js_int(napi_env env, int64_t x) {
  napi_value v;
  NAPI_CALL(env, napi_create_int64(env, x, &v));
  return v;
}

napi_value js_bool(napi_env env, bool x) {
  napi_value v;
  NAPI_CALL(env, napi_get_boolean(env, x, &v));
  return v;
}

napi_value fail_errno(napi_env env, int err, const char *syscall, bool soft) {
  return soft ? js_int(env, -(int64_t)err) : throw_errno(env, err, syscall);
}

void settle_async(napi_env env, napi_deferred deferred, napi_status status, int err, const char *syscall, bool count,
                  int64_t result) {
  napi_value value = NULL;
  bool ok = false;
  if (status != napi_ok) {
    napi_value msg;
    if (napi_create_string_utf8(env, "async work was cancelled", NAPI_AUTO_LENGTH, &msg) != napi_ok ||
        napi_create_error(env, NULL, msg, &value) != napi_ok)
      value = NULL;
  } else if (err != 0) {
    if (make_errno_error(env, err, syscall, &value) != napi_ok) value = NULL;
  } else {
    ok = (count ? napi_create_int64(env, result, &value) : napi_get_undefined(env, &value)) == napi_ok;
    if (!ok) value = NULL;
  }
  if (value == NULL) napi_get_undefined(env, &value); /* last resort: settle the promise anyway */
  if (ok)
    napi_resolve_deferred(env, deferred, value);
  else
    napi_reject_deferred(env, deferred, value);
}
